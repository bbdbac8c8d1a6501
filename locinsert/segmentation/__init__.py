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

if TYPE_CHECKING:  # the public names: static tools read them here, lazy_exports loads each on first use
    from .base import Segmenter, DEFAULT_THRESHOLD, check_text, is_empty
    from ..images import hard_mask, as_soft_mask
    from ..boxes import mask_box
    from .clipseg import CLIPSegSegmenter, DEFAULT_CLIPSEG
    from .textmask import TextMaskConfig, TextMaskModel, TextMaskSegmenter
    from .given import BoxSegmenter, MaskSegmenter
    from .data import MaskExample, synthetic_mask_examples, MaskDataset
    from .evaluate import (mask_iou_dice, RegionBaseline, ClassPriorBaseline, evaluate_segmenter, format_mask_table,
                           plot_mask_examples)

__getattr__, __dir__, __all__ = lazy_exports(__name__)
