"""Paint-by-Example (Yang et al., CVPR 2023): inpaint the box with the object of an exemplar image.

diffusers' ``PaintByExamplePipeline`` conditions an SD-inpainting-like UNet on *one* token: the
pooled CLIP image embedding of the exemplar, mapped and projected by ``PaintByExampleImageEncoder``
(its learned ``uncond_vector`` is the classifier-free-guidance negative, so there is no text and
no negative prompt). Facts this wrapper is built around (diffusers 0.42):

- the pipeline is deprecated (``pipelines/deprecated/paint_by_example``) but works; its encoder is
  not exported at the top level, so it is found next to the pipeline class;
- ``PaintByExamplePipeline.from_pretrained`` fails on 0.42 for the hub layout
  (``Fantasy-Studio/Paint-by-Example`` names the library ``paint_by_example``) and for the
  pipeline's own saves (``diffusers`` has no ``PaintByExampleImageEncoder``), so
  ``load_paint_by_example`` loads each component from its subfolder and calls the constructor;
- its UNet reads ``cat([latents, masked_image_latents, mask])``, not SD-inpainting's
  ``[latents, mask, masked_image_latents]``: the two UNets are not interchangeable;
- the output has the input's size, which must be a multiple of 8 (so the context window snaps to
  ``lcm(8, vae_scale_factor)``), and pixels outside the mask change: the usual crop, generate and
  paste back inside the box applies.

The exemplar is the reference composited onto white (an RGBA cut-out) or the photo as it is: the
model was trained on object crops with their background, so an opaque photo is a fine exemplar.
"""

from __future__ import annotations

import importlib
import math
import warnings

from .base import DiffusionInpainter

DEFAULT_PAINT_BY_EXAMPLE = "Fantasy-Studio/Paint-by-Example"


class PaintByExampleInpainter(DiffusionInpainter):
    """``PaintByExampleInpainter(pipe)``: a ready ``PaintByExamplePipeline``; ``inpaint`` needs ``reference=``.

    The prompt is not used (the exemplar is the whole condition); it still names the class for the
    location model when called through ``ObjectInserter``.
    """

    accepts_reference = True
    requires_reference = True

    def __init__(self, pipe, *, num_inference_steps: int = 50, guidance_scale: float = 5.0, **kwargs):
        if getattr(pipe, "image_encoder", None) is None or getattr(pipe, "unet", None) is None:
            raise TypeError(f"PaintByExampleInpainter needs a PaintByExamplePipeline (with an image_encoder), "
                            f"got {type(pipe).__name__}")
        if kwargs.get("negative_prompt") is not None:
            raise ValueError("Paint-by-Example takes no negative prompt: its negative is a learned image vector")
        super().__init__(pipe, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, **kwargs)

    def default_multiple(self) -> int:
        """The grid the context window snaps to: a multiple of 8 and of the VAE's factor."""
        # The pipeline rejects sizes that are not multiples of 8, whatever its VAE factor.
        return math.lcm(8, int(getattr(self.pipe, "vae_scale_factor", 8)))

    def generate(self, crop, prompt, generator=None, reference=None):
        """Run Paint-by-Example on the crop with the reference as its exemplar."""
        example = reference.rgb() if reference.has_alpha else reference.image.convert("RGB")
        return self.pipe(example_image=example, image=crop.image, mask_image=crop.mask,
                         **self.common_kwargs(generator)).images[0]

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_PAINT_BY_EXAMPLE, *, dtype=None, device=None,
                        **kwargs) -> "PaintByExampleInpainter":
        """Load the hub layout (``Fantasy-Studio/Paint-by-Example``) or a ``save_pretrained`` folder."""
        return cls(load_paint_by_example(model_id, dtype=dtype, device=device), **kwargs)


def image_encoder_class():
    """``PaintByExampleImageEncoder``, wherever this diffusers keeps it (``deprecated/`` since 0.38)."""
    from diffusers import PaintByExamplePipeline

    return importlib.import_module(PaintByExamplePipeline.__module__.rsplit(".", 1)[0]).PaintByExampleImageEncoder


def load_paint_by_example(model_id: str, *, dtype=None, device=None):
    """A ``PaintByExamplePipeline`` built from the subfolders of ``model_id`` (hub id or folder).

    Reads ``unet``, ``vae``, ``image_encoder``, ``scheduler`` (its class from its own config) and
    ``feature_extractor``; the safety checker is left out.
    """
    import diffusers
    from diffusers import AutoencoderKL, PaintByExamplePipeline, UNet2DConditionModel
    from transformers import CLIPImageProcessor

    scheduler_config = diffusers.DDIMScheduler.load_config(model_id, subfolder="scheduler")
    scheduler_cls = getattr(diffusers, scheduler_config.get("_class_name", ""), None)
    if scheduler_cls is None:
        raise ValueError(f"{model_id}: unknown scheduler class {scheduler_config.get('_class_name')!r}")
    with warnings.catch_warnings():
        # the hub encoder's config says "clip_vision_model"; transformers notes the class differs (harmless)
        warnings.simplefilter("ignore")
        pipe = PaintByExamplePipeline(
            vae=AutoencoderKL.from_pretrained(model_id, subfolder="vae"),
            image_encoder=image_encoder_class().from_pretrained(model_id, subfolder="image_encoder"),
            unet=UNet2DConditionModel.from_pretrained(model_id, subfolder="unet"),
            scheduler=scheduler_cls.from_config(scheduler_config),
            safety_checker=None,
            feature_extractor=CLIPImageProcessor.from_pretrained(model_id, subfolder="feature_extractor"),
            requires_safety_checker=False)
    if isinstance(dtype, str):
        import torch
        dtype = getattr(torch, dtype)
    if dtype is not None or device is not None:
        pipe = pipe.to(device=device, dtype=dtype)
    return pipe
