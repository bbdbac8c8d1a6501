"""Masks from text: ``segment(image, text) -> mask``, float32 (H, W) in [0, 1] at the image's own size.

- ``CLIPSegSegmenter``: transformers' CLIPSeg, zero-shot (default weights ``CIDAS/clipseg-rd64-refined``);
- ``TextMaskModel`` / ``TextMaskSegmenter``: a text-conditioned U-Net (ResNet encoder, CLIP text
  tower, cross-attention, Dice + BCE), trained with ``locinsert train textmask``;
- ``BoxSegmenter`` / ``MaskSegmenter``: the user says where the object is.

A threshold turns a soft mask into a hard one (``hard_mask``); ``is_empty`` says "nothing found".

>>> from locinsert.segmentation import BoxSegmenter, is_empty
>>> import numpy as np
>>> m = BoxSegmenter((2, 2, 6, 6)).segment(np.zeros((8, 8, 3), np.uint8), "the cup")
>>> m.shape, m.dtype, float(m.sum()), is_empty(m)
((8, 8), dtype('float32'), 16.0, False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # what static tools read; at run time the names load on first use
    from .base import Segmenter, DEFAULT_THRESHOLD, check_text, is_empty
    from ..images import hard_mask, as_soft_mask
    from ..boxes import mask_box
    from .clipseg import CLIPSegSegmenter, DEFAULT_CLIPSEG
    from .textmask import TextMaskConfig, TextMaskModel, TextMaskSegmenter
    from .given import BoxSegmenter, MaskSegmenter
    from .data import MaskExample, synthetic_mask_examples, MaskDataset
    from .evaluate import (mask_iou_dice, RegionBaseline, ClassPriorBaseline, evaluate_segmenter, format_mask_table,
                           plot_mask_examples)

_EXPORTS = {
    "Segmenter": "locinsert.segmentation.base",
    "DEFAULT_THRESHOLD": "locinsert.segmentation.base",
    "check_text": "locinsert.segmentation.base",
    "is_empty": "locinsert.segmentation.base",
    "hard_mask": "locinsert.images",
    "as_soft_mask": "locinsert.images",
    "mask_box": "locinsert.boxes",
    "CLIPSegSegmenter": "locinsert.segmentation.clipseg",
    "DEFAULT_CLIPSEG": "locinsert.segmentation.clipseg",
    "TextMaskConfig": "locinsert.segmentation.textmask",
    "TextMaskModel": "locinsert.segmentation.textmask",
    "TextMaskSegmenter": "locinsert.segmentation.textmask",
    "BoxSegmenter": "locinsert.segmentation.given",
    "MaskSegmenter": "locinsert.segmentation.given",
    "MaskExample": "locinsert.segmentation.data",
    "synthetic_mask_examples": "locinsert.segmentation.data",
    "MaskDataset": "locinsert.segmentation.data",
    "mask_iou_dice": "locinsert.segmentation.evaluate",
    "RegionBaseline": "locinsert.segmentation.evaluate",
    "ClassPriorBaseline": "locinsert.segmentation.evaluate",
    "evaluate_segmenter": "locinsert.segmentation.evaluate",
    "format_mask_table": "locinsert.segmentation.evaluate",
    "plot_mask_examples": "locinsert.segmentation.evaluate",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
