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

from ..boxes import mask_box
from ..images import MASK_THRESHOLD, ImageInput, as_soft_mask, check_threshold, hard_mask, load_image

# The shared mask helpers (thresholds, a mask's box, a user's mask) live in ``locinsert.images`` and
# ``locinsert.boxes``; they are imported here so that every segmenter finds them beside the protocol.
__all__ = ["DEFAULT_THRESHOLD", "Segmenter", "as_soft_mask", "check_text", "check_threshold", "hard_mask",
           "is_empty", "mask_box", "resize_probs"]

DEFAULT_THRESHOLD = MASK_THRESHOLD


def check_text(text) -> str:
    """The object to find, stripped; a clear error for anything that is not a non-empty string."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str naming the object to find (e.g. 'the cup'), got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty: name the object to find, e.g. 'the cup on the left'")
    return text.strip()


def is_empty(mask: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """True when no pixel is above ``threshold``: the text named nothing the segmenter could find."""
    return not hard_mask(mask, threshold).any()


def resize_probs(probs: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(n, h, w) probabilities -> (n, H, W) float32 numpy, bilinear, without keeping the aspect.

    Models see a squashed square; resizing straight back to (H, W) undoes exactly that squash.
    """
    if probs.ndim == 2:
        probs = probs[None]
    out = F.interpolate(probs[:, None].float(), size=(int(height), int(width)), mode="bilinear",
                        align_corners=False)[:, 0]
    return out.clamp_(0.0, 1.0).cpu().numpy().astype(np.float32)


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
        """Whether nothing in the mask is above this segmenter's threshold."""
        return is_empty(mask, self.threshold)

    def box(self, mask: np.ndarray) -> tuple[float, float, float, float] | None:
        """The xyxy box around the mask above this segmenter's threshold, or ``None``."""
        return mask_box(mask, self.threshold)

    @staticmethod
    def _inputs(image: ImageInput, texts) -> tuple[Image.Image, list[str]]:
        if isinstance(texts, str):
            texts = [texts]
        texts = [check_text(t) for t in texts]
        if not texts:
            raise ValueError("texts is empty: give at least one object to find")
        return load_image(image), texts
