"""One batch of images through paste-and-label: the step every engine runs.

For each image (and each of its ``copies``), with a generator seeded from ``(seed, image key,
copy)`` only, so that the result never depends on which worker ran it:

1. how many objects (``per_image``) and of which classes (weights ∝ count ** (1 - rare_boost):
   0 keeps the dataset's class frequencies, 1 is uniform over classes, 2 inverse frequency);
2. slot by slot, a box from the :mod:`placement <locinsert.copypaste.placement>` for the whole
   batch at once (the location model samples all images of the batch in one call), avoiding the
   existing boxes (``avoid_existing``) and always the objects pasted before;
3. what goes in the box: a cut-out matched to it by class, aspect ratio and scale (or, for random
   placement, drawn first and placed at its own jittered size), resized and blended
   (:mod:`blending <locinsert.copypaste.blending>`); or an inpainter that draws the class there;
4. the labels: the new object gets its box and, when the cut-out has a real mask, its mask (RLE);
   every object under it loses the covered pixels. One whose visible share of its original area
   falls below ``min_visible`` is dropped (``occluded="drop"``) or kept with an ``ignore`` flag
   (``occluded="flag"``); the others get the box (and mask) of what is still visible.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from .blending import blend, resize_cutout
from .formats import Annotation, DetectionDataset, ImageRecord, decode_segmentation, encode_mask
from .placement import PlaceRequest, Placement

__all__ = ["AugmentOptions", "Augmenter", "AugmentedImage", "image_seed", "output_key"]

OCCLUDED = ("drop", "flag")


def image_seed(seed: int, key: str, copy: int = 0) -> np.random.SeedSequence:
    """The seed of one image's draws: from the job's seed, the image key and the copy index only."""
    digest = hashlib.sha256(f"{key}\0{copy}".encode()).digest()
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *np.frombuffer(digest[:16], np.uint32).tolist()])


def output_key(key: str, copy: int, copies: int) -> str:
    """The output file's path relative to the image root: the input's when ``copies == 1``."""
    if copies == 1:
        return key
    stem, dot, ext = key.rpartition(".")
    return f"{stem}_aug{copy}.{ext}" if dot else f"{key}_aug{copy}"


@dataclass
class AugmentOptions:
    """What the job does to each image (see the module docstring).

    Args:
        per_image: objects pasted per image: an int, or (low, high) drawn uniformly per image.
        classes: which classes to paste (default: every class the paste source has).
        rare_boost: class weights ∝ count ** (1 - rare_boost).
        copies: augmented versions written per input image.
        blend: ``"hard"``, ``"feather"`` or ``"harmonize"``.
        feather_sigma: feathering in pixels.
        harmonize_strength: share of the Lab statistics moved towards the surroundings.
        min_visible: visible share under which an occluded object is dropped or flagged.
        occluded: ``"drop"`` or ``"flag"``.
        avoid_existing: learned and oracle placement keep off existing boxes (pasted objects are
            always avoided).
        seed: the job's seed.
    """

    per_image: int | tuple[int, int] = (1, 3)
    classes: list[str] | None = None
    rare_boost: float = 0.0
    copies: int = 1
    blend: str = "feather"
    feather_sigma: float = 1.0
    harmonize_strength: float = 0.5
    min_visible: float = 0.25
    occluded: str = "drop"
    avoid_existing: bool = True
    seed: int = 0

    def __post_init__(self):
        from ..validation import check_choice, check_float, check_int

        pi = self.per_image
        lo, hi = (pi, pi) if isinstance(pi, (int, np.integer)) and not isinstance(pi, bool) else tuple(pi)
        lo, hi = check_int(lo, "per_image", minimum=0), check_int(hi, "per_image", minimum=0)
        if hi < lo:
            raise ValueError(f"per_image range must be low <= high, got {pi!r}")
        self.per_image = (lo, hi)
        self.copies = check_int(self.copies, "copies", minimum=1)
        self.rare_boost = check_float(self.rare_boost, "rare_boost")
        self.min_visible = check_float(self.min_visible, "min_visible", minimum=0, maximum=1)
        self.occluded = check_choice(self.occluded, "occluded", OCCLUDED)
        self.seed = check_int(self.seed, "seed")
        self.feather_sigma = check_float(self.feather_sigma, "feather_sigma", minimum=0)
        self.harmonize_strength = check_float(self.harmonize_strength, "harmonize_strength", minimum=0, maximum=1)
        from .blending import BLENDS
        self.blend = check_choice(self.blend, "blend", BLENDS)


@dataclass
class AugmentedImage:
    """One output image: its ``key`` (path relative to the output image root), the ``source``
    record, its pixels (``None`` when nothing changed: the file is copied byte for byte), its
    annotations, and how many objects were ``pasted`` / found ``no_place``."""

    key: str
    source: ImageRecord
    copy: int
    image: np.ndarray | None
    annotations: list[Annotation]
    pasted: int = 0
    no_place: int = 0
    dropped: int = 0
    flagged: int = 0
    image_entry: dict = field(default_factory=dict)


class Augmenter:
    """Runs :class:`AugmentOptions` over batches of records with one placement and one paste source.

    Args:
        dataset: the dataset (class counts for the class weights).
        placement: a :class:`~locinsert.copypaste.placement.Placement`.
        bank: an :class:`~locinsert.copypaste.sources.InstanceBank` to cut from, or ``None``
            when ``inpainter`` draws the objects.
        options: the :class:`AugmentOptions`.
        inpainter: anything with ``inpaint(image, box, prompt, generator=None)`` (``locinsert.inpainting``).
    """

    def __init__(self, dataset: DetectionDataset, placement: Placement, bank: Any = None,
                 options: AugmentOptions | None = None, inpainter: Any = None):
        if (bank is None) == (inpainter is None):
            raise ValueError("give exactly one paste source: an instance bank or an inpainter")
        self.placement, self.bank, self.inpainter = placement, bank, inpainter
        self.options = options or AugmentOptions()
        counts = dataset.class_counts()
        available = bank.classes if bank is not None else list(dataset.names)
        wanted = self.options.classes or available
        unknown = [c for c in wanted if c not in dataset.names and c not in available]
        if unknown:
            raise ValueError(f"unknown class(es) {unknown}: the dataset has {dataset.names}")
        missing = [c for c in wanted if c not in available]
        if missing:
            raise ValueError(f"no instance to paste for class(es) {missing} (the paste source has {available})")
        self.classes = list(wanted)
        w = np.array([max(counts.get(c, 0), 1) for c in self.classes], np.float64) ** (1.0 - self.options.rare_boost)
        self.class_weights = w / w.sum()
        # shapes for boxes the inpainter fills when placement needs a size (random)
        self._shapes = {}
        for c in self.classes:
            sizes = [(a.bbox[2] / max(a.bbox[3], 1e-6), math.sqrt(a.bbox[2] * a.bbox[3] / (r.width * r.height)))
                     for r in dataset.records for a in r.annotations if a.category == c and a.bbox[3] > 0]
            self._shapes[c] = tuple(np.median(sizes, 0)) if sizes else (1.0, 0.2)

    # -- one batch ------------------------------------------------------------------------------

    def run(self, items: list[tuple[ImageRecord, int]]) -> list[AugmentedImage]:
        """Augment a batch of (record, copy index) pairs; the batch is placed slot by slot together."""
        opt = self.options
        states = []
        for rec, copy in items:
            rng = np.random.default_rng(image_seed(opt.seed, rec.key, copy))
            n = int(rng.integers(opt.per_image[0], opt.per_image[1] + 1))
            plan = [self.classes[i] for i in rng.choice(len(self.classes), size=n, p=self.class_weights)] if n else []
            states.append(_State(rec, copy, rng, plan, [Annotation(**_fields(a)) for a in rec.annotations]))
        slots = max((len(s.plan) for s in states), default=0)
        gen_seed = int.from_bytes(hashlib.sha256(
            ("\0".join(f"{s.record.key}:{s.copy}" for s in states) + f"\0{opt.seed}").encode()).digest()[:8], "little")
        generator = torch.Generator().manual_seed(gen_seed & 0x7FFFFFFFFFFFFFFF)
        for slot in range(slots):
            active = [s for s in states if slot < len(s.plan)]
            requests = []
            for s in active:
                s.load()
                cls = s.plan[slot]
                avoid = [a.xyxy for a in s.annotations if a.inserted or opt.avoid_existing]
                shape = None
                if self.placement.needs_shape:
                    if self.bank is not None:
                        s.pending = self.bank.draw(cls, s.rng)
                        shape = (s.pending.aspect, s.pending.rel_size)
                    else:
                        shape = self._shapes[cls]
                requests.append(PlaceRequest(s.image, cls, np.asarray(avoid, np.float64).reshape(-1, 4), s.rng,
                                             shape, s.record))
            boxes = self.placement.place(requests, generator)
            for s, req, box in zip(active, requests, boxes):
                if box is None:
                    s.no_place += 1
                    continue
                self._paste(s, req.category, box, generator)
        return [s.result(opt.copies) for s in states]

    def _paste(self, s: "_State", cls: str, box, generator) -> None:
        H, W = s.image.shape[:2]
        x1, y1 = int(round(box[0])), int(round(box[1]))
        x2, y2 = max(int(round(box[2])), x1 + 1), max(int(round(box[3])), y1 + 1)
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
        if x2 - x1 < 2 or y2 - y1 < 2:
            s.no_place += 1
            return
        if self.bank is not None:
            inst = s.pending if self.placement.needs_shape else self.bank.match(cls, (x1, y1, x2, y2), (W, H), s.rng)
            cut = resize_cutout(self.bank.cutout(inst), x2 - x1, y2 - y1)
            new, mask = blend(s.image, cut, (x1, y1, x2, y2), self.options.blend, self.options.feather_sigma,
                              self.options.harmonize_strength)
            has_mask = inst.has_mask
        else:
            new = np.asarray(self.inpainter.inpaint(Image.fromarray(s.image), (x1, y1, x2, y2), cls,
                                                    generator=generator).convert("RGB"))
            mask = np.zeros((H, W), bool)
            mask[y1:y2, x1:x2] = True
            has_mask = False
        if not mask.any():
            s.no_place += 1
            return
        s.occlude(mask, self.options)
        ys, xs = np.nonzero(mask)
        bx1, by1, bx2, by2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        seg = encode_mask(mask) if has_mask else None
        s.annotations.append(Annotation(cls, (float(bx1), float(by1), float(bx2 - bx1), float(by2 - by1)), seg,
                                        None, {"area": float(mask.sum()) if has_mask else float((bx2 - bx1) * (by2 - by1))},
                                        True))
        s.image = new
        s.pasted += 1


def _fields(a: Annotation) -> dict:
    return {"category": a.category, "bbox": a.bbox, "segmentation": a.segmentation, "raw": a.raw,
            "flags": dict(a.flags), "changed": a.changed}


class _State:
    """One image while its slots are filled."""

    def __init__(self, record: ImageRecord, copy: int, rng, plan, annotations):
        self.record, self.copy, self.rng, self.plan, self.annotations = record, copy, rng, plan, annotations
        self.image: np.ndarray | None = None
        self.pending = None
        self.pasted = self.no_place = self.dropped = self.flagged = 0

    def load(self) -> None:
        if self.image is None:
            with Image.open(self.record.path) as im:
                self.image = np.asarray(im.convert("RGB"))
            h, w = self.image.shape[:2]
            if (w, h) != (self.record.width, self.record.height):
                raise ValueError(f"{self.record.path}: the image is {w}x{h} but its record says "
                                 f"{self.record.width}x{self.record.height}")

    def _mask_of(self, a: Annotation) -> np.ndarray:
        H, W = self.image.shape[:2]
        if a.segmentation is not None:
            return decode_segmentation(a.segmentation, H, W, f"{self.record.path}: {a.category}")
        m = np.zeros((H, W), bool)
        x1, y1, x2, y2 = a.xyxy
        m[max(int(round(y1)), 0):max(int(round(y2)), 0), max(int(round(x1)), 0):max(int(round(x2)), 0)] = True
        return m

    def occlude(self, pasted: np.ndarray, opt: AugmentOptions) -> None:
        """Take the pasted pixels away from every object under them (see the module docstring)."""
        ys, xs = np.nonzero(pasted)
        px1, py1, px2, py2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        keep = []
        for a in self.annotations:
            x1, y1, x2, y2 = a.xyxy
            if a.flags.get("ignore") or x2 <= px1 or px2 <= x1 or y2 <= py1 or py2 <= y1:
                keep.append(a)
                continue
            mask = self._mask_of(a)
            covered = mask & pasted
            if not covered.any():
                keep.append(a)
                continue
            full = a.flags.get("full_area", float(mask.sum()))
            visible = mask & ~pasted
            share = float(visible.sum()) / max(full, 1.0)
            if share < opt.min_visible or not visible.any():
                if opt.occluded == "drop":
                    self.dropped += 1
                    continue
                self.flagged += 1
                a.flags.update(ignore=1, visible_share=round(share, 4))
                a.changed = True
                keep.append(a)
                continue
            vy, vx = np.nonzero(visible)
            bx1, by1, bx2, by2 = int(vx.min()), int(vy.min()), int(vx.max()) + 1, int(vy.max()) + 1
            a.bbox = (float(bx1), float(by1), float(bx2 - bx1), float(by2 - by1))
            if a.segmentation is not None:
                a.segmentation = encode_mask(visible)
                a.flags["area"] = float(visible.sum())
            else:
                a.flags["area"] = float((bx2 - bx1) * (by2 - by1))
            a.flags["full_area"] = full
            a.changed = True
            keep.append(a)
        self.annotations = keep

    def result(self, copies: int) -> AugmentedImage:
        changed = self.pasted > 0 or self.dropped > 0 or any(a.changed for a in self.annotations)
        return AugmentedImage(output_key(self.record.key, self.copy, copies), self.record, self.copy,
                              self.image if changed else None, self.annotations, self.pasted, self.no_place,
                              self.dropped, self.flagged)
