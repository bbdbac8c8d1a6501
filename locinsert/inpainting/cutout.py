"""Cut-out compositing: paste an RGBA object, scaled into the box (OPA-style, fully offline).

The cut-out is either one RGBA image, or a callable ``cutout(prompt, (width, height)) -> RGBA``
so that each class can have its own sprite (``locinsert.data.synthetic.sprite``). The object is
trimmed to its alpha bounding box, scaled to fit the box (keeping its aspect by default), and
anchored at the bottom centre of the box, where a standing object touches its support
(``reference.place_in_box``).

A reference image (``inpaint(..., reference=img)``) *is* a cut-out: it replaces the configured one
for that call, so ``CutoutCompositor()`` with no cut-out at all pastes whatever reference it is given.
The rule for a reference without transparency (an RGB photo, or alpha 255 everywhere) is the
cut-out's own: it would paste its whole rectangle, so it is a ``ValueError`` unless
``allow_opaque=True``; the diffusion reference backends are the ones that take photos.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
from PIL import Image

from ..validation import check_bool, check_int
from .base import Inpainter, pixel_box
from .reference import FITS, place_in_box


def as_cutout(cutout, *, allow_opaque: bool = False, name: str = "cut-out") -> Image.Image:
    """An RGBA PIL image with real transparency, or a clear error."""
    if isinstance(cutout, (str, os.PathLike)):
        if not os.path.isfile(cutout):
            raise ValueError(f"{name}: file not found: {cutout}")
        try:
            with Image.open(cutout) as f:
                f.load()
                cutout = f.copy()
        except (OSError, SyntaxError, Image.DecompressionBombError) as e:
            raise ValueError(f"{name}: cannot read {cutout} as an image ({e})") from e
    elif isinstance(cutout, np.ndarray):
        if cutout.dtype != np.uint8 or cutout.ndim != 3 or cutout.shape[2] != 4:
            raise ValueError(f"{name} array must be uint8 (H, W, 4) RGBA, got {cutout.dtype} {cutout.shape}")
        cutout = Image.fromarray(cutout, "RGBA")
    if not isinstance(cutout, Image.Image):
        raise TypeError(f"{name} must be an RGBA PIL image, a path or a (H, W, 4) uint8 array, "
                        f"got {type(cutout).__name__}")
    has_alpha = cutout.mode in ("RGBA", "LA", "PA") or (cutout.mode == "P" and "transparency" in cutout.info)
    if not has_alpha:
        raise ValueError(f"{name} has no alpha channel (mode {cutout.mode}): a cut-out must be RGBA, "
                         "transparent around the object")
    rgba = cutout.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3]
    if not alpha.any():
        raise ValueError(f"{name} is fully transparent: there is no object to paste")
    if alpha.min() == 255 and not allow_opaque:
        raise ValueError(f"{name} is fully opaque (no transparency), so it would paste a rectangle; "
                         "cut the object out first, or pass allow_opaque=True")
    return rgba


class CutoutCompositor(Inpainter):
    """``CutoutCompositor(cutout)``: paste an RGBA cut-out (or ``cutout(prompt, size) -> RGBA``) into the box.

    ``fit="contain"`` keeps the cut-out's aspect ratio inside the box; ``"stretch"`` fills the box.
    ``cutout=None`` makes a compositor that only pastes references (``inpaint(..., reference=)``).
    """

    accepts_reference = True

    def __init__(self, cutout: Image.Image | str | np.ndarray | Callable | None = None, *, fit: str = "contain",
                 feather: int = 0, allow_opaque: bool = False):
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        feather = check_int(feather, "feather", minimum=0)
        self.allow_opaque = check_bool(allow_opaque, "allow_opaque")
        if cutout is None:
            self.source, self.cutout = None, None
        elif callable(cutout) and not isinstance(cutout, Image.Image):
            self.source, self.cutout = cutout, None
        else:
            self.source, self.cutout = None, _trim(as_cutout(cutout, allow_opaque=allow_opaque))
        self.fit, self.feather = fit, feather

    def object_image(self, prompt: str, size: tuple[int, int]) -> Image.Image:
        """The trimmed RGBA cut-out for this prompt (a per-class callable is asked at the box size)."""
        if self.cutout is not None:
            return self.cutout
        if self.source is None:
            raise ValueError(f"this CutoutCompositor has no cut-out for {prompt!r}: give it one "
                             "(CutoutCompositor(cutout)) or pass reference= the object to paste")
        return _trim(as_cutout(self.source(prompt, size), allow_opaque=self.allow_opaque,
                               name=f"cut-out for {prompt!r}"))

    def draw(self, image, box, prompt, generator=None, reference=None):
        """The cut-out (or the reference) fitted into the box, with its alpha."""
        x1, y1, x2, y2 = pixel_box(box, *image.size)
        size = (x2 - x1, y2 - y1)
        if reference is None:
            obj = self.object_image(prompt, size)
        elif reference.has_alpha or self.allow_opaque:
            obj = reference.image
        else:
            raise ValueError("the reference has no transparency (an RGB photo, or alpha 255 everywhere), so the "
                             "cut-out backend would paste its whole rectangle: give an RGBA cut-out, pass "
                             "allow_opaque=True, or use PaintByExampleInpainter / ReferenceRePaintInpainter, "
                             "which take photos")
        return place_in_box(obj, size, self.fit)


def _trim(rgba: Image.Image) -> Image.Image:
    bbox = rgba.getchannel("A").getbbox()
    return rgba.crop(bbox) if bbox else rgba
