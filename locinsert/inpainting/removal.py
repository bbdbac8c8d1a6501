"""Removal: fill the pixels of an object's mask with what is behind it; nothing outside changes.

One protocol, ``remove(image, mask, generator=None) -> PIL.Image``: ``mask`` is an (H, W) mask of
the image's own size (bool, floats thresholded at 0.5, or a mode ``L`` image), grown by
``dilate`` pixels (object edges, soft masks, the VAE's blur); only pixels inside the grown mask
may change, every other pixel stays byte-identical (``base.paste_inside`` with the mask as a hard
alpha). Backends:

- ``BiharmonicFill``: scikit-image's biharmonic inpainting, offline and fast; smooth fills, right
  for flat backgrounds (the synthetic world) and quick previews;
- ``DiffusersRemover``: any diffusers inpainting pipeline with an empty prompt
  (``stabilityai/stable-diffusion-2-inpainting`` by default), optionally with a removal LoRA
  (``lora.load_lora``, trained by ``locinsert.training.removal_lora``);
- ``PowerPaintRemover``: PowerPaint v1's removal task, prompt ``"empty scene blur <prompt> <P_ctxt>"``
  and negative ``"<P_obj>"`` at guidance 10 (the fitting degree has no effect on removal).

The diffusion backends run on a context window around the mask's box at the pipeline's native
resolution (``base.ContextCrop``) and get the object's mask, not its box.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod

import numpy as np
from PIL import Image, ImageFilter

from ..boxes import mask_box
from ..images import as_mask, load_image
from ..validation import check_bool, check_int, check_non_negative_int
from .base import ContextCrop, paste_inside, pixel_box
from .diffusers_inpaint import DiffusersInpainter
from .lora import load_lora
from .powerpaint import DEFAULT_BASE, DEFAULT_POWERPAINT, PowerPaintInpainter, task_token_text

__all__ = ["Remover", "BiharmonicFill", "DiffusionRemover", "DiffusersRemover", "PowerPaintRemover",
           "dilate_mask", "REMOVERS", "DEFAULT_REMOVAL"]

DEFAULT_REMOVAL = "stabilityai/stable-diffusion-2-inpainting"


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a bool mask by ``pixels`` in every direction (a square structuring element)."""
    if pixels < 0:
        raise ValueError(f"dilate must be >= 0 pixels, got {pixels}")
    if pixels == 0:
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255, "L").filter(ImageFilter.MaxFilter(2 * pixels + 1))
    return np.asarray(img) > 0


class Remover(ABC):
    """Base of every removal backend: validates, grows the mask, asks ``fill`` for a patch, pastes it.

    Anything with a ``remove(image, mask, generator=None)`` method returning a same-size PIL image
    works with ``ObjectEditor``.
    """

    #: Pixels the mask is grown by before filling.
    dilate: int = 0

    def remove(self, image, mask, generator=None) -> Image.Image:
        """Fill ``mask`` of ``image``; pixels outside the mask grown by ``dilate`` never change."""
        img = load_image(image)
        m = as_mask(mask, img.size)
        if not m.any():
            raise ValueError("mask is empty: there is nothing to remove")
        grown = dilate_mask(m, self.dilate)
        box = mask_box(grown)
        x1, y1, x2, y2 = pixel_box(box, *img.size)
        patch = self.fill(img, grown, box, generator)
        return paste_inside(img, patch, box, alpha=grown[y1:y2, x1:x2].astype(np.float32))

    __call__ = remove

    @abstractmethod
    def fill(self, image: Image.Image, mask: np.ndarray, box, generator=None) -> Image.Image:
        """A patch for ``pixel_box(box)`` (the grown mask's box) with the object gone."""


class BiharmonicFill(Remover):
    """``skimage.restoration.inpaint_biharmonic`` on the mask's box plus ``margin`` pixels of context.

    ``clamp=True`` clips the fill, per channel, to the range of the 2-pixel ring around the mask:
    the biharmonic solution continues gradients and overshoots beside a strong edge (a bright halo
    next to a dark table leg), while what is behind an object rarely leaves its border's range.
    """

    def __init__(self, *, dilate: int = 1, margin: int = 6, clamp: bool = True):
        self.dilate = check_non_negative_int(dilate, "dilate")
        self.margin = check_int(margin, "margin (the biharmonic stencil's reach, pixels)", minimum=2)
        self.clamp = check_bool(clamp, "clamp")

    def fill(self, image, mask, box, generator=None):
        """The biharmonic fill of the mask inside the box's neighbourhood."""
        from skimage.restoration import inpaint_biharmonic

        W, H = image.size
        x1, y1, x2, y2 = pixel_box(box, W, H)
        cx1, cy1 = max(0, x1 - self.margin), max(0, y1 - self.margin)
        cx2, cy2 = min(W, x2 + self.margin), min(H, y2 + self.margin)
        crop = np.asarray(image, np.float64)[cy1:cy2, cx1:cx2] / 255.0
        if mask[cy1:cy2, cx1:cx2].all():
            raise ValueError("the mask covers the whole image: there is no background to fill from")
        m = mask[cy1:cy2, cx1:cx2]
        filled = inpaint_biharmonic(crop, m, channel_axis=-1)
        if self.clamp:
            ring = crop[dilate_mask(m, 2) & ~m]
            filled = np.clip(filled, ring.min(0), ring.max(0))
        out = np.rint(np.clip(filled, 0.0, 1.0) * 255).astype(np.uint8)
        return Image.fromarray(out[y1 - cy1:y2 - cy1, x1 - cx1:x2 - cx1])


class DiffusionRemover(Remover):
    """A remover that runs a diffusers inpainting pipeline on a context window around the mask."""

    def __init__(self, inpainter, *, dilate: int = 4):
        self.inpainter, self.dilate = inpainter, check_non_negative_int(dilate, "dilate")

    @property
    def pipe(self):
        return self.inpainter.pipe

    def fill(self, image, mask, box, generator=None):
        inp = self.inpainter
        crop = ContextCrop.around(image, box, resolution=inp.resolution, multiple=inp.multiple, context=inp.context)
        crop = dataclasses.replace(crop, mask=crop.crop_mask(mask))
        return crop.box_patch(self.generate(crop, generator))

    @abstractmethod
    def generate(self, crop: ContextCrop, generator=None) -> Image.Image:
        """Run the pipeline on ``crop.image`` / ``crop.mask`` (the object's mask); an image of ``crop.size``."""


class DiffusersRemover(DiffusionRemover):
    """``DiffusersRemover(pipe, lora=None)``: any inpainting pipeline, empty prompt, optional removal LoRA.

    ``prompt`` may describe the background ("an empty wooden table"); empty by default, as the
    removal LoRA was trained. ``lora`` is loaded with ``load_lora`` (an error if it attaches to nothing).
    """

    def __init__(self, pipe, *, prompt: str = "", negative_prompt: str | None = None, lora=None,
                 lora_scale: float = 1.0, dilate: int = 4, context: float = 2.0, num_inference_steps: int = 50,
                 guidance_scale: float | None = None, strength: float | None = None, resolution: int | None = None,
                 **call_kwargs):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        super().__init__(DiffusersInpainter(pipe, strength=strength, context=context, resolution=resolution,
                                            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                            negative_prompt=negative_prompt, **call_kwargs), dilate=dilate)
        self.prompt = prompt.strip()
        self.adapter = load_lora(pipe, lora, scale=lora_scale) if lora is not None else None

    def generate(self, crop, generator=None):
        """Run the inpainting pipeline on the crop with the removal prompt (empty by default)."""
        return self.inpainter.generate(crop, self.prompt, generator)

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_REMOVAL, *, lora=None, dtype=None, device=None,
                        pipeline_kwargs: dict | None = None, **kwargs) -> "DiffusersRemover":
        """Load ``model_id`` the way ``DiffusersInpainter.from_pretrained`` does, then the optional LoRA."""
        pipe = DiffusersInpainter.from_pretrained(model_id, dtype=dtype, device=device,
                                                  pipeline_kwargs=pipeline_kwargs).pipe
        return cls(pipe, lora=lora, **kwargs)


class PowerPaintRemover(DiffusionRemover):
    """``PowerPaintRemover(pipe)``: a ``StableDiffusionInpaintPipeline`` holding PowerPaint-v1 weights.

    Positive prompt ``"empty scene blur <prompt> <p_ctxt tokens>"``, negative ``"<p_obj tokens>"``
    (PowerPaint's own removal template); no quality words in the negative. PowerPaint recommends
    guidance 10 or more for removal, raised further if the object reappears.
    """

    def __init__(self, pipe, *, prompt: str = "", guidance_scale: float = 10.0, num_inference_steps: int = 45,
                 dilate: int = 4, context: float = 2.0, resolution: int | None = None, **call_kwargs):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        super().__init__(PowerPaintInpainter(pipe, task="context", guidance_scale=guidance_scale,
                                             num_inference_steps=num_inference_steps, context=context,
                                             resolution=resolution, **call_kwargs), dilate=dilate)
        self.prompt = prompt.strip()
        self._ctxt, self._obj = (task_token_text(pipe.tokenizer, t) for t in ("p_ctxt", "p_obj"))

    def prompts(self) -> tuple[str, str]:
        """(positive, negative) with the task tokens written out."""
        return " ".join(f"empty scene blur {self.prompt} {self._ctxt}".split()), self._obj

    def generate(self, crop, generator=None):
        """Run PowerPaint's removal task on the crop."""
        positive, negative = self.inpainter.embed(list(self.prompts())).unbind(0)
        w, h = crop.size
        return self.pipe(prompt_embeds=positive[None], negative_prompt_embeds=negative[None], image=crop.image,
                         mask_image=crop.mask, height=h, width=w,
                         **self.inpainter.common_kwargs(generator)).images[0]

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_POWERPAINT, *, base: str = DEFAULT_BASE, dtype=None,
                        device=None, pipeline_kwargs: dict | None = None, **kwargs) -> "PowerPaintRemover":
        """Load PowerPaint-v1 exactly as ``PowerPaintInpainter.from_pretrained`` does (either layout)."""
        pipe = PowerPaintInpainter.from_pretrained(model_id, base=base, dtype=dtype, device=device,
                                                   pipeline_kwargs=pipeline_kwargs).pipe
        return cls(pipe, **kwargs)


#: ``--remover`` names of the command line.
REMOVERS = {"biharmonic": BiharmonicFill, "powerpaint": PowerPaintRemover, "diffusers": DiffusersRemover}
