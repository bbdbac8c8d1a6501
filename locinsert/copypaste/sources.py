"""What to paste: cut-outs of objects, matched to a box by class, aspect ratio and scale.

- :class:`DatasetInstances`: instances cut out of the dataset itself by their masks (copy-paste).
  An annotation without a mask is cut out as its box (a rectangle), and its pasted copy is
  labelled by its box only.
- :class:`FolderInstances`: a folder of RGBA cut-outs, one subfolder per class
  (``cutouts/cup/*.png``); the alpha channel is the mask.

Both hold :class:`Instance` records (class, aspect ratio, size relative to the source image) and
load pixels lazily. :meth:`InstanceBank.match` follows Dvornik et al.: among the instances of
the class, prefer those whose aspect ratio and relative scale are closest to the box's, then
draw among the closest few so that the same box does not always get the same object.
The third source, an inpainter that draws the class inside the box, needs no bank (see
:mod:`locinsert.copypaste.core`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image

from .formats import IMAGE_EXTENSIONS, DetectionDataset, decode_segmentation

__all__ = ["Instance", "InstanceBank", "DatasetInstances", "FolderInstances"]


@dataclass(frozen=True)
class Instance:
    """One pasteable object: ``category``, where its pixels are, and its shape.

    ``aspect`` = w / h of its box; ``rel_size`` = sqrt(box area / image area) in its source image;
    ``has_mask``: whether its alpha is a real mask (False: a box cut-out, labelled by its box).
    """

    category: str
    path: str
    box: tuple[int, int, int, int]          # xyxy pixels in the source image
    aspect: float
    rel_size: float
    has_mask: bool
    segmentation: object = field(default=None, hash=False, compare=False)  # COCO segmentation in the source image
    image_size: tuple[int, int] = (0, 0)     # (w, h) of the source image


class InstanceBank:
    """A set of :class:`Instance` by class, with lazy RGBA cut-outs (see the module docstring)."""

    def __init__(self, instances: Sequence[Instance], cache_size: int = 256):
        self.by_class: dict[str, list[Instance]] = {}
        for inst in instances:
            self.by_class.setdefault(inst.category, []).append(inst)
        self._cutout = lru_cache(maxsize=cache_size)(self._load_cutout)

    @property
    def classes(self) -> list[str]:
        """Class names that have at least one instance."""
        return sorted(self.by_class)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_class.values())

    def typical_size(self, category: str) -> tuple[float, float]:
        """(aspect, rel_size): the medians of ``category``'s instances (a box shape for random placement)."""
        insts = self.by_class[category]
        return (float(np.median([i.aspect for i in insts])), float(np.median([i.rel_size for i in insts])))

    def draw(self, category: str, rng: np.random.Generator) -> Instance:
        """A uniform draw among the instances of ``category``."""
        insts = self.by_class.get(category)
        if not insts:
            raise ValueError(f"no instance of class {category!r} to paste (have {self.classes})")
        return insts[int(rng.integers(len(insts)))]

    def match(self, category: str, box, image_size: tuple[int, int], rng: np.random.Generator,
              top: int = 3) -> Instance:
        """The instance to paste into ``box`` (xyxy pixels of an image of ``image_size`` = (w, h)).

        Cost = |log aspect ratio| + |log relative scale| against the box; one of the ``top``
        cheapest is drawn uniformly.
        """
        insts = self.by_class.get(category)
        if not insts:
            raise ValueError(f"no instance of class {category!r} to paste (have {self.classes})")
        w, h = max(box[2] - box[0], 1e-6), max(box[3] - box[1], 1e-6)
        aspect, rel = w / h, math.sqrt(w * h / (image_size[0] * image_size[1]))
        cost = np.array([abs(math.log(i.aspect / aspect)) + abs(math.log(i.rel_size / rel)) for i in insts])
        order = np.argsort(cost, kind="stable")[: max(1, top)]
        return insts[int(order[int(rng.integers(len(order)))])]

    def cutout(self, inst: Instance) -> np.ndarray:
        """(h, w, 4) uint8 RGBA of the instance, cropped to its box."""
        return self._cutout(inst)

    def _load_cutout(self, inst: Instance) -> np.ndarray:
        raise NotImplementedError


class DatasetInstances(InstanceBank):
    """Instances cut out of a :class:`DetectionDataset` by their masks (or boxes when they have none).

    Args:
        dataset: the dataset to cut from.
        classes: keep only these class names (default: all).
        min_side: skip objects whose box is smaller than this many pixels on a side.
        include_crowd: also use ``iscrowd`` annotations (COCO); off by default.
    """

    def __init__(self, dataset: DetectionDataset, classes: Sequence[str] | None = None, min_side: float = 4,
                 include_crowd: bool = False, cache_size: int = 256):
        keep = set(classes) if classes else None
        out = []
        for rec in dataset.records:
            for a in rec.annotations:
                if keep is not None and a.category not in keep:
                    continue
                if not include_crowd and isinstance(a.raw, dict) and a.raw.get("iscrowd"):
                    continue
                x, y, w, h = a.bbox
                x1, y1 = max(int(math.floor(x)), 0), max(int(math.floor(y)), 0)
                x2, y2 = min(int(math.ceil(x + w)), rec.width), min(int(math.ceil(y + h)), rec.height)
                if x2 - x1 < min_side or y2 - y1 < min_side:
                    continue
                out.append(Instance(a.category, rec.path, (x1, y1, x2, y2), (x2 - x1) / (y2 - y1),
                                    math.sqrt((x2 - x1) * (y2 - y1) / (rec.width * rec.height)),
                                    a.segmentation is not None, a.segmentation, (rec.width, rec.height)))
        super().__init__(out, cache_size)

    def _load_cutout(self, inst: Instance) -> np.ndarray:
        with Image.open(inst.path) as im:
            rgb = np.asarray(im.convert("RGB"))
        x1, y1, x2, y2 = inst.box
        if inst.has_mask:
            mask = decode_segmentation(inst.segmentation, inst.image_size[1], inst.image_size[0], inst.path)
            alpha = mask[y1:y2, x1:x2].astype(np.uint8) * 255
        else:
            alpha = np.full((y2 - y1, x2 - x1), 255, np.uint8)
        return np.dstack([rgb[y1:y2, x1:x2], alpha])


class FolderInstances(InstanceBank):
    """RGBA cut-outs from ``root/<class>/*.png``: the alpha channel is the object's mask.

    ``rel_size`` of a folder cut-out is unknown, so matching uses the aspect ratio only (every
    cut-out gets the same nominal size, ``nominal_size``, a fraction of the image side).

    Raises:
        ValueError: no class folder with an image in it.
    """

    def __init__(self, root: str | os.PathLike, classes: Sequence[str] | None = None, nominal_size: float = 0.25,
                 cache_size: int = 256):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{root}: no such cut-out folder")
        out = []
        for cls in sorted(os.listdir(root)):
            folder = os.path.join(root, cls)
            if not os.path.isdir(folder) or (classes and cls not in classes):
                continue
            for f in sorted(os.listdir(folder)):
                if not f.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = os.path.join(folder, f)
                try:
                    with Image.open(path) as im:
                        w, h = im.size
                        has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
                except OSError as e:
                    raise ValueError(f"{path}: not a readable image ({e})") from None
                out.append(Instance(cls, path, (0, 0, w, h), w / h, nominal_size, has_alpha, None, (w, h)))
        if not out:
            raise ValueError(f"{root}: no cut-outs: expected one subfolder per class with RGBA images in it")
        super().__init__(out, cache_size)

    def _load_cutout(self, inst: Instance) -> np.ndarray:
        with Image.open(inst.path) as im:
            rgba = np.asarray(im.convert("RGBA"))
        ys, xs = np.nonzero(rgba[..., 3] > 0)
        if len(xs) == 0:
            raise ValueError(f"{inst.path}: the cut-out is fully transparent")
        return rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
