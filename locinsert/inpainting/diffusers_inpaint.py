"""Any diffusers inpainting pipeline: ``AutoPipelineForInpainting`` checkpoints and FLUX.1 Fill.

The pipeline gets the context window and a white-inside-the-box mask at its native resolution,
snapped to its latent grid: ``vae_scale_factor`` (8) for SD / SDXL, twice that (16) for Flux,
64 for Kandinsky 2.2. ``FluxFillPipeline`` is not in AutoPipeline's table, so ``from_pretrained``
reads the checkpoint's ``model_index.json`` and picks it directly.
"""

from __future__ import annotations

from ..validation import check_probability
from .base import DiffusionInpainter, load_pipeline

DEFAULT_INPAINT = "stable-diffusion-v1-5/stable-diffusion-inpainting"


def _is_flux(pipe) -> bool:
    return type(pipe).__name__.startswith("Flux")


class DiffusersInpainter(DiffusionInpainter):
    """``DiffusersInpainter(pipe)``: any pipeline called as ``pipe(prompt, image=, mask_image=, height=, width=)``."""

    def __init__(self, pipe, *, strength: float | None = None, **kwargs):
        super().__init__(pipe, **kwargs)
        self.strength = check_probability(strength, "strength", low_open=True, optional=True)

    def default_multiple(self) -> int:
        """The grid the context window snaps to: 8 for SD/SDXL, 16 for Flux, 64 for Kandinsky."""
        vae_scale = int(getattr(self.pipe, "vae_scale_factor", 8))
        if _is_flux(self.pipe):
            return vae_scale * 2          # latents are packed in 2x2 patches
        if type(self.pipe).__name__.startswith("Kandinsky"):
            return 64
        return vae_scale

    def generate(self, crop, prompt, generator=None):
        """Run the inpainting pipeline on the crop and its box mask."""
        kw = self.common_kwargs(generator)
        if self.strength is not None:
            kw["strength"] = self.strength
        if self.negative_prompt is not None:
            kw["negative_prompt"] = self.negative_prompt
        w, h = crop.size
        return self.pipe(prompt=prompt, image=crop.image, mask_image=crop.mask, height=h, width=w, **kw).images[0]

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_INPAINT, *, dtype=None, device=None, pipeline_class=None,
                        pipeline_kwargs: dict | None = None, **kwargs) -> "DiffusersInpainter":
        """Load ``model_id`` with ``AutoPipelineForInpainting``, or ``FluxFillPipeline`` when the
        checkpoint says so (or ``pipeline_class=``, a class or a diffusers class name)."""
        import diffusers

        if pipeline_class is None:
            try:
                config = diffusers.DiffusionPipeline.load_config(model_id)
                name = config.get("_class_name", "")
            except Exception:  # noqa: BLE001 - let the real loader raise its own, clearer error
                name = ""
            pipeline_class = "FluxFillPipeline" if name == "FluxFillPipeline" else diffusers.AutoPipelineForInpainting
        if isinstance(pipeline_class, str):
            pipeline_class = getattr(diffusers, pipeline_class)
        pipe = load_pipeline(pipeline_class, model_id, dtype=dtype, device=device, **(pipeline_kwargs or {}))
        return cls(pipe, **kwargs)
