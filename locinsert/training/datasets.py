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
from .random_regions import training_regions


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


def image_key(query, flipped: bool = False, namespace: str = "") -> str:
    """The feature-cache key of a query's image (a flipped image is another key)."""
    base = query.image_id or query.query_id
    if not base:
        raise ValueError("query has neither image_id nor query_id: its image cannot be keyed in a feature cache")
    return f"{namespace}{base}" + (":hflip" if flipped else "")


class CachedImageFeatures:
    """Image features of queries read from a :class:`~locinsert.data.feature_cache.FeatureCache`."""

    def __init__(self, cache, namespace: str = ""):
        self.cache, self.namespace = cache, namespace

    def image_features(self, query, flipped: bool = False) -> torch.Tensor:
        return self.cache.get(image_key(query, flipped, self.namespace))

    def fill(self, queries: Sequence, hflip: bool = False, rank: int = 0, world_size: int = 1,
             batch_size: int = 32, progress: bool = True) -> dict:
        """Compute the features of every distinct image of ``queries`` not cached yet (this rank's share)."""
        sources = {}
        for q in queries:
            for flipped in ((False, True) if hflip else (False,)):
                sources.setdefault(image_key(q, flipped, self.namespace), (q, flipped))

        def image_of(key):
            q, flipped = sources[key]
            image = query_image(q)
            return ImageOps.mirror(image) if flipped else image

        return self.cache.fill(list(sources), image_of, rank=rank, world_size=world_size, batch_size=batch_size,
                               progress=progress)


class _PrefixSource:
    """Builds the prefix part of an example: pixels (or cached image features) + the class name.

    Class names stay strings: the model memoises a frozen class encoder's features itself.
    """

    def __init__(self, queries: Sequence, preprocess: Callable | None, features: CachedImageFeatures | None = None):
        if preprocess is None and features is None:
            raise ValueError("give `preprocess` (images -> pixel_values) or `features` (an encoder-feature cache)")
        self.queries, self.preprocess, self.features = queries, preprocess, features

    def __call__(self, qi: int, flipped: bool) -> dict:
        q = self.queries[qi]
        if self.features is not None:
            return {"image_features": self.features.image_features(q, flipped=flipped), "classes": q.category}
        image = query_image(q)
        if flipped:
            image = ImageOps.mirror(image)
        return {"pixel_values": self.preprocess([image])[0], "classes": q.category}


def _size(query) -> tuple[int, int]:
    w, h = query.size
    return int(w), int(h)


def _positives_counts(queries) -> list[int]:
    from ..data.pipe import PipeQueries

    if isinstance(queries, PipeQueries):  # one box per PIPE row: no need to read 888k label rows
        return [1] * len(queries)
    return [len(q.positives) for q in queries]


def image_groups(queries: Sequence, items: Sequence[tuple], k: int, name: str = "k") -> list[tuple]:
    """``items`` (tuples whose first entry is a query index) in groups of exactly ``k`` items of one image.

    k = 1: one group per item, in order. Otherwise each image's items are split into groups of k, and
    its last, short group is filled up by cycling through that image's items.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name} must be an int >= 1, got {k!r}")
    if k == 1:
        return [(item,) for item in items]
    per_image: dict[str, list] = {}
    for item in items:
        per_image.setdefault(image_key(queries[item[0]]), []).append(item)
    return [tuple(group[(start + i) % len(group)] for i in range(k))
            for group in per_image.values() for start in range(0, len(group), k)]


def _check_region_prob(p) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"region_prob must lie in [0, 1], got {p}")
    return p


class BoxDataset(Dataset):
    """Supervised examples: every positive box of every query (and its mirror image with ``hflip``).

    ``boxes_per_image=k > 1``: an example is k boxes of one image, from any of its queries (several
    labelled objects of one scene), ``{prefix, classes: [k names], box_tokens: (k, 4)}``; ``collate``
    stacks them in the block layout ``LocationModel.forward`` takes, so the image runs through the
    encoder and the decoder's image tokens once for k boxes. An image's boxes are split into groups
    of k; a last, short group is filled up by cycling through that image's boxes.

    ``region_prob > 0`` (a region-conditioned model): each box comes with ``regions``, a normalised
    rectangle around its centre with that probability, else the whole image
    (``training.random_regions``; drawn from ``(region_seed, example index)``).
    """

    def __init__(self, queries: Sequence, num_bins: int, preprocess: Callable | None = None, features=None,
                 hflip: bool = False, boxes_per_image: int = 1, region_prob: float = 0.0, region_seed: int = 0):
        from ..data.pipe import PipeQueries

        self.queries, self.num_bins = queries, int(num_bins)
        self.prefix = _PrefixSource(queries, preprocess, features)
        if boxes_per_image != 1 and isinstance(queries, PipeQueries):
            raise ValueError("boxes_per_image > 1 needs several labelled boxes per image; PIPE has one per image")
        boxes = [(qi, j) for qi, n in enumerate(_positives_counts(queries)) for j in range(n)]
        groups = image_groups(queries, boxes, boxes_per_image, "boxes_per_image")
        self.boxes_per_image = boxes_per_image
        self.region_prob, self.region_seed = _check_region_prob(region_prob), int(region_seed)
        self.index = [(g, f) for g in groups for f in ((False, True) if hflip else (False,))]
        if not self.index:
            raise ValueError("no positive boxes in the training queries: nothing to train on")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        group, flipped = self.index[i]
        item = self.prefix(group[0][0], flipped)
        w, h = _size(self.queries[group[0][0]])   # a group's boxes are all on one image
        boxes = torch.cat([self.queries[qi].positives[j : j + 1] for qi, j in group])
        if flipped:
            boxes = hflip_boxes(boxes, w)
        # One call for the whole group: on a few boxes, torch's per-call overhead is the cost (a third
        # of a pretraining step when each box was tokenised on its own).
        tokens = boxes_to_tokens(boxes, w, h, self.num_bins).long()
        classes = [self.queries[qi].category for qi, _ in group]
        regions = [training_regions(boxes[j : j + 1], w, h, self.region_prob, self.region_seed, i * len(group) + j)[0]
                   for j in range(len(group))] if self.region_prob else []
        if self.boxes_per_image == 1:
            item["box_tokens"] = tokens[0]
        else:
            item["box_tokens"], item["classes"] = tokens, classes
        if regions:
            item["regions"] = regions[0] if self.boxes_per_image == 1 else torch.stack(regions)
        return item


class PairDataset(Dataset):
    """Preference examples: ``pairs`` is a list of ``(query_index, chosen_box, rejected_box)``.

    ``pairs_per_image=k > 1``: an example is k pairs of one image (from any of its queries),
    ``{prefix, classes: [k names], chosen_tokens: (k, 4), rejected_tokens: (k, 4)}``, so the image runs
    once for 2k boxes; an image's pairs are split into groups of k, a short last group filled up by
    cycling. ``with_reference(chosen, rejected)`` attaches precomputed reference log-probs, one per
    pair: (len(self),) or, grouped, (len(self), k). ``region_prob``: as in :class:`BoxDataset`, one region
    per pair around the chosen box's centre, shared by both boxes.
    """

    def __init__(self, queries: Sequence, pairs: Sequence[tuple[int, torch.Tensor, torch.Tensor]], num_bins: int,
                 preprocess: Callable | None = None, features=None, hflip: bool = False, pairs_per_image: int = 1,
                 region_prob: float = 0.0, region_seed: int = 0):
        self.queries, self.num_bins = queries, int(num_bins)
        self.prefix = _PrefixSource(queries, preprocess, features)
        pairs = [(qi, torch.as_tensor(c, dtype=torch.float32), torch.as_tensor(r, dtype=torch.float32))
                 for qi, c, r in pairs]
        groups = image_groups(queries, pairs, pairs_per_image, "pairs_per_image")
        self.pairs_per_image = pairs_per_image
        self.region_prob, self.region_seed = _check_region_prob(region_prob), int(region_seed)
        self.index = [(g, f) for g in groups for f in ((False, True) if hflip else (False,))]
        if not self.index:
            raise ValueError("no (positive, negative) pairs: DPO needs queries with both positives and negatives")
        self.ref_chosen_logps: torch.Tensor | None = None
        self.ref_rejected_logps: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.index)

    def with_reference(self, chosen: torch.Tensor, rejected: torch.Tensor) -> "PairDataset":
        """A copy whose examples carry precomputed reference log-probs."""
        k = self.pairs_per_image
        shape = (len(self),) if k == 1 else (len(self), k)
        if chosen.numel() != len(self) * k or rejected.numel() != len(self) * k:
            raise ValueError(f"reference log-probs: expected {len(self) * k} values each, "
                             f"got {chosen.numel()}/{rejected.numel()}")
        self.ref_chosen_logps = chosen.float().cpu().reshape(shape)
        self.ref_rejected_logps = rejected.float().cpu().reshape(shape)
        return self

    def __getitem__(self, i: int) -> dict:
        group, flipped = self.index[i]
        item = self.prefix(group[0][0], flipped)
        w, h = _size(self.queries[group[0][0]])   # a group's pairs are all on one image
        k = len(group)
        boxes = torch.stack([c for _, c, _ in group] + [r for _, _, r in group])   # chosen boxes, then rejected
        if flipped:
            boxes = hflip_boxes(boxes, w)
        tokens = boxes_to_tokens(boxes, w, h, self.num_bins).long()   # one call for the group (see BoxDataset)
        chosen, rejected = tokens[:k], tokens[k:]
        classes = [self.queries[qi].category for qi, _, _ in group]
        regions = [training_regions(boxes[j : j + 1], w, h, self.region_prob, self.region_seed, i * k + j)[0]
                   for j in range(k)] if self.region_prob else []
        if self.pairs_per_image == 1:
            item["chosen_tokens"], item["rejected_tokens"] = chosen[0], rejected[0]
        else:
            item["chosen_tokens"], item["rejected_tokens"] = chosen, rejected
            item["classes"] = classes
        if regions:
            item["regions"] = regions[0] if self.pairs_per_image == 1 else torch.stack(regions)
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


#: Per-box (or per-pair) entries of grouped examples; ``collate`` puts them in the block layout.
GROUPED_KEYS = ("box_tokens", "chosen_tokens", "rejected_tokens", "ref_chosen_logps", "ref_rejected_logps", "regions")


def collate(examples: list[dict]) -> dict:
    """Stack the tensors of a list of examples; class names become a list.

    Grouped examples (k boxes or pairs of one image: ``classes`` is a list of k names) become the
    block layout of ``LocationModel.forward``: classes and every entry of ``GROUPED_KEYS`` get k * B
    rows, row j * B + b being item j of example b.
    """
    if not examples:
        raise ValueError("empty batch")
    batch = {}
    for key in examples[0]:
        values = [ex[key] for ex in examples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else list(values)
    classes = batch.get("classes")
    if classes and isinstance(classes[0], list):
        k = len(classes[0])
        if any(not isinstance(c, list) or len(c) != k for c in classes):
            raise ValueError(f"grouped examples of {k} boxes need {k} class names each")
        batch["classes"] = [c[j] for j in range(k) for c in classes]
        for key in GROUPED_KEYS:
            value = batch.get(key)
            if value is not None:
                if value.shape[1] != k:
                    raise ValueError(f"{key}: {value.shape[1]} per example, expected {k}")
                batch[key] = value.transpose(0, 1).reshape(-1, *value.shape[2:])
    return batch
