"""RePaint-style resampling with a reference image, on any Stable Diffusion inpainting pipeline.

In the spirit of "Fill in the ____" (arXiv 2403.16016), which extends RePaint (Lugmayr et al.,
CVPR 2022) with a *target image* blended into the hole; no code of that paper exists, so the
design below is ours:

- **RePaint's loop on latents.** ``RePaintScheduler`` with the pipeline's own betas
  (SD: ``scaled_linear`` 0.00085 to 0.012) and ``clip_sample=False`` (latents are not in [-1, 1]),
  over the schedule of ``set_timesteps(steps, jump_length, jump_n_sample)``: each step denoises
  once, and every ``jump_length`` steps the sample is re-noised ``jump_length`` steps back
  (``undo_step``), ``jump_n_sample - 1`` times, so the hole and its surroundings harmonise.
- **Known content.** Outside the box the known content is the background latent: it is kept
  exactly (mask 1), which is RePaint. Inside the box the known content is the *reference*, placed
  in the box with its alpha (``reference.place_in_box``), and its mask is soft:
  ``mask = (1 - hole) + hole * alpha * lambda(t / T)``. So at every step the sample inside the
  object's silhouette is the noised reference with weight lambda and the model's own sample with
  weight 1 - lambda; where the reference is transparent (or absent) the model draws freely.
- **The lambda schedule** (``SCHEDULES``; ``s = t / T`` runs from 1, pure noise, to 0, clean):

  ========== ================================== ==============================================
  name       lambda(s)                          what it does
  ========== ================================== ==============================================
  ``layout`` 1 while s > 0.5, then 0            the reference sets the layout and colours, then
                                                the model harmonises it (default; SDEdit-like)
  ``linear`` s                                  the reference fades out evenly
  ``cosine`` (1 - cos(pi s)) / 2                holds longer at both ends than ``linear``
  ``paste``  1                                  the reference is kept to the end: a paste that
                                                only the VAE and the border resampling touch
  ========== ================================== ==============================================

  Any callable ``lambda(s) -> [0, 1]`` works too. ``plot_schedules`` draws them (docs/guides/reference-images.md).
- **The UNet.** A 9-channel inpainting UNet gets ``cat([x, hole, masked_image_latents])`` on
  every call, as SD inpainting does; a 4-channel text-to-image UNet gets ``x`` alone (classic
  RePaint with a text prompt). Only epsilon-prediction models fit the scheduler.

Without a reference this is plain RePaint resampling of the box from the text prompt.
The result is decoded and pasted back inside the box, like every backend.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
from PIL import Image

from ..validation import check_float, check_positive_int
from .base import DiffusionInpainter, load_pipeline
from .reference import FITS

if TYPE_CHECKING:
    import torch

DEFAULT_REPAINT_BASE = "stable-diffusion-v1-5/stable-diffusion-inpainting"

SCHEDULES: dict[str, Callable[[float], float]] = {
    "layout": lambda s: 1.0 if s > 0.5 else 0.0,
    "linear": lambda s: s,
    "cosine": lambda s: (1.0 - math.cos(math.pi * s)) / 2.0,
    "paste": lambda s: 1.0,
}


def as_schedule(schedule) -> Callable[[float], float]:
    if callable(schedule):
        return schedule
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)} or a callable lambda(s), got {schedule!r}")
    return SCHEDULES[schedule]


def count_unet_calls(num_inference_steps: int, jump_length: int, jump_n_sample: int) -> int:
    """How many denoising steps (UNet calls) a RePaint schedule makes; the rest of its entries are jumps."""
    from diffusers import RePaintScheduler

    s = RePaintScheduler()
    s.set_timesteps(num_inference_steps, jump_length, jump_n_sample)
    t = s.timesteps.tolist()
    return sum(1 for prev, cur in zip([t[0] + 1] + t, t) if cur < prev)


class RePaintLatents(NamedTuple):
    """Final ``latents``, the ``known`` content (background; reference in the box), the latent ``hole``
    and ``reference_mask`` (hole x the reference's alpha): the soft mask is ``1 - hole + reference_mask * lambda``."""

    latents: "torch.Tensor"
    known: "torch.Tensor"
    hole: "torch.Tensor"
    reference_mask: "torch.Tensor"


class ReferenceRePaintInpainter(DiffusionInpainter):
    """``ReferenceRePaintInpainter(pipe)``: RePaint resampling with a reference on an SD (inpainting) pipeline.

    ``schedule`` is a name of ``SCHEDULES`` or a callable; ``jump_length`` / ``jump_n_sample`` are
    RePaint's j and r (``jump_n_sample=1`` disables resampling); ``eta`` is the DDIM noise of each
    step; ``fit`` places the reference in the box (``"contain"`` keeps its aspect, ``"stretch"``).
    UNet calls per edit: ``count_unet_calls(num_inference_steps, jump_length, jump_n_sample)`` (95 by
    default), times 2 with classifier-free guidance.
    """

    accepts_reference = True

    def __init__(self, pipe, *, schedule="layout", jump_length: int = 5, jump_n_sample: int = 2, eta: float = 0.0,
                 fit: str = "contain", num_inference_steps: int = 50, guidance_scale: float = 7.5, **kwargs):
        super().__init__(pipe, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, **kwargs)
        if self.call_kwargs:
            raise TypeError(f"ReferenceRePaintInpainter runs its own loop; unexpected arguments {sorted(self.call_kwargs)}")
        unet, vae = getattr(pipe, "unet", None), getattr(pipe, "vae", None)
        if unet is None or vae is None or not hasattr(pipe, "encode_prompt"):
            raise TypeError(f"ReferenceRePaintInpainter needs a Stable Diffusion (inpainting) pipeline with a UNet, "
                            f"a VAE and a text encoder, got {type(pipe).__name__}")
        if unet.config.in_channels not in (4, 9):
            raise ValueError(f"the UNet must take 9 channels (SD inpainting) or 4 (SD), not {unet.config.in_channels}")
        if pipe.scheduler.config.get("prediction_type", "epsilon") != "epsilon":
            raise ValueError("RePaint's scheduler needs an epsilon-prediction model; this one predicts "
                             f"{pipe.scheduler.config.get('prediction_type')!r}")
        self.jump_length = check_positive_int(jump_length, "jump_length")
        self.jump_n_sample = check_positive_int(jump_n_sample, "jump_n_sample")
        self.eta = check_float(eta, "eta (DDIM noise)", minimum=0, maximum=1)
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        self.schedule = as_schedule(schedule)
        self.schedule_name = schedule if isinstance(schedule, str) else getattr(schedule, "__name__", "custom")
        self.fit = fit

    def scheduler(self):
        """A ``RePaintScheduler`` with the pipeline's betas and no clipping of the predicted latent."""
        from diffusers import RePaintScheduler

        c = self.pipe.scheduler.config
        trained = c.get("trained_betas")
        return RePaintScheduler(num_train_timesteps=c.get("num_train_timesteps", 1000),
                                beta_start=c.get("beta_start", 0.00085), beta_end=c.get("beta_end", 0.012),
                                beta_schedule=c.get("beta_schedule", "scaled_linear"), eta=self.eta,
                                trained_betas=np.asarray(trained) if trained is not None else None, clip_sample=False)

    def generate(self, crop, prompt, generator=None, reference=None):
        """RePaint-resample the crop, the reference blended into the hole under the λ schedule."""
        import torch

        z = self.sample_latents(crop, prompt, generator, reference)
        vae = self.pipe.vae
        with torch.no_grad():
            decoded = vae.decode(z.latents / vae.config.scaling_factor).sample
        return self.pipe.image_processor.postprocess(decoded, output_type="pil")[0]

    def sample_latents(self, crop, prompt, generator=None, reference=None) -> "RePaintLatents":
        """The RePaint loop on ``crop``; returns the final latents with the known content and masks used."""
        import torch

        with torch.no_grad():
            return self._sample_latents(crop, prompt, generator, reference)

    def _sample_latents(self, crop, prompt, generator, reference) -> "RePaintLatents":
        import torch
        import torch.nn.functional as F
        from diffusers.utils.torch_utils import randn_tensor

        pipe, unet = self.pipe, self.pipe.unet
        device, dtype = pipe._execution_device, unet.dtype
        w, h = crop.size
        lat = (h // pipe.vae_scale_factor, w // pipe.vae_scale_factor)
        hole_px = torch.from_numpy(np.asarray(crop.mask) > 127)[None, None].float()
        hole = (F.interpolate(hole_px, size=lat, mode="area") > 0).to(device, dtype)
        background = pipe.image_processor.preprocess(crop.image).to(device, dtype)
        z_background = self._encode(background)
        known = z_background
        ref_mask = torch.zeros_like(hole)
        if reference is not None:
            canvas, alpha = self._reference_canvas(crop, reference)
            z_reference = self._encode(pipe.image_processor.preprocess(canvas).to(device, dtype))
            known = (1 - hole) * z_background + hole * z_reference
            ref_mask = hole * F.interpolate(torch.from_numpy(alpha)[None, None], size=lat, mode="area").to(device, dtype)

        do_cfg = self.guidance_scale is not None and self.guidance_scale > 1
        embeds, negative = pipe.encode_prompt(prompt, device, 1, do_cfg, self.negative_prompt)
        if do_cfg:
            embeds = torch.cat([negative, embeds])
        extra = None
        if unet.config.in_channels == 9:
            masked = self._encode(background * (hole_px.to(device, dtype) < 0.5))
            extra = torch.cat([hole, masked], dim=1)
            if do_cfg:
                extra = torch.cat([extra, extra])

        scheduler = self.scheduler()
        scheduler.set_timesteps(self.num_inference_steps, self.jump_length, self.jump_n_sample, device)
        T = scheduler.config.num_train_timesteps
        x = randn_tensor(known.shape, generator=generator, device=device, dtype=dtype)
        t_last = int(scheduler.timesteps[0]) + 1
        for t in scheduler.timesteps.tolist():
            if t < t_last:     # a denoising step
                inp = torch.cat([x, x]) if do_cfg else x
                if extra is not None:
                    inp = torch.cat([inp, extra], dim=1)
                eps = unet(inp, t, encoder_hidden_states=embeds).sample
                if do_cfg:
                    uncond, cond = eps.chunk(2)
                    eps = uncond + self.guidance_scale * (cond - uncond)
                lam = float(np.clip(self.schedule(t / T), 0.0, 1.0))
                mask = (1 - hole) + ref_mask * lam
                x = scheduler.step(eps, t, x, known, mask, generator).prev_sample
            else:              # a jump back: re-noise
                x = scheduler.undo_step(x, t_last, generator)
            t_last = t
        return RePaintLatents(x, known, hole, ref_mask)

    def _encode(self, pixels):
        vae = self.pipe.vae
        return vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor

    def _reference_canvas(self, crop, reference) -> tuple[Image.Image, np.ndarray]:
        """The crop with the reference composited into the box, and the reference's alpha at crop size."""
        from ..boxes import pixel_box

        x1, y1, x2, y2 = pixel_box(crop.box, *crop.size)
        patch, alpha = reference.placed((x2 - x1, y2 - y1), self.fit)
        canvas = np.asarray(crop.image.convert("RGB"), np.float32).copy()
        a = alpha[..., None]
        canvas[y1:y2, x1:x2] = canvas[y1:y2, x1:x2] * (1 - a) + np.asarray(patch, np.float32) * a
        full = np.zeros((crop.size[1], crop.size[0]), np.float32)
        full[y1:y2, x1:x2] = alpha
        return Image.fromarray(np.rint(canvas).clip(0, 255).astype(np.uint8)), full

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_REPAINT_BASE, *, dtype=None, device=None,
                        pipeline_kwargs: dict | None = None, **kwargs) -> "ReferenceRePaintInpainter":
        """Load an SD inpainting checkpoint with ``AutoPipelineForInpainting`` (a plain SD one works too)."""
        from diffusers import AutoPipelineForInpainting

        pkw = {"safety_checker": None, "requires_safety_checker": False, **(pipeline_kwargs or {})}
        return cls(load_pipeline(AutoPipelineForInpainting, model_id, dtype=dtype, device=device, **pkw), **kwargs)


def plot_schedules(path=None, reference=None, background=None, box=(40, 52, 88, 116), steps: int = 200):
    """Every named schedule: lambda(s) (left), and the soft mask it gives the sampler at five steps (right).

    The mask is drawn at pixel resolution on ``background`` (default: a 128 px synthetic scene) with
    ``reference`` (default: the synthetic plant sprite) placed in ``box``: white = known content
    kept (the background outside the box; the reference with weight lambda inside its silhouette),
    black = drawn by the model. Saved to ``path`` if given; returns the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..boxes import pixel_box
    from ..data.synthetic import make_scene, render, sprite
    from ..images import load_image
    from .reference import as_reference

    bg = load_image(background) if background is not None else Image.fromarray(render(make_scene(3, size=128)))
    ref = as_reference(reference if reference is not None else sprite("plant", (48, 64)))
    W, H = bg.size
    x1, y1, x2, y2 = pixel_box(box, W, H)
    patch, alpha = ref.placed((x2 - x1, y2 - y1))
    known = np.asarray(bg, np.float32).copy()
    known[y1:y2, x1:x2] = known[y1:y2, x1:x2] * (1 - alpha[..., None]) + np.asarray(patch, np.float32) * alpha[..., None]
    hole = np.zeros((H, W), np.float32)
    hole[y1:y2, x1:x2] = 1
    ref_mask = np.zeros((H, W), np.float32)
    ref_mask[y1:y2, x1:x2] = alpha
    shown = (1.0, 0.75, 0.5, 0.25, 0.0)
    m = 12   # the mask panels show the box and a margin of background around it
    view = (slice(max(0, y1 - m), min(H, y2 + m)), slice(max(0, x1 - m), min(W, x2 + m)))

    fig = plt.figure(figsize=(11, 6.2))
    grid = fig.add_gridspec(len(SCHEDULES), 3 + len(shown), width_ratios=[2.6, 1.4, 0.3] + [1] * len(shown),
                            wspace=0.08, hspace=0.12)
    curve = fig.add_subplot(grid[:, 0])
    s_axis = np.linspace(1.0, 0.0, steps)
    for name, fn in SCHEDULES.items():
        curve.plot(s_axis, [fn(v) for v in s_axis], label=name, lw=2)
    curve.set_xlim(1.0, 0.0)
    curve.set_ylim(-0.05, 1.08)
    curve.set_xlabel("s = t / T  (1: pure noise, 0: clean)")
    curve.set_ylabel("lambda: weight of the reference")
    curve.legend(loc="center left", frameon=False)
    known_ax = fig.add_subplot(grid[0:2, 1])
    known_ax.imshow(np.rint(known).astype(np.uint8))
    known_ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="red", lw=1))
    known_ax.set_title("known content\n(reference in the box)", fontsize=9)
    known_ax.set_xticks([])
    known_ax.set_yticks([])
    for i, (name, fn) in enumerate(SCHEDULES.items()):
        for j, sv in enumerate(shown):
            ax = fig.add_subplot(grid[i, 3 + j])
            ax.imshow(((1 - hole) + ref_mask * float(fn(sv)))[view], cmap="gray", vmin=0, vmax=1)
            if i == 0:
                ax.set_title(f"s = {sv:g}", fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("RePaint with a reference: the soft mask = (1 - hole) + hole x alpha x lambda(s)")
    if path is not None:
        from ..io import save_figure

        save_figure(fig, path, dpi=100, bbox_inches="tight")
    return fig
