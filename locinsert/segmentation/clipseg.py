"""CLIPSeg (transformers ``CLIPSegForImageSegmentation`` + ``CLIPSegProcessor``): zero-shot text -> mask.

Facts this wrapper relies on (transformers 5):

- the model wants as many texts as images, so one image is repeated once per text;
- ``logits`` are (n, S, S) even for n = 1 (older releases squeezed them to (S, S); both are handled);
- the processor squashes the image to S x S without keeping its aspect, so the probabilities are
  resized straight back to (H, W).
"""

from __future__ import annotations

import numpy as np
import torch

from ..images import ImageInput
from ..validation import check_positive_int
from .base import Segmenter, check_threshold, resize_probs

DEFAULT_CLIPSEG = "CIDAS/clipseg-rd64-refined"


class CLIPSegSegmenter(Segmenter):
    """``CLIPSegSegmenter(model, processor)``: components passed in, like the inpainters.

    ``threshold`` (0.4 by default) turns the soft mask into a hard one (``hard``, ``is_empty``, ``box``).
    """

    def __init__(self, model, processor, *, threshold: float = 0.4, device=None, batch_size: int = 8):
        self.threshold = check_threshold(threshold)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.model = model.eval()
        self.processor = processor
        if device is not None:
            self.model.to(device)

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_CLIPSEG, *, dtype=None, device=None, **kwargs
                        ) -> "CLIPSegSegmenter":
        """Load model and processor from a hub id or a saved folder (``save_pretrained`` of both).

        Raises:
            CheckpointError: a local folder that is not a whole CLIPSeg checkpoint (the named errors
                of ``locinsert.modeling.checkpoint_io``: missing, another model's, truncated, ...).
        """
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        from ..modeling.checkpoint_io import loaded

        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        model = loaded(lambda: CLIPSegForImageSegmentation.from_pretrained(
            model_id, **({"dtype": dtype} if dtype else {})), model_id, "clipseg", "CLIPSegForImageSegmentation")
        processor = CLIPSegProcessor.from_pretrained(model_id)
        return cls(model, processor, device=device, **kwargs)

    @torch.no_grad()
    def segment_many(self, image: ImageInput, texts) -> np.ndarray:
        """CLIPSeg's soft masks for several texts at the image's size, (N, H, W)."""
        img, texts = self._inputs(image, texts)
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        probs = []
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i:i + self.batch_size]
            inputs = self.processor(text=chunk, images=[img] * len(chunk), padding=True, return_tensors="pt")
            inputs = {k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
                      for k, v in inputs.items()}
            logits = self.model(**inputs).logits
            if logits.ndim == 2:  # transformers < 5 squeezed a batch of one
                logits = logits[None]
            probs.append(torch.sigmoid(logits.float()))
        return resize_probs(torch.cat(probs), img.height, img.width)
