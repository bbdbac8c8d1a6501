"""GLIGEN box-grounded inpainting (``diffusers.StableDiffusionGLIGENPipeline``).

GLIGEN takes the object's box as a grounding input, so the drawn object is steered to fill the
box rather than just the masked hole. The pipeline centre-crops any inpaint image to a square of
``vae.config.sample_size`` and needs ``height == width == vae.config.sample_size``, so this
wrapper hands it exactly such a square context window and the box normalised to that window.
"""

from __future__ import annotations

from ..validation import check_probability
from .base import DiffusionInpainter, load_pipeline

DEFAULT_GLIGEN = "masterful/gligen-1-4-inpainting-text-box"


class GLIGENInpainter(DiffusionInpainter):
    """``GLIGENInpainter(pipe)``: inpaint with a ready ``StableDiffusionGLIGENPipeline``.

    ``beta`` is ``gligen_scheduled_sampling_beta``: the share of denoising steps during which the
    box grounding is on (upstream's inpainting example uses 1).
    """

    square = True

    def __init__(self, pipe, *, beta: float = 1.0, num_inference_steps: int = 50, **kwargs):
        super().__init__(pipe, num_inference_steps=num_inference_steps, **kwargs)
        if getattr(pipe, "unet", None) is not None and pipe.unet.config.in_channels != 9:
            raise ValueError("GLIGEN inpainting needs a 9-channel inpainting UNet (e.g. "
                             f"{DEFAULT_GLIGEN}); this pipeline's UNet has {pipe.unet.config.in_channels}")
        self.beta = check_probability(beta, "beta (fraction of steps with box grounding)")

    def default_resolution(self) -> int:
        """The square window side the pipeline needs: its VAE's ``sample_size``."""
        # The pipeline resizes the inpaint image to vae.sample_size and fails unless H = W = that.
        return int(self.pipe.vae.config.sample_size)

    def generate(self, crop, prompt, generator=None):
        """Run GLIGEN on the crop with the box as its grounding input."""
        size = crop.size[0]
        return self.pipe(prompt=prompt, gligen_phrases=[prompt], gligen_boxes=[crop.normalized_box()],
                         gligen_inpaint_image=crop.image, gligen_scheduled_sampling_beta=self.beta,
                         height=size, width=size, negative_prompt=self.negative_prompt,
                         **self.common_kwargs(generator)).images[0]

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_GLIGEN, *, dtype=None, device=None,
                        pipeline_kwargs: dict | None = None, **kwargs) -> "GLIGENInpainter":
        """Load explicitly as ``StableDiffusionGLIGENPipeline``: the hub checkpoint's
        ``model_index.json`` names ``StableDiffusionPipeline``, and AutoPipeline has no GLIGEN."""
        from diffusers import StableDiffusionGLIGENPipeline

        pipe = load_pipeline(StableDiffusionGLIGENPipeline, model_id, dtype=dtype, device=device,
                             **{"safety_checker": None, "requires_safety_checker": False, **(pipeline_kwargs or {})})
        return cls(pipe, **kwargs)
