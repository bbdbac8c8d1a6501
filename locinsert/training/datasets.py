"""Placement queries -> ``Trainer`` datasets and collators.

- :class:`BoxDataset` (supervised stages): one example per positive box, ``{prefix, box_tokens}``.
- :class:`PairDataset` (DPO): one example per (positive, negative) pair of the same query,
  ``{prefix, chosen_tokens, rejected_tokens[, ref_chosen_logps, ref_rejected_logps]}``.

The *prefix* is what the model conditions on: ``pixel_values`` + ``classes`` (the encoders run in the
forward pass), or ``image_features`` + ``class_features`` read from the frozen-encoder feature cache
(the forward pass skips the ViT and the CLIP text tower). With ``hflip=True`` every example also
appears mirrored (image flipped, box x-coordinates mirrored): placement is left/right symmetric,
and a fixed doubling (rather than a coin flip per access) keeps epochs reproducible and cacheable.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ..boxes import boxes_to_tokens
from ..data.augment import hflip_boxes
from ..images import load_image


def query_image(query) -> Image.Image:
    """The query's image, without caching it on the query (a PIPE/OPA epoch would not fit in memory)."""
    cached = getattr(query, "_image", None)
    if cached is not None:
        return cached
    src = query.image_source
    if src is None:
        return query.image  # raises the query's own clear error
    if callable(src) and not isinstance(src, Image.Image):
        src = src()
    return load_image(src, name=f"image of query {query.query_id or query.image_id}")


class _PrefixSource:
    """Builds the prefix part of an example: pixels + class name, or cached encoder features."""

    def __init__(self, queries: Sequence, preprocess: Callable | None, features=None):
        if preprocess is None and features is None:
            raise ValueError("give `preprocess` (images -> pixel_values) or `features` (an encoder-feature cache)")
        self.queries, self.preprocess, self.features = queries, preprocess, features

    def __call__(self, qi: int, flipped: bool) -> dict:
        q = self.queries[qi]
        if self.features is not None:
            return {"image_features": self.features.image_features(q, flipped=flipped),
                    "class_features": self.features.class_features(q.category)}
        image = query_image(q)
        if flipped:
            image = ImageOps.mirror(image)
        return {"pixel_values": self.preprocess([image])[0], "classes": q.category}


def _size(query) -> tuple[int, int]:
    w, h = query.size
    return int(w), int(h)


class BoxDataset(Dataset):
    """Supervised examples: every positive box of every query (and its mirror image with ``hflip``)."""

    def __init__(self, queries: Sequence, num_bins: int, preprocess: Callable | None = None, features=None,
                 hflip: bool = False):
        self.queries, self.num_bins = queries, int(num_bins)
        self.prefix = _PrefixSource(queries, preprocess, features)
        flips = (False, True) if hflip else (False,)
        # A lazy source (PIPE: one box per row) reports its counts without decoding every row.
        counts = queries.positives_counts() if hasattr(queries, "positives_counts") else \
            [len(q.positives) for q in queries]
        self.index = [(qi, j, f) for qi, n in enumerate(counts) for j in range(n) for f in flips]
        if not self.index:
            raise ValueError("no positive boxes in the training queries: nothing to train on")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        qi, j, flipped = self.index[i]
        q = self.queries[qi]
        w, h = _size(q)
        box = q.positives[j : j + 1]
        if flipped:
            box = hflip_boxes(box, w)
        item = self.prefix(qi, flipped)
        item["box_tokens"] = boxes_to_tokens(box, w, h, self.num_bins)[0].long()
        return item


class PairDataset(Dataset):
    """Preference examples: ``pairs`` is a list of ``(query_index, chosen_box, rejected_box)``.

    ``with_reference(chosen, rejected)`` attaches precomputed reference log-probs, one per example.
    """

    def __init__(self, queries: Sequence, pairs: Sequence[tuple[int, torch.Tensor, torch.Tensor]], num_bins: int,
                 preprocess: Callable | None = None, features=None, hflip: bool = False):
        self.queries, self.num_bins = queries, int(num_bins)
        self.prefix = _PrefixSource(queries, preprocess, features)
        flips = (False, True) if hflip else (False,)
        self.index = [(qi, torch.as_tensor(c, dtype=torch.float32), torch.as_tensor(r, dtype=torch.float32), f)
                      for qi, c, r in pairs for f in flips]
        if not self.index:
            raise ValueError("no (positive, negative) pairs: DPO needs queries with both positives and negatives")
        self.ref_chosen_logps: torch.Tensor | None = None
        self.ref_rejected_logps: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.index)

    def with_reference(self, chosen: torch.Tensor, rejected: torch.Tensor) -> "PairDataset":
        if len(chosen) != len(self) or len(rejected) != len(self):
            raise ValueError(f"reference log-probs: expected {len(self)} values each, got {len(chosen)}/{len(rejected)}")
        self.ref_chosen_logps, self.ref_rejected_logps = chosen.float().cpu(), rejected.float().cpu()
        return self

    def __getitem__(self, i: int) -> dict:
        qi, chosen, rejected, flipped = self.index[i]
        q = self.queries[qi]
        w, h = _size(q)
        boxes = torch.stack([chosen, rejected])
        if flipped:
            boxes = hflip_boxes(boxes, w)
        tokens = boxes_to_tokens(boxes, w, h, self.num_bins).long()
        item = self.prefix(qi, flipped)
        item["chosen_tokens"], item["rejected_tokens"] = tokens[0], tokens[1]
        if self.ref_chosen_logps is not None:
            item["ref_chosen_logps"] = self.ref_chosen_logps[i]
            item["ref_rejected_logps"] = self.ref_rejected_logps[i]
        return item


def expand_pairs(queries: Sequence, pairs_per_query: int | None = None, seed: int = 0
                 ) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(query_index, chosen, rejected)`` for :class:`PairDataset`, from ``data.preference_pairs``:
    every (positive, negative) pair, or ``pairs_per_query`` of them per query ("balanced")."""
    from ..data.pairs import preference_pairs

    if pairs_per_query is None:
        pairs = preference_pairs(queries, mode="all")
    else:
        pairs = preference_pairs(queries, mode="balanced", pairs_per_query=int(pairs_per_query), seed=seed)
    return [(p.query_index, p.chosen, p.rejected) for p in pairs]


def collate(examples: list[dict]) -> dict:
    """Stack the tensors of a list of examples; class names become a list."""
    if not examples:
        raise ValueError("empty batch")
    batch = {}
    for key in examples[0]:
        values = [ex[key] for ex in examples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else list(values)
    return batch
