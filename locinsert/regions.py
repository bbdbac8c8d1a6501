"""Regions: where a sampled box is allowed to go.

A ``Region`` is a rectangle (pixels or fractions of the image) or a binary mask, plus:

- ``mode="inside"``: the whole box must lie in the region (the default for boxes and masks);
- ``mode="center"``: only the box centre must lie in it (the default for phrases such as
  "on the left", where a large object may reach over the middle line);
- ``avoid``: existing objects (pixel xyxy boxes) the new box must not overlap.

``Region.resolve(width, height)`` turns it into pixels of one image and rejects impossible
regions (empty, outside the image) with a ``ValueError``. The decoding constraints that enforce a
region live in ``locinsert.modeling.constraints``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .boxes import as_boxes

MODES = ("inside", "center")

# Phrase -> normalised rectangle. Keys are canonical word sets (see _canonical).
_HALF = {
    "left": (0.0, 0.0, 0.5, 1.0),
    "right": (0.5, 0.0, 1.0, 1.0),
    "top": (0.0, 0.0, 1.0, 0.5),
    "bottom": (0.0, 0.5, 1.0, 1.0),
    "center": (0.25, 0.25, 0.75, 0.75),
    "top left": (0.0, 0.0, 0.5, 0.5),
    "top right": (0.5, 0.0, 1.0, 0.5),
    "bottom left": (0.0, 0.5, 0.5, 1.0),
    "bottom right": (0.5, 0.5, 1.0, 1.0),
}
_NEAR = {  # "near the top" and friends: the outer third on that side
    "left": (0.0, 0.0, 1 / 3, 1.0),
    "right": (2 / 3, 0.0, 1.0, 1.0),
    "top": (0.0, 0.0, 1.0, 1 / 3),
    "bottom": (0.0, 2 / 3, 1.0, 1.0),
}
#: Every rectangle a supported phrase resolves to (normalised): what region-conditioned training draws from.
PHRASE_RECTS = tuple(sorted(set(_HALF.values()) | set(_NEAR.values())))
_SYNONYMS = {
    "upper": "top", "above": "top", "up": "top", "lower": "bottom", "below": "bottom", "down": "bottom",
    "centre": "center", "middle": "center", "central": "center", "leftmost": "left", "rightmost": "right",
}
_FILLER = {"the", "on", "in", "at", "to", "of", "side", "half", "part", "corner", "area", "image",
           "picture", "photo", "scene", "frame", "region", "a", "an", "hand", "edge", "portion"}
_NEAR_WORDS = {"near", "close", "by", "along", "toward", "towards", "against", "next"}
_DIRECTIONS = {"left", "right", "top", "bottom", "center"}

#: A regex that finds a location phrase at the end of an instruction ("... on the left side").
LOCATION_PATTERN = re.compile(
    r"\b(?:(?:on|in|at|to|near|close to|towards?|along|by|against|next to)\s+)?(?:the\s+)?"
    r"(?:(?:very\s+)?(?:top|bottom|upper|lower|left|right|middle|center|centre|central)[\s-]*)+"
    r"(?:(?:side|half|part|corner|area|edge|portion|region)\s*)?"
    r"(?:of\s+the\s+(?:image|picture|photo|scene|frame)\s*)?$",
    re.IGNORECASE,
)


def _canonical(phrase: str) -> tuple[str, bool]:
    words = re.findall(r"[a-z]+", phrase.lower().replace("-", " "))
    near = any(w in _NEAR_WORDS for w in words)
    words = [_SYNONYMS.get(w, w) for w in words if w not in _FILLER and w not in _NEAR_WORDS and w != "very"]
    unknown = [w for w in words if w not in _DIRECTIONS]
    if unknown or not words:
        return "", near
    vert = [w for w in words if w in ("top", "bottom")]
    horiz = [w for w in words if w in ("left", "right")]
    centre = "center" in words
    if len(set(vert)) > 1 or len(set(horiz)) > 1:
        return "", near
    if vert and horiz:
        return f"{vert[0]} {horiz[0]}", near
    if vert or horiz:
        return (vert or horiz)[0], near
    return ("center" if centre else ""), near


def phrase_to_box(phrase: str) -> tuple[float, float, float, float] | None:
    """Normalised rectangle for a positional phrase, or None if the phrase is not understood."""
    key, near = _canonical(phrase)
    if not key:
        return None
    if near and key in _NEAR:
        return _NEAR[key]
    return _HALF[key]


@dataclass
class ResolvedRegion:
    """A region in pixels of one image. Exactly one of ``rect`` / ``mask`` is set (or neither: whole image)."""

    width: int
    height: int
    mode: str = "inside"
    rect: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None  # (H, W) bool
    avoid: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))

    def area_mask(self) -> np.ndarray:
        """(H, W) bool mask of the allowed area (before removing ``avoid`` boxes)."""
        if self.mask is not None:
            return self.mask
        m = np.zeros((self.height, self.width), dtype=bool)
        if self.rect is None:
            m[:] = True
            return m
        x1, y1, x2, y2 = self.rect
        m[int(np.ceil(y1)):int(np.floor(y2)), int(np.ceil(x1)):int(np.floor(x2))] = True
        return m

    def bounds(self) -> tuple[float, float, float, float]:
        """The smallest pixel rectangle holding the allowed area."""
        if self.rect is not None:
            return self.rect
        if self.mask is None:
            return (0.0, 0.0, float(self.width), float(self.height))
        ys, xs = np.nonzero(self.mask)
        return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


class Region:
    """Where a box may go. See the module docstring.

    ``Region((x1, y1, x2, y2))``: a rectangle in pixels; a rectangle whose values all lie in [0, 1]
    is read as fractions of the image (a pixel rectangle that small could hold no box anyway), or
    pass ``normalized=True`` / ``False`` to say so. ``Region(mask)``: a (H, W) bool / 0-1 array,
    tensor or ``PIL`` mode ``L``/``1`` image, non-zero = allowed; a mask of another size than the
    image is resized (nearest). ``Region(None, avoid=[...])``: anywhere but on those boxes.
    """

    def __init__(self, area=None, *, normalized: bool | None = None, mode: str | None = None,
                 avoid=None, name: str | None = None):
        self.rect: tuple[float, float, float, float] | None = None
        self.mask: np.ndarray | None = None
        self.normalized = False
        if isinstance(area, Region):
            self.rect, self.mask, self.normalized = area.rect, area.mask, area.normalized
            mode = mode or area.mode
            avoid = area.avoid if avoid is None else avoid
            name = name or area.name
        elif isinstance(area, Image.Image):
            self.mask = np.asarray(area.convert("L")) > 127
        elif isinstance(area, (np.ndarray, torch.Tensor)) and np.asarray(area).ndim == 2:
            self.mask = np.asarray(area).astype(bool)
        elif area is not None:
            box = as_boxes(area, "region")
            if box.shape[0] != 1:
                raise ValueError(f"a rectangular region is one xyxy box, got {box.shape[0]} boxes")
            x1, y1, x2, y2 = (float(v) for v in box[0])
            if normalized is None:
                normalized = max(abs(x1), abs(y1), abs(x2), abs(y2)) <= 1.0
            if not (x2 > x1 and y2 > y1):
                raise ValueError(f"region {[x1, y1, x2, y2]} is empty: need x2 > x1 and y2 > y1")
            self.rect, self.normalized = (x1, y1, x2, y2), bool(normalized)
        if self.mask is not None and not self.mask.any():
            raise ValueError("region mask is empty: it allows no pixel")
        self.mode = mode or "inside"
        if self.mode not in MODES:
            raise ValueError(f"region mode must be one of {MODES}, got {self.mode!r}")
        self.avoid = torch.zeros(0, 4) if avoid is None or len(avoid) == 0 else as_boxes(avoid, "avoid boxes")
        self.name = name

    @classmethod
    def parse(cls, phrase: str, *, mode: str = "center", avoid=None) -> "Region":
        """``Region.parse("top left")``: a region from a positional phrase; ``ValueError`` if unknown."""
        if not isinstance(phrase, str) or not phrase.strip():
            raise ValueError("region phrase is empty")
        box = phrase_to_box(phrase)
        if box is None:
            raise ValueError(
                f"unknown position {phrase!r}; use left/right/top/bottom, a corner such as 'top left', "
                "'center', or 'near the top'")
        return cls(box, normalized=True, mode=mode, avoid=avoid, name=phrase.strip())

    def with_avoid(self, boxes) -> "Region":
        """The same region with more boxes to avoid."""
        extra = as_boxes(boxes, "avoid boxes") if boxes is not None and len(boxes) else torch.zeros(0, 4)
        return Region(self, avoid=torch.cat([self.avoid, extra]) if len(extra) else self.avoid)

    def resolve(self, width: int, height: int) -> ResolvedRegion:
        """Pixels of a ``width`` x ``height`` image; ``ValueError`` if nothing of it is inside the image."""
        avoid = self.avoid
        if self.mask is not None:
            m = self.mask
            if m.shape != (height, width):
                m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)) > 127
            if not m.any():
                raise ValueError(f"region mask allows no pixel of the {width}x{height} image")
            return ResolvedRegion(width, height, self.mode, mask=m, avoid=avoid)
        if self.rect is None:
            return ResolvedRegion(width, height, self.mode, avoid=avoid)
        x1, y1, x2, y2 = self.rect
        if self.normalized:
            x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        if not (cx2 > cx1 and cy2 > cy1):
            raise ValueError(f"region {[x1, y1, x2, y2]} lies outside the {width}x{height} image")
        return ResolvedRegion(width, height, self.mode, rect=(cx1, cy1, cx2, cy2), avoid=avoid)

    def __repr__(self) -> str:
        what = (f"{self.name!r}" if self.name else
                f"mask {self.mask.shape}" if self.mask is not None else
                f"{self.rect}{' normalized' if self.normalized else ''}" if self.rect else "whole image")
        extra = f", avoid={len(self.avoid)} boxes" if len(self.avoid) else ""
        return f"Region({what}, mode={self.mode!r}{extra})"


def as_region(region) -> Region | None:
    """Accept ``None``, a ``Region``, a pixel or normalised box, a mask, or a phrase."""
    if region is None or isinstance(region, Region):
        return region
    if isinstance(region, str):
        return Region.parse(region)
    return Region(region)


def region_json(region: Region | None, width: int, height: int) -> dict | None:
    """A region as JSON for a ``width`` x ``height`` image: its phrase, mode, rectangle (pixels) and
    avoided rectangles; None for no region."""
    if region is None:
        return None
    r = region.resolve(width, height)
    return {"phrase": region.name, "mode": region.mode, "rect": [round(v, 2) for v in r.bounds()],
            "avoid": r.avoid.tolist()}
