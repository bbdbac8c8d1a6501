"""Baselines with the location model's ``sample`` interface, so ``evaluate`` treats them like a model.

- ``RandomBoxes`` (``random``): uniform valid boxes; it looks at nothing.
- ``ClassPrior`` (``prior``): boxes drawn from the training labels of the same class, in fractions of
  their image and rescaled to the query image; it ignores the image, so the gap between it and a
  model measures how much the model actually looks at the image.

Both return one ``BaselineSamples`` per image (``.boxes`` (N, 4) xyxy pixels, ``.logprobs`` (N,):
the exact log-probability of each box under the baseline), like ``LocationModel.sample``. Neither
takes a ``region``: they are reference points for the unconstrained protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from ..boxes import DEFAULT_NUM_BINS, denormalize, normalize, tokens_to_boxes
from ..registry import BASELINES as _REGISTRY
from ..validation import check_box_count, check_int


@dataclass
class BaselineSamples:
    """Samples of one image, shaped like the model's ``BoxSamples`` (kept separate so that baselines
    never import the model stack): ``boxes`` (N, 4) xyxy pixels, ``logprobs`` (N,), ``tokens``
    (N, 4) or None, and the image size."""

    boxes: torch.Tensor
    logprobs: torch.Tensor
    tokens: torch.Tensor | None = None
    width: int = 0
    height: int = 0

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def best(self, k: int = 1) -> torch.Tensor:
        """The k most likely boxes, (k, 4)."""
        return self.boxes[self.logprobs.argsort(descending=True, stable=True)[:k]]


def image_size(image) -> tuple[int, int]:
    """(width, height) of a PIL image, a uint8 array (H, W, 3), a path, or a ``(width, height)`` pair.

    A size pair is accepted so that baselines, which never look at pixels, also run on labels-only
    data whose image sizes are known.
    """
    if isinstance(image, tuple) and len(image) == 2 and all(isinstance(v, (int, float)) for v in image):
        w, h = image
    elif hasattr(image, "shape") and len(image.shape) == 3:
        h, w = image.shape[:2]
    else:  # PIL image or path: the upright (EXIF-rotated) size, the frame models and labels use
        from ..images import image_size as upright_size

        w, h = upright_size(image)
    if not (w > 0 and h > 0):
        raise ValueError(f"image size must be positive, got {w}x{h}")
    return int(w), int(h)


def _as_batch(images, classes) -> tuple[list, list[str], bool]:
    single = isinstance(classes, str)
    if single:
        images, classes = [images], [classes]
    images, classes = list(images), list(classes)
    if len(images) != len(classes):
        raise ValueError(f"got {len(images)} images but {len(classes)} classes; need one class per image")
    for c in classes:
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"class names must be non-empty strings, got {c!r}")
    return images, classes, single


def _check_call(num_samples: int, region, num_images: int = 1) -> int:
    if region is not None:
        raise ValueError("baselines sample without a region; evaluate them with region=None")
    n = check_int(num_samples, "num_samples", minimum=1)
    check_box_count(n * num_images, "num_samples" + (" x images" if num_images > 1 else ""))
    return n


class RandomBoxes:
    """Uniform valid boxes on the coordinate-token grid a model decodes on.

    Each axis draws an unordered pair of distinct bins uniformly (so x2 > x1 by at least one bin,
    as a model's decoded box) and takes bin centres, exactly as decoded model tokens are turned into
    pixels. ``num_bins=None`` draws continuous coordinates instead (two uniforms, sorted).
    """

    name = "random"
    needs_image = False

    def __init__(self, num_bins: int | None = DEFAULT_NUM_BINS):
        check_int(num_bins, "num_bins (a box needs two distinct bins)", minimum=2, optional=True)
        self.num_bins = None if num_bins is None else int(num_bins)

    def __repr__(self) -> str:
        return f"RandomBoxes(num_bins={self.num_bins})"

    def _axis(self, n: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n ordered pairs (lo, hi), lo < hi, uniform over such pairs; tokens if binned, else fractions."""
        if self.num_bins is None:
            u = torch.rand(n, 2, generator=generator).sort(-1).values
            return u[:, 0], u[:, 1]
        a = torch.randint(0, self.num_bins, (n,), generator=generator)
        b = torch.randint(0, self.num_bins - 1, (n,), generator=generator)
        b = b + (b >= a).long()  # a uniform second bin different from the first
        return torch.minimum(a, b), torch.maximum(a, b)

    def sample(self, images, classes, num_samples: int = 100, region=None, generator=None):
        """Boxes for each (image, class); one ``BaselineSamples`` for a single image, else a list."""
        images, classes, single = _as_batch(images, classes)
        n = _check_call(num_samples, region, len(images))
        out = []
        if self.num_bins is None:
            # Density of one sorted pair of uniforms on [0, 1]^2 is 2 per axis, in fractions.
            base = 2 * math.log(2.0)
        else:
            base = -2 * math.log(self.num_bins * (self.num_bins - 1) / 2)
        for image in images:
            w, h = image_size(image)
            x1, x2 = self._axis(n, generator)
            y1, y2 = self._axis(n, generator)
            raw = torch.stack([x1, y1, x2, y2], -1)
            if self.num_bins is None:
                boxes, tokens = denormalize(raw, w, h), None
            else:
                boxes, tokens = tokens_to_boxes(raw, w, h, self.num_bins), raw
            out.append(BaselineSamples(boxes, torch.full((n,), base), tokens, w, h))
        return out[0] if single else out


def _class_key(name: str) -> str:
    return " ".join(name.strip().lower().split())


class ClassPrior:
    """Class-conditional boxes from training labels; the image is ignored.

    ``ClassPrior.fit(train_queries)`` keeps every labelled positive box (and the negatives too with
    ``use_negatives=True``) as fractions of its image, grouped by category. ``sample`` draws boxes of
    the query's class uniformly with replacement and rescales them to the query image. A class never
    seen in training falls back to the boxes of all classes.
    """

    name = "prior"
    needs_image = False

    def __init__(self, boxes_by_class: dict[str, torch.Tensor]):
        if not boxes_by_class:
            raise ValueError("ClassPrior needs at least one class with labelled boxes")
        self.boxes_by_class = {_class_key(k): torch.as_tensor(v, dtype=torch.float32).reshape(-1, 4)
                               for k, v in boxes_by_class.items()}
        self.boxes_by_class = {k: v for k, v in self.boxes_by_class.items() if len(v)}
        if not self.boxes_by_class:
            raise ValueError("ClassPrior needs at least one labelled box")
        self.all_boxes = torch.cat(list(self.boxes_by_class.values()))
        self.skipped = 0

    def __repr__(self) -> str:
        return f"ClassPrior({len(self.boxes_by_class)} classes, {len(self.all_boxes)} boxes)"

    @classmethod
    def fit(cls, queries: Iterable, use_negatives: bool = False) -> "ClassPrior":
        """Collect the (normalised) labelled boxes of training ``queries`` (``PlacementQuery``s).

        A query whose image size is unknown (no width/height and no image) is skipped and counted in
        ``.skipped``.
        """
        groups: dict[str, list[torch.Tensor]] = {}
        skipped = 0
        for q in queries:
            boxes = torch.cat([q.positives, q.negatives]) if use_negatives else q.positives
            if len(boxes) == 0:
                continue
            try:
                w, h = q.size
            except (ValueError, FileNotFoundError, OSError):
                skipped += 1
                continue
            groups.setdefault(_class_key(q.category), []).append(normalize(boxes.float(), w, h))
        if not groups:
            raise ValueError("ClassPrior.fit: no query with labelled boxes and a known image size")
        prior = cls({k: torch.cat(v) for k, v in groups.items()})
        prior.skipped = skipped
        return prior

    def boxes_for(self, category: str) -> torch.Tensor:
        """The normalised boxes a class draws from (all classes' boxes for an unseen class)."""
        return self.boxes_by_class.get(_class_key(category), self.all_boxes)

    def sample(self, images, classes, num_samples: int = 100, region=None, generator=None):
        """Boxes for each (image, class); one ``BaselineSamples`` for a single image, else a list."""
        images, classes, single = _as_batch(images, classes)
        n = _check_call(num_samples, region, len(images))
        out = []
        for image, cls_name in zip(images, classes):
            w, h = image_size(image)
            pool = self.boxes_for(cls_name)
            idx = torch.randint(0, len(pool), (n,), generator=generator)
            # Exact probability of a drawn box: how often it occurs in the pool (duplicates add up).
            same = (pool[idx][:, None, :] == pool[None, :, :]).all(-1).sum(1).float()
            out.append(BaselineSamples(denormalize(pool[idx], w, h), torch.log(same / len(pool)), None, w, h))
        return out[0] if single else out


def random_baseline(train_queries: Sequence | None = None, num_bins: int | None = DEFAULT_NUM_BINS) -> RandomBoxes:
    """Uniform boxes on the ``num_bins`` grid (``registry.BASELINES["random"]``); needs no training data."""
    return RandomBoxes(num_bins)


def prior_baseline(train_queries: Sequence | None = None, num_bins: int | None = DEFAULT_NUM_BINS) -> ClassPrior:
    """The training boxes of the class, image ignored (``registry.BASELINES["prior"]``)."""
    if train_queries is None:
        raise ValueError("the 'prior' baseline needs training queries to draw boxes from")
    return ClassPrior.fit(train_queries)


BASELINES = _REGISTRY.names()


def make_baseline(name: str, train_queries: Sequence | None = None, num_bins: int | None = DEFAULT_NUM_BINS):
    """The baseline registered as ``name`` in :data:`locinsert.registry.BASELINES` (``"random"``, ``"prior"``)."""
    return _REGISTRY.create(name, train_queries, num_bins)
