"""Training data for text -> mask: (image, text, mask) examples from the synthetic world and PIPE.

**Synthetic world** (exact masks): each scene's existing things (windows, tables, crates, vases, their
visible masks from ``synthetic.labels``) plus 0-3 inserted objects (cup, chair, plant, painting, bird)
pasted at plausible places with their sprites, whose alpha gives the exact mask; a pasted sprite hides
what it covers. Texts name one object: "the vase", "the chair at the bottom", and when a scene holds
two things of one kind, a location word that tells them apart ("the table on the left"). Location
words are ``locinsert.regions`` phrases. Some texts name a kind the scene lacks: their mask is empty
(the truth for "nothing found").

**PIPE**: each row's object mask and class, the class text with PIPE's ``object_location`` words
where the row has them (see :func:`pipe_mask_examples`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..regions import phrase_to_box

# Location phrases by direction; each is read by ``regions.phrase_to_box`` as that half of the image.
LOCATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "at the left", "on the left side", "in the left half", "to the left"),
    "right": ("on the right", "at the right", "on the right side", "in the right half", "to the right"),
    "top": ("at the top", "in the upper half", "in the top half", "at the top of the image"),
    "bottom": ("at the bottom", "in the lower half", "in the bottom half", "at the bottom of the image"),
}
# Inserted objects: the synthetic world's classes, drawn by their sprites.
INSERTED = ("cup", "chair", "plant", "painting", "bird")
EXISTING = ("window", "table", "crate", "vase")
KINDS = EXISTING + INSERTED


@dataclass
class MaskExample:
    """One training or test example: ``text`` names the object whose pixels ``mask`` marks."""

    image: Any                 # an image input: (H, W, 3) uint8 array, PIL image or path
    text: str
    mask: np.ndarray           # (H, W) bool (or float in [0, 1]); all False when the text names nothing there
    kind: str                  # the object's class ("vase", "fire hydrant")
    location: str | None = None  # the direction word used in the text, if any
    meta: dict = field(default_factory=dict)


def _direction(box, size: int) -> tuple[str, str]:
    """(horizontal, vertical) half that holds the centre of ``box``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return ("left" if cx < size / 2 else "right"), ("top" if cy < size / 2 else "bottom")


def _text(kind: str, direction: str | None, rng: np.random.Generator) -> str:
    if direction is None:
        return f"the {kind}" if rng.random() < 0.8 else kind
    phrase = LOCATION_PHRASES[direction][int(rng.integers(len(LOCATION_PHRASES[direction])))]
    if rng.random() < 0.25 and direction in ("left", "right", "top", "bottom"):
        adj = {"top": "upper", "bottom": "lower"}.get(direction, direction)
        return f"the {adj} {kind}"
    return f"the {kind} {phrase}"


def _box_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _paste_objects(scene, image: np.ndarray, rng: np.random.Generator, max_objects: int
                   ) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Paste 0..max_objects distinct inserted classes at plausible boxes; their exact masks."""
    from PIL import Image

    from ..data.synthetic import sprite
    from ..data.synthetic.splits import sample_positives

    pasted: list[tuple[str, np.ndarray]] = []
    n = int(rng.integers(0, max_objects + 1))
    out = Image.fromarray(image)
    for cls in rng.permutation(INSERTED)[:n]:
        boxes = sample_positives(scene, str(cls), 1, rng, num_bins=None)
        if not len(boxes):
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[0])
        x1, y1 = max(x1, 0), max(y1, 0)
        x2, y2 = min(x2, scene.size), min(y2, scene.size)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        cut = sprite(str(cls), (x2 - x1, y2 - y1))
        out.paste(cut, (x1, y1), cut)
        m = np.zeros((scene.size, scene.size), dtype=bool)
        m[y1:y2, x1:x2] = np.asarray(cut.split()[-1]) > 127
        pasted = [(c, pm & ~m) for c, pm in pasted]  # the new one hides what it covers
        pasted.append((str(cls), m))
    return np.asarray(out), pasted


def synthetic_mask_examples(n_scenes: int, seed: int = 0, size: int = 64, stream: str = "textmask",
                            max_inserted: int = 3, negatives: float = 0.3, min_pixels: int = 6
                            ) -> list[MaskExample]:
    """Examples from ``n_scenes`` synthetic scenes, deterministic from ``(seed, stream)``.

    Every visible object of at least ``min_pixels`` pixels gets one text; with probability
    ``negatives`` a scene also gets a text naming a kind it lacks (empty mask). Use another
    ``stream`` (e.g. ``"textmask-test"``) for held-out scenes.
    """
    from ..data.synthetic import object_masks
    from ..data.synthetic.scenes import make_scene, scene_rng

    if isinstance(n_scenes, bool) or not isinstance(n_scenes, (int, np.integer)) or n_scenes < 0:
        raise ValueError(f"n_scenes must be a non-negative int, got {n_scenes!r}")
    rng = scene_rng(seed, stream)
    examples: list[MaskExample] = []
    for i in range(int(n_scenes)):
        scene = make_scene(rng, size=size, scene_id=f"{stream}-{seed}-{i:06d}")
        image, pasted = _paste_objects(scene, scene.render(), rng, max_inserted)
        cover = np.zeros((size, size), dtype=bool)
        for _, m in pasted:
            cover |= m
        things = [(o.kind, o.mask & ~cover) for o in object_masks(scene)] + pasted
        things = [(k, m) for k, m in things if m.sum() >= min_pixels]
        by_kind: dict[str, list[np.ndarray]] = {}
        for k, m in things:
            by_kind.setdefault(k, []).append(m)
        for kind, masks in by_kind.items():
            if len(masks) == 1:
                h, v = _direction(_box_of(masks[0]), size)
                direction = None if rng.random() < 0.5 else (h if rng.random() < 0.5 else v)
                examples.append(MaskExample(image, _text(kind, direction, rng), masks[0], kind, direction,
                                            {"scene_id": scene.scene_id}))
                continue
            boxes = [_box_of(m) for m in masks[:2]]
            ca = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
            dx, dy = ca[1][0] - ca[0][0], ca[1][1] - ca[0][1]
            if max(abs(dx), abs(dy)) < 2:
                continue  # two things at one place: no word tells them apart
            if abs(dx) >= abs(dy):
                words = ("left", "right") if dx > 0 else ("right", "left")
            else:
                words = ("top", "bottom") if dy > 0 else ("bottom", "top")
            for m, word in zip(masks[:2], words):
                examples.append(MaskExample(image, _text(kind, word, rng), m, kind, word,
                                            {"scene_id": scene.scene_id}))
        if rng.random() < negatives:
            absent = [k for k in KINDS if k not in by_kind]
            if absent:
                kind = absent[int(rng.integers(len(absent)))]
                examples.append(MaskExample(image, _text(kind, None, rng), np.zeros((size, size), dtype=bool),
                                            kind, None, {"scene_id": scene.scene_id, "negative": True}))
    return examples


def parse_target(text: str, kinds: Sequence[str] = KINDS) -> tuple[str | None, tuple | None]:
    """(kind, normalised region box) read from a text such as "the table on the left".

    ``kind`` is the longest known kind named in the text (None if none); the region is what the
    remaining words name through ``regions.phrase_to_box`` (None: no location, or not understood).
    """
    words = re.findall(r"[a-z]+", text.lower())
    kind = None
    for k in sorted(kinds, key=len, reverse=True):
        if re.search(rf"\b{re.escape(k)}s?\b", text.lower()):
            kind = k
            break
    rest = [w for w in words if kind is None or w not in (kind, kind + "s", *kind.split())]
    rest = [{"upper": "top", "lower": "bottom"}.get(w, w) for w in rest]
    box = phrase_to_box(" ".join(rest)) if rest else None
    return kind, box


def pipe_mask_examples(dataset, limit: int | None = None, location_words: bool = True) -> list[MaskExample]:
    """Examples from PIPE rows: the photo *with* the object (``target_img``), its mask and its class.

    ``dataset``: what ``load_pipe(..., with_mask=True, keep_target=True, keep_columns=["object_location"])``
    returns (a ``datasets.Dataset``), or any sequence of dicts with ``target_img``, ``mask`` (the
    object's region in the image frame, L mode, object = 255), ``category`` and optionally
    ``object_location``. The text is ``"the <class>"``, plus ``" at <object_location>"`` where the row
    has location words (PIPE's own template). Rows without an image, a mask or a class are skipped.
    """
    examples: list[MaskExample] = []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        row = dataset[i]
        mask, image = row.get("mask"), row.get("target_img")
        category = (row.get("category") or "").strip()
        if mask is None or image is None or not category:
            continue
        m = np.asarray(mask.convert("L") if hasattr(mask, "convert") else mask)
        m = m > 127 if m.dtype == np.uint8 else m.astype(bool)
        loc = (row.get("object_location") or "").strip() if location_words else ""
        text = f"the {category} at {loc}" if loc else f"the {category}"
        examples.append(MaskExample(image, text, m, category, loc or None,
                                    {"img_id": row.get("img_id"), "ann_id": row.get("ann_id")}))
    return examples


class MaskDataset(Dataset):
    """Examples -> model inputs: ``pixel_values`` (3, S, S), ``input_ids`` (L,), ``labels`` (S, S).

    ``hflip``: every example also appears mirrored, image and mask, with the words left and right
    swapped in its text (the only words a mirror changes). Deterministic, so a resumed run sees the
    same data as an uninterrupted one.
    """

    def __init__(self, examples: Sequence[MaskExample], model, hflip: bool = False):
        if len(examples) == 0:
            raise ValueError("no mask examples to train on")
        self.examples = list(examples)
        self.model = model
        self.flips = (False, True) if hflip else (False,)

    def __len__(self) -> int:
        return len(self.examples) * len(self.flips)

    def __getitem__(self, i: int) -> dict:
        ex = self.examples[i % len(self.examples)]
        image, mask, text = ex.image, np.asarray(ex.mask, dtype=np.float32), ex.text
        if self.flips[i // len(self.examples)]:
            from ..images import load_image

            image = np.asarray(load_image(image))[:, ::-1].copy()
            mask = mask[:, ::-1].copy()
            text = mirror_text(text)
        return {"pixel_values": self.model.preprocess([image])[0], "input_ids": self.model.tokenize([text])[0],
                "labels": self.model.resize_labels([mask])[0]}


def mirror_text(text: str) -> str:
    """The text of the mirrored image: "left" and "right" swap places."""
    return re.sub(r"\b(left|right)\b", lambda m: "right" if m.group(1) == "left" else "left", text)


def collate_masks(batch: list[dict]) -> dict:
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}
