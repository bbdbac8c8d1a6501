"""Turning whatever the user passes as an image into an upright RGB ``PIL.Image``, or a clear error.

Accepted: a ``PIL.Image`` (any mode), a path (``str`` / ``os.PathLike``), or a ``numpy`` array
of dtype uint8 shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). 16-bit data is scaled down to
8 bit by one rule whatever its container (uint16 array, 16-bit PNG, PIL modes ``I;16`` and ``I``):
``value // 257``, so 65535 -> 255 and a dark image stays dark. Alpha is composited onto white so transparent areas do not turn
into arbitrary colours. EXIF orientation is applied, so a phone photo is seen the way it is shown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .validation import check_probability

ImageInput = Union[Image.Image, str, os.PathLike, np.ndarray]

#: Smallest side we accept: a box needs at least two distinct coordinates per axis.
MIN_SIDE = 4
#: Largest number of pixels we decode (about 16k x 16k), the same order as PIL's bomb guard.
MAX_PIXELS = 268_435_456


def _from_array(a: np.ndarray, name: str = "image") -> Image.Image:
    if a.dtype == np.uint16:
        a = (a.astype(np.uint32) // 257).astype(np.uint8)
    if a.dtype != np.uint8:
        raise TypeError(f"{name}: image array must be uint8 (or uint16), got dtype {a.dtype}; "
                        "convert float images with (a * 255).round().astype(np.uint8)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return Image.fromarray(a, mode="L")
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(a), mode="RGB" if a.shape[2] == 3 else "RGBA")
    raise ValueError(f"{name}: image array must have shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit data is scaled by its bit depth, never by its values: a dark 16-bit image (all
        # values <= 255) stays dark, exactly as the same data given as a uint16 array.
        a = np.asarray(img, dtype=np.int64)
        img = Image.fromarray((np.clip(a, 0, 65535) // 257).astype(np.uint8), mode="L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        hi = 1.0 if a.max(initial=0) <= 1.0 else 255.0
        img = Image.fromarray((np.clip(a / hi, 0, 1) * 255).round().astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(image: ImageInput, name: str = "image") -> Image.Image:
    """Return an upright RGB PIL image; raise ``TypeError`` / ``ValueError`` naming what is wrong."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise ValueError(f"{name}: file not found: {path}")
        try:
            with Image.open(path) as f:
                if f.width * f.height > MAX_PIXELS:
                    raise ValueError(f"{name}: {path} is {f.width}x{f.height}, larger than {MAX_PIXELS} pixels")
                f.load()
                img = f.copy()
                img.info.update(f.info)
                exif = f.getexif()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as e:
            raise ValueError(f"{name}: cannot read {path} as an image ({e})") from e
        img = _apply_exif(img, exif)
    elif isinstance(image, Image.Image):
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"{name} is {image.width}x{image.height}, larger than {MAX_PIXELS} pixels")
        img = _apply_exif(image, image.getexif())
    elif isinstance(image, np.ndarray):
        img = _from_array(image, name)
    else:
        raise TypeError(f"{name} must be a PIL image, a path or a uint8 numpy array, got {type(image).__name__}")
    if min(img.size) < MIN_SIDE:
        raise ValueError(f"{name} is {img.width}x{img.height}; both sides must be at least {MIN_SIDE} px")
    return _to_rgb(img)


def _apply_exif(img: Image.Image, exif) -> Image.Image:
    # exif_transpose reads the orientation tag from the image itself; only rotate when one is set.
    try:
        orientation = exif.get(0x0112, 1) if exif is not None else 1
    except Exception:  # noqa: BLE001 - a broken EXIF block must not stop us from using the pixels
        orientation = 1
    if orientation in (None, 1):
        return img
    return ImageOps.exif_transpose(img)


def image_size(image: ImageInput) -> tuple[int, int]:
    """(width, height) after EXIF rotation."""
    return load_image(image).size


MASK_THRESHOLD = 0.5


def check_threshold(threshold, name: str = "threshold") -> float:
    """A mask threshold in (0, 1), or a clear error: at 0 every pixel would be the object, at 1 none."""
    return check_probability(threshold, name, low_open=True, high_open=True)


def hard_mask(mask, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """(H, W) bool: the pixels whose value is above ``threshold`` (a bool mask stays as it is)."""
    return np.asarray(mask) > check_threshold(threshold)


def as_soft_mask(mask, size: tuple[int, int], name: str = "mask") -> np.ndarray:
    """A user's mask of an image of ``size = (W, H)`` as float32 (H, W) in [0, 1], or a clear error.

    Accepted: a (H, W) numpy array or tensor (bool; floats in [0, 1]; integers 0/1, or 0-255 when
    their maximum exceeds 1) or a PIL image (any mode; its luminance / 255).
    A mask of another size than the image is an error, not a silent resize: a mask drawn for
    another image (or a resized one) would touch the wrong pixels.
    """
    if isinstance(mask, Image.Image):
        a = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    else:
        if hasattr(mask, "detach"):                       # torch tensor, without importing torch
            mask = mask.detach().cpu().numpy()
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"{name} must be a (H, W) array, tensor or PIL image, got {type(mask).__name__}")
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[..., 0]
        if mask.dtype == bool:
            a = mask.astype(np.float32)
        elif np.issubdtype(mask.dtype, np.integer):
            lo, hi = (int(mask.min()), int(mask.max())) if mask.size else (0, 0)
            if lo < 0 or hi > 255:
                raise ValueError(f"{name}: an integer mask must lie in 0-255 (or 0/1), got [{lo}, {hi}]")
            a = mask.astype(np.float32) / (255.0 if hi > 1 else 1.0)
        elif np.issubdtype(mask.dtype, np.floating):
            a = mask.astype(np.float32)
            if not np.isfinite(a).all():
                raise ValueError(f"{name} contains NaN or infinite values")
            if a.min(initial=0.0) < 0.0 or a.max(initial=0.0) > 1.0:
                raise ValueError(f"{name}: a float mask must lie in [0, 1], got [{a.min():g}, {a.max():g}]")
        else:
            raise TypeError(f"{name} has dtype {mask.dtype}; use bool, float in [0, 1] or uint8")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {a.shape}")
    W, H = size
    if a.shape != (H, W):
        raise ValueError(f"{name} is {a.shape[1]}x{a.shape[0]} but the image is {W}x{H}: "
                         "give a mask of the image's own size")
    return a


def as_mask(mask, size: tuple[int, int], name: str = "mask") -> np.ndarray:
    """A user's mask of an image of ``size = (W, H)`` as (H, W) bool: ``as_soft_mask`` above 0.5.

    So a PIL / 0-255 mask is inside where it is > 127, a 0/1 or bool mask where it is 1.
    """
    return hard_mask(as_soft_mask(mask, size, name))
