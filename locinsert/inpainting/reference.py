"""Reference images: "insert *this* object" instead of any object of a class.

A reference is a picture of the object to insert: a product photo (RGB, the object on its own
background) or a cut-out (RGBA, transparent around the object). ``as_reference`` turns whatever
the user passes into a ``Reference`` or raises a clear error:

- a PIL image, a path, or a uint8 (H, W, 3) / (H, W, 4) array; modes RGB, RGBA, L, LA, P (with or
  without transparency), CMYK and YCbCr. Bit, integer, float and 16-bit modes are not pictures of an
  object to paint and are a ``ValueError``; a missing file is a ``FileNotFoundError``;
- with alpha, the object is what the alpha covers: the image is trimmed to the alpha's bounding box;
  a fully transparent reference (empty alpha) is a ``ValueError``;
- a reference whose alpha is 255 everywhere counts as having no alpha: the whole rectangle is the
  object (``has_alpha`` is False). What a backend does with that is its own documented rule.

``place_in_box`` puts an object into a box the way every reference backend does (and the cut-out
backend always did): scaled to fit, keeping its aspect (``fit="contain"``, anchored at the bottom
centre, where a standing object touches its support) or stretched to the box (``fit="stretch"``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["Reference", "as_reference", "place_in_box", "FITS", "REFERENCE_BACKENDS"]

FITS = ("contain", "stretch")
#: The backends whose ``inpaint`` takes ``reference=`` (named in the error of those that cannot).
REFERENCE_BACKENDS = ("PaintByExampleInpainter", "ReferenceRePaintInpainter", "CutoutCompositor")

_COLOUR_MODES = ("RGB", "RGBA", "RGBa", "L", "LA", "La", "P", "PA", "CMYK", "YCbCr")


@dataclass(frozen=True)
class Reference:
    """The object to insert: ``image`` is RGBA, trimmed to the object; ``has_alpha`` says whether its
    alpha is a real cut-out (False: an opaque photo, whose whole rectangle is the object)."""

    image: Image.Image
    has_alpha: bool

    @property
    def size(self) -> tuple[int, int]:
        """The reference image's (width, height)."""
        return self.image.size

    def rgb(self, background=(255, 255, 255)) -> Image.Image:
        """The object composited onto a flat ``background`` (white, as ``load_image`` does)."""
        base = Image.new("RGBA", self.image.size, (*background, 255))
        return Image.alpha_composite(base, self.image).convert("RGB")

    def placed(self, size: tuple[int, int], fit: str = "contain") -> tuple[Image.Image, np.ndarray]:
        """(RGB patch of ``size``, alpha in [0, 1] of shape (h, w)): the object placed in a box of that size."""
        return place_in_box(self.image, size, fit)


def as_reference(reference, name: str = "reference") -> Reference:
    """A ``Reference`` from a PIL image, a path, a uint8 array or a ``Reference``; or a clear error."""
    if isinstance(reference, Reference):
        return reference
    if reference is None:
        raise ValueError(f"no {name} image: pass a photo or an RGBA cut-out of the object "
                         "(a PIL image, a path or a uint8 array)")
    if isinstance(reference, (str, os.PathLike)):
        path = Path(reference)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: file not found: {path}")
        try:
            with Image.open(path) as f:
                f.load()
                img = ImageOps.exif_transpose(f)
                if img is f:
                    img = f.copy()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as e:
            raise ValueError(f"{name}: cannot read {path} as an image ({e})") from e
    elif isinstance(reference, np.ndarray):
        a = reference
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
            raise ValueError(f"{name} array must be uint8 (H, W, 3) RGB or (H, W, 4) RGBA, "
                             f"got {a.dtype} {a.shape}")
        img = Image.fromarray(np.ascontiguousarray(a), "RGB" if a.shape[2] == 3 else "RGBA")
    elif isinstance(reference, Image.Image):
        img = reference
    else:
        raise TypeError(f"{name} must be a PIL image, a path or a uint8 array, got {type(reference).__name__}")
    if img.mode not in _COLOUR_MODES:
        raise ValueError(f"{name} has mode {img.mode!r}, which is not a picture of an object; "
                         f"expected one of {', '.join(_COLOUR_MODES)} (e.g. an RGB photo or an RGBA cut-out)")
    if min(img.size) < 1:
        raise ValueError(f"{name} is empty ({img.width}x{img.height})")
    has_alpha = img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (img.mode == "P" and "transparency" in img.info)
    rgba = img.convert("RGBA")
    if has_alpha:
        alpha = np.asarray(rgba)[..., 3]
        if not alpha.any():
            raise ValueError(f"{name} is fully transparent (empty alpha): there is no object in it")
        if alpha.min() == 255:
            has_alpha = False
        else:
            rgba = rgba.crop(rgba.getchannel("A").getbbox())
    return Reference(rgba, has_alpha)


def place_in_box(obj: Image.Image, size: tuple[int, int], fit: str = "contain") -> tuple[Image.Image, np.ndarray]:
    """Scale an RGBA object into a ``size = (w, h)`` box; return (RGB patch, alpha in [0, 1] (h, w)).

    ``"contain"`` keeps the aspect ratio and stands the object on the box's bottom edge, centred;
    ``"stretch"`` fills the box. The resize is premultiplied, so colours of transparent pixels never
    bleed into the object's edge.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    bw, bh = (int(v) for v in size)
    if fit == "stretch":
        w, h = bw, bh
    else:
        s = min(bw / obj.width, bh / obj.height)
        w, h = max(1, min(bw, round(obj.width * s))), max(1, min(bh, round(obj.height * s)))
    scaled = obj.convert("RGBa").resize((w, h), Image.LANCZOS).convert("RGBA")
    patch = Image.new("RGBA", (bw, bh), (0, 0, 0, 0))
    patch.paste(scaled, ((bw - w) // 2, bh - h))
    a = np.asarray(patch, np.float32)
    return Image.fromarray(a[..., :3].astype(np.uint8)), a[..., 3] / 255.0
