"""Where to paste: learned (the location model), random (Simple Copy-Paste) or the synthetic oracle.

Every placement answers one *slot* for a batch of images at once: ``place(requests, generator)``
gets one :class:`PlaceRequest` per image (its current image, the class, the boxes to avoid, a
random generator of its own) and returns one xyxy pixel box per request, or ``None`` where no box
fits. The caller pastes, then asks for the next slot, so several objects go into one image in
sequence and each sees the ones before it.

- :class:`LearnedPlacement`: ``LocationModel.sample`` for the whole batch in one call, with a
  ``Region`` that avoids the given boxes; one box per image, the best of ``num_candidates`` or a
  plain draw from the model (``selection``).
- :class:`RandomPlacement`: Simple Copy-Paste (Ghiasi et al. 2021): the object's own size times a
  uniform scale jitter, at a uniform position inside the image; it avoids nothing (pasted objects
  occlude what is under them, and the labels below are adjusted).
- :class:`OraclePlacement`: a uniform draw among the true placements of the synthetic world
  (``dense_positives``) that avoid the given boxes; it needs the image's ``Scene``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["PlaceRequest", "Placement", "LearnedPlacement", "RandomPlacement", "OraclePlacement", "PLACEMENTS",
           "SELECTIONS"]

PLACEMENTS = ("learned", "random", "oracle")
SELECTIONS = ("sample", "best")


@dataclass
class PlaceRequest:
    """One image's slot: ``image`` (H, W, 3) uint8 as it is now, the ``category`` to place, ``avoid``
    (K, 4) xyxy pixels, ``rng`` the image's own generator, ``shape`` = (aspect w/h, size relative to
    the image side) of the object to paste when known, and ``record`` (the dataset's ``ImageRecord``)."""

    image: np.ndarray
    category: str
    avoid: np.ndarray
    rng: np.random.Generator
    shape: tuple[float, float] | None = None
    record: object = None
    meta: dict = field(default_factory=dict)


class Placement:
    """Base class: ``place(requests, generator) -> list[box | None]`` (see the module docstring)."""

    name = "placement"
    #: whether the placement needs the object's shape first (then the object is drawn before the box)
    needs_shape = False

    def place(self, requests: Sequence[PlaceRequest], generator: torch.Generator | None = None) -> list:
        """One xyxy pixel box (or ``None``: no room) per request, in order.

        Args:
            requests: one :class:`PlaceRequest` per image of the batch.
            generator: the batch's torch generator (the location model samples with it).
        """
        raise NotImplementedError


def _overlap_share(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N,) largest overlap of each of ``box`` (N, 4) with one of ``others`` (K, 4), as a share of
    the smaller of the two areas (a big box swallowing a small object counts as a full overlap)."""
    if len(others) == 0 or len(box) == 0:
        return np.zeros(len(box))
    lt = np.maximum(box[:, None, :2], others[None, :, :2])
    rb = np.minimum(box[:, None, 2:], others[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    area_a = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    area_b = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    smaller = np.clip(np.minimum(area_a[:, None], area_b[None, :]), 1e-9, None)
    return (wh[..., 0] * wh[..., 1] / smaller).max(1)


class RandomPlacement(Placement):
    """Simple Copy-Paste: size = the object's own relative size x U(scale_range), position uniform.

    Args:
        scale_range: the jitter of the object's size (Simple Copy-Paste jitters whole images by
            0.1-2.0; the default is milder because few-label datasets have few instances to spare).
    """

    name = "random"
    needs_shape = True

    def __init__(self, scale_range: tuple[float, float] = (0.5, 1.5)):
        lo, hi = (float(v) for v in scale_range)
        if not (0 < lo <= hi):
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range!r}")
        self.scale_range = (lo, hi)

    def place(self, requests, generator=None) -> list:
        """A jittered box of each request's object ``shape`` at a uniform position."""
        out = []
        for r in requests:
            H, W = r.image.shape[:2]
            aspect, rel = r.shape if r.shape else (1.0, 0.2)
            s = rel * math.sqrt(W * H) * float(r.rng.uniform(*self.scale_range))
            w = min(max(s * math.sqrt(aspect), 2.0), W)
            h = min(max(s / math.sqrt(aspect), 2.0), H)
            x1, y1 = float(r.rng.uniform(0, W - w)), float(r.rng.uniform(0, H - h))
            out.append((x1, y1, x1 + w, y1 + h))
        return out


class LearnedPlacement(Placement):
    """The location model chooses: one batched ``sample`` call per slot, avoiding the given boxes.

    Args:
        model: a ``LocationModel`` (anything with its ``sample(images, classes, num_samples=,
            region=, min_size=, generator=)`` returning objects with ``boxes``).
        num_candidates: boxes sampled per image.
        selection: ``"sample"`` keeps the first draw (a plain sample of the model: varied places),
            ``"best"`` the most likely of the candidates (``BoxSamples.best``).
        region: an optional ``Region`` (or anything ``Region`` takes) every box must respect.
        min_size: smallest box side in pixels.
    """

    name = "learned"

    def __init__(self, model: Any, num_candidates: int = 16, selection: str = "sample", region: Any = None,
                 min_size: float | None = 4.0):
        from ..validation import check_choice, check_int

        if not hasattr(model, "sample"):
            raise TypeError(f"model must be a LocationModel (with .sample), got {type(model).__name__}")
        self.model = model
        self.num_candidates = check_int(num_candidates, "num_candidates", minimum=1)
        self.selection = check_choice(selection, "selection", SELECTIONS)
        self.region = region
        self.min_size = min_size

    def _region(self, avoid: np.ndarray):
        from ..regions import Region, as_region

        base = as_region(self.region)
        if len(avoid) == 0:
            return base
        return (base or Region(None)).with_avoid(torch.as_tensor(avoid, dtype=torch.float32))

    def _pick(self, samples) -> tuple[float, float, float, float]:
        box = samples.best(1)[0] if self.selection == "best" else samples.boxes[0]
        return tuple(float(v) for v in box)

    def place(self, requests, generator=None) -> list:
        """One ``sample`` call for the batch (falling back to one image at a time when an image's
        avoided boxes leave no room; such an image gets ``None``)."""
        if not requests:
            return []
        from PIL import Image

        images = [Image.fromarray(r.image) for r in requests]
        regions = [self._region(r.avoid) for r in requests]
        classes = [r.category for r in requests]
        try:
            samples = self.model.sample(images, classes, num_samples=self.num_candidates, region=regions,
                                        min_size=self.min_size, generator=generator)
            return [self._pick(s) for s in samples]
        except ValueError:
            pass  # one image's avoid boxes left no room: place the others one by one
        out = []
        for im, cls, reg in zip(images, classes, regions):
            try:
                s = self.model.sample(im, cls, num_samples=self.num_candidates, region=reg, min_size=self.min_size,
                                      generator=generator)
                out.append(self._pick(s))
            except ValueError:
                out.append(None)
        return out


class OraclePlacement(Placement):
    """A uniform draw among the synthetic world's true placements that avoid the given boxes.

    Args:
        scene_of: ``record -> Scene`` (default: the scene stored in the COCO image entry by
            :func:`locinsert.copypaste.synthetic.export_coco`).
        max_overlap: the largest share of the box's area that may cover an avoided box.
    """

    name = "oracle"

    def __init__(self, scene_of: Callable | None = None, max_overlap: float = 0.05):
        from .synthetic import scene_of_record

        self.scene_of = scene_of or scene_of_record
        self.max_overlap = float(max_overlap)

    def place(self, requests, generator=None) -> list:
        """A uniform draw among each scene's true placements of the class that avoid the given boxes."""
        from ..data.synthetic import dense_positives

        out = []
        for r in requests:
            scene = self.scene_of(r.record)
            H, W = r.image.shape[:2]
            cand = dense_positives(scene, r.category).numpy().astype(np.float64)
            cand = cand * np.array([W, H, W, H]) / scene.size
            if len(r.avoid):
                cand = cand[_overlap_share(cand, np.asarray(r.avoid, np.float64)) <= self.max_overlap]
            out.append(tuple(float(v) for v in cand[int(r.rng.integers(len(cand)))]) if len(cand) else None)
        return out
