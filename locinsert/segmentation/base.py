"""The segmentation protocol and what every segmenter shares.

One method: ``segment(image, text) -> np.ndarray``, a float32 (H, W) soft mask in [0, 1] at the
image's own size (``image``: a path, a ``PIL.Image`` or a uint8 array; see ``locinsert.images``).
A segmenter also carries a ``threshold``: ``hard_mask`` turns its soft mask into a bool one.
"Nothing found" is an ordinary outcome, never an exception: an all-below-threshold mask, for which
``is_empty`` is True and ``mask_box`` is None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..images import ImageInput, load_image

DEFAULT_THRESHOLD = 0.5


def check_text(text) -> str:
    """The object to find, stripped; a clear error for anything that is not a non-empty string."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str naming the object to find (e.g. 'the cup'), got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty: name the object to find, e.g. 'the cup on the left'")
    return text.strip()


def check_threshold(threshold) -> float:
    t = float(threshold)
    if not 0.0 <= t < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold!r}")
    return t


def hard_mask(mask: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """(H, W) bool: the pixels whose soft value is above ``threshold``."""
    return np.asarray(mask) > check_threshold(threshold)


def is_empty(mask: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """True when no pixel is above ``threshold``: the text named nothing the segmenter could find."""
    return not hard_mask(mask, threshold).any()


def mask_box(mask: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> tuple[float, float, float, float] | None:
    """The xyxy pixel box around the pixels above ``threshold``, or None for an empty mask."""
    ys, xs = np.nonzero(hard_mask(mask, threshold))
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def resize_probs(probs: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(n, h, w) probabilities -> (n, H, W) float32 numpy, bilinear, without keeping the aspect.

    Models see a squashed square; resizing straight back to (H, W) undoes exactly that squash.
    """
    if probs.ndim == 2:
        probs = probs[None]
    out = F.interpolate(probs[:, None].float(), size=(int(height), int(width)), mode="bilinear",
                        align_corners=False)[:, 0]
    return out.clamp_(0.0, 1.0).cpu().numpy().astype(np.float32)


def as_mask(mask, width: int, height: int, name: str = "mask") -> np.ndarray:
    """A user's mask (bool / 0-1 / 0-255 array, tensor or PIL image) as float32 (H, W) in [0, 1].

    It must have the image's size: a mask made for another image is a mistake, not something to
    stretch silently.
    """
    if isinstance(mask, Image.Image):
        a = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    elif isinstance(mask, (np.ndarray, torch.Tensor)):
        a = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.dtype == np.bool_:
            a = a.astype(np.float32)
        elif a.dtype == np.uint8:
            a = a.astype(np.float32) / 255.0
        else:
            a = a.astype(np.float32)
            if not np.isfinite(a).all():
                raise ValueError(f"{name} contains NaN or infinite values")
            if a.min(initial=0.0) < 0.0 or a.max(initial=0.0) > 1.0:
                raise ValueError(f"{name}: a float mask must lie in [0, 1], got [{a.min():g}, {a.max():g}]")
    else:
        raise TypeError(f"{name} must be a numpy array, a tensor or a PIL image, got {type(mask).__name__}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {a.shape}")
    if a.shape != (height, width):
        raise ValueError(f"{name} is {a.shape[1]}x{a.shape[0]} but the image is {width}x{height}")
    return a


class Segmenter(ABC):
    """Text -> soft mask. Subclasses implement ``segment_many`` (one image, several texts)."""

    threshold: float = DEFAULT_THRESHOLD

    def segment(self, image: ImageInput, text: str) -> np.ndarray:
        """Float32 (H, W) mask in [0, 1] of the object ``text`` names, at the image's own size."""
        return self.segment_many(image, [text])[0]

    @abstractmethod
    def segment_many(self, image: ImageInput, texts: list[str]) -> np.ndarray:
        """(len(texts), H, W) float32 masks of one image."""

    def hard(self, image: ImageInput, text: str) -> np.ndarray:
        """(H, W) bool mask, thresholded with ``self.threshold``."""
        return hard_mask(self.segment(image, text), self.threshold)

    def is_empty(self, mask: np.ndarray) -> bool:
        return is_empty(mask, self.threshold)

    def box(self, mask: np.ndarray) -> tuple[float, float, float, float] | None:
        return mask_box(mask, self.threshold)

    @staticmethod
    def _inputs(image: ImageInput, texts) -> tuple[Image.Image, list[str]]:
        if isinstance(texts, str):
            texts = [texts]
        texts = [check_text(t) for t in texts]
        if not texts:
            raise ValueError("texts is empty: give at least one object to find")
        return load_image(image), texts
