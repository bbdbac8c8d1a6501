"""Segmenters for when the user already knows where the object is: a given box or a given mask.

They follow the same protocol as the learned ones (``segment(image, text)``), so an editor takes a
box from the command line exactly as it takes a model; the text is not needed and not read.
"""

from __future__ import annotations

import numpy as np

from ..boxes import check_box, pixel_box
from ..images import ImageInput, as_soft_mask, check_threshold, load_image
from .base import DEFAULT_THRESHOLD, Segmenter


class BoxSegmenter(Segmenter):
    """``BoxSegmenter((x1, y1, x2, y2))``: the pixels an xyxy pixel box touches are the object."""

    def __init__(self, box, threshold: float = DEFAULT_THRESHOLD):
        self.box_xyxy = tuple(float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1))
        if len(self.box_xyxy) != 4:
            raise ValueError(f"box must be one xyxy box (4 numbers), got {list(self.box_xyxy)}")
        self.threshold = check_threshold(threshold)

    def segment_many(self, image: ImageInput, texts=("",)) -> np.ndarray:
        """The box's pixels as a mask, once per text."""
        img = load_image(image)
        W, H = img.size
        x1, y1, x2, y2 = pixel_box(check_box(self.box_xyxy, W, H), W, H)
        m = np.zeros((H, W), dtype=np.float32)
        m[y1:y2, x1:x2] = 1.0
        return _one_per_text(m, texts)

    def segment(self, image: ImageInput, text: str = "") -> np.ndarray:
        """The box's pixels as a (H, W) float mask."""
        return self.segment_many(image, [text])[0]


def _one_per_text(mask: np.ndarray, texts) -> np.ndarray:
    """The same mask once per text (the text is not read): (n, H, W)."""
    n = 1 if isinstance(texts, str) else max(1, len(texts))
    return np.repeat(mask[None], n, 0)


class MaskSegmenter(Segmenter):
    """``MaskSegmenter(mask)``: a given (H, W) mask (bool, 0-1 floats, 0-255 uint8 or a PIL image).

    The mask must have the size of the image it is used on; anything else is a ``ValueError``.
    """

    def __init__(self, mask, threshold: float = DEFAULT_THRESHOLD):
        self.mask = mask
        self.threshold = check_threshold(threshold)

    def segment_many(self, image: ImageInput, texts=("",)) -> np.ndarray:
        """The given mask, once per text."""
        img = load_image(image)
        return _one_per_text(as_soft_mask(self.mask, img.size), texts)

    def segment(self, image: ImageInput, text: str = "") -> np.ndarray:
        """The given mask as a (H, W) float mask."""
        return self.segment_many(image, [text])[0]
