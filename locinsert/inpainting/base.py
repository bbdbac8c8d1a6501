"""What every inpainter shares: the protocol, the context window, and the paste inside the box.

The protocol is one method, ``inpaint(image, box, prompt, generator=None, reference=None) -> PIL.Image``,
returning an image of the input's size in which **only pixels inside the box may change**.
``reference=`` is a picture of the very object to insert (``reference.py``); a backend that cannot
use one says so with a ``ValueError`` naming those that can, never ignores it silently. "Inside" means the
pixels the box touches: columns ``floor(x1) .. ceil(x2) - 1`` and rows ``floor(y1) .. ceil(y2) - 1``
(``pixel_box``). Every backend guarantees this the same way: it produces a patch for that pixel
rectangle and ``paste_inside`` writes the patch into a copy of the input, so the rest of the array
is never touched. Diffusion pipelines decode the whole latent through the VAE and change every
pixel a little, which is why they are never trusted with the paste.

Diffusion backends work on a *context window* (``ContextCrop``): a rectangle around the box,
``context`` times its size, resized to the pipeline's native resolution and snapped to its latent
grid. The window is moved to stay inside the image; a square window larger than the image's short
side is padded by mirroring the image (GLIGEN needs a square).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ..boxes import check_box, pixel_box
from ..images import load_image
from ..validation import check_float, check_int
from .reference import REFERENCE_BACKENDS, Reference, as_reference

__all__ = ["Inpainter", "DiffusionInpainter", "ContextCrop", "pixel_box", "box_mask", "check_box",
           "check_prompt", "check_reference_support", "paste_inside", "load_pipeline", "snap"]


# -- boxes -------------------------------------------------------------------------------------

def box_mask(box, width: int, height: int) -> np.ndarray:
    """(H, W) bool mask of the pixels of ``pixel_box(box)``: the only pixels an inpainter may change."""
    x1, y1, x2, y2 = pixel_box(box, width, height)
    m = np.zeros((height, width), dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def check_prompt(prompt) -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str (the object to draw), got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt is empty: say what object to draw, e.g. 'a red mug'")
    return prompt.strip()


def snap(value: float, multiple: int) -> int:
    """Round to the nearest positive multiple of ``multiple`` (the pipeline's latent grid)."""
    return max(multiple, int(round(value / multiple)) * multiple)


# -- paste --------------------------------------------------------------------------------------

def paste_inside(image: Image.Image, patch: Image.Image, box, alpha: np.ndarray | None = None,
                 feather: int = 0) -> Image.Image:
    """Write ``patch`` into ``pixel_box(box)`` of a copy of ``image``; nothing outside changes.

    ``patch`` is resized to the pixel box if needed. ``alpha`` (floats in [0, 1], the pixel box's
    shape) blends patch over image, e.g. a cut-out's transparency. ``feather`` softens the seam
    over that many pixels *inside* the box (erode, then blur, so the blend never leaves the box).
    """
    W, H = image.size
    x1, y1, x2, y2 = pixel_box(box, W, H)
    w, h = x2 - x1, y2 - y1
    if patch.size != (w, h):
        patch = patch.resize((w, h), Image.LANCZOS)
    out = np.array(image.convert("RGB"), copy=True)
    if alpha is None and feather <= 0:
        out[y1:y2, x1:x2] = np.asarray(patch.convert("RGB"))
        return Image.fromarray(out)
    a = np.ones((h, w), np.float32) if alpha is None else np.asarray(alpha, np.float32)
    if a.shape != (h, w):
        raise ValueError(f"alpha must have the pixel box's shape {(h, w)}, got {a.shape}")
    if feather > 0 and min(w, h) > 2 * feather:
        ramp = np.zeros((h, w), np.uint8)
        ramp[feather:h - feather, feather:w - feather] = 255      # eroded by `feather` ...
        ramp = Image.fromarray(ramp).filter(ImageFilter.GaussianBlur(feather / 2))  # ... then blurred
        a = a * (np.asarray(ramp, np.float32) / 255.0)
    a = np.clip(a, 0.0, 1.0)[..., None]
    region = out[y1:y2, x1:x2].astype(np.float32)
    gen = np.asarray(patch.convert("RGB"), np.float32)
    out[y1:y2, x1:x2] = np.rint(region * (1.0 - a) + gen * a).clip(0, 255).astype(np.uint8)
    return Image.fromarray(out)


# -- context window -----------------------------------------------------------------------------

@dataclass
class ContextCrop:
    """A window of the image around a box, resized to a pipeline's native size.

    ``window`` is in image pixels and may reach outside the image (mirror padding);
    ``image`` / ``mask`` are at ``size`` (native); ``box`` is the box in native pixels.
    """

    window: tuple[int, int, int, int]
    size: tuple[int, int]
    image: Image.Image
    mask: Image.Image
    box: tuple[float, float, float, float]
    source_box: tuple[float, float, float, float]
    image_size: tuple[int, int]

    @classmethod
    def around(cls, image: Image.Image, box, *, resolution: int, multiple: int = 8, context: float = 2.0,
               square: bool = False, min_context: float = 0.25, max_aspect: float = 2.0) -> "ContextCrop":
        """Window ``context`` x the box (at least ``min_context`` x the image's short side).

        ``square=True`` gives a ``resolution`` x ``resolution`` crop (GLIGEN); otherwise the window
        keeps its aspect (at most ``max_aspect``), its area is about ``resolution**2`` and both
        sides are multiples of ``multiple``.
        """
        W, H = image.size
        ix1, iy1, ix2, iy2 = pixel_box(box, W, H)
        bw, bh = ix2 - ix1, iy2 - iy1
        floor_side = min_context * min(W, H)
        ww, wh = max(context * bw, floor_side, bw), max(context * bh, floor_side, bh)
        if square:
            ww = wh = max(ww, wh)
        else:
            ww, wh = max(ww, wh / max_aspect), max(wh, ww / max_aspect)
            ww, wh = min(ww, W), min(wh, H)    # a free-aspect window never needs padding
        ww, wh = max(int(math.ceil(ww)), bw), max(int(math.ceil(wh)), bh)
        wx1 = _place(ix1, ix2, ww, W)
        wy1 = _place(iy1, iy2, wh, H)
        window = (wx1, wy1, wx1 + ww, wy1 + wh)
        if square:
            size = (resolution, resolution)
        else:
            scale = resolution / math.sqrt(ww * wh)
            size = (snap(ww * scale, multiple), snap(wh * scale, multiple))
        crop = _crop_padded(image, window).resize(size, Image.LANCZOS)
        sx, sy = size[0] / ww, size[1] / wh
        x1, y1, x2, y2 = box
        nbox = ((x1 - wx1) * sx, (y1 - wy1) * sy, (x2 - wx1) * sx, (y2 - wy1) * sy)
        mask = np.zeros((size[1], size[0]), np.uint8)
        mx1, my1, mx2, my2 = pixel_box(nbox, size[0], size[1])
        mask[my1:my2, mx1:mx2] = 255
        return cls(window, size, crop, Image.fromarray(mask, "L"), nbox, tuple(box), (W, H))

    def normalized_box(self) -> list[float]:
        """The box as fractions of the native crop, clamped to [0, 1] (GLIGEN's format)."""
        w, h = self.size
        x1, y1, x2, y2 = self.box
        return [min(max(v, 0.0), 1.0) for v in (x1 / w, y1 / h, x2 / w, y2 / h)]

    def crop_mask(self, mask: np.ndarray) -> Image.Image:
        """A (H, W) bool mask of the whole image, cut to the window and resized to ``size`` (mode ``L``).

        Removal feeds the pipeline the object's own mask instead of the box. Resized bilinearly and
        kept wherever any of it lands, so the mask only grows (a pixel half on the object is redrawn).
        """
        wx1, wy1, wx2, wy2 = self.window
        W, H = self.image_size
        m = np.zeros((wy2 - wy1, wx2 - wx1), np.uint8)     # outside the image: nothing to redraw
        sx1, sy1, sx2, sy2 = max(wx1, 0), max(wy1, 0), min(wx2, W), min(wy2, H)
        m[sy1 - wy1:sy2 - wy1, sx1 - wx1:sx2 - wx1] = np.asarray(mask, bool)[sy1:sy2, sx1:sx2] * 255
        small = np.asarray(Image.fromarray(m, "L").resize(self.size, Image.BILINEAR)) > 0
        return Image.fromarray(small.astype(np.uint8) * 255, "L")

    def box_patch(self, generated: Image.Image) -> Image.Image:
        """Resize a native-size result back to the window and cut out the source box's pixels."""
        if generated.size != self.size:
            generated = generated.resize(self.size, Image.LANCZOS)
        wx1, wy1, wx2, wy2 = self.window
        back = generated.convert("RGB").resize((wx2 - wx1, wy2 - wy1), Image.LANCZOS)
        x1, y1, x2, y2 = pixel_box(self.source_box, *self.image_size)
        return back.crop((x1 - wx1, y1 - wy1, x2 - wx1, y2 - wy1))


def _place(b1: int, b2: int, size: int, limit: int) -> int:
    """Start of a window of ``size`` holding [b1, b2), centred on it, inside [0, limit] if it fits."""
    start = int(round((b1 + b2) / 2 - size / 2))
    start = min(max(start, b2 - size), b1)
    if size <= limit:
        return min(max(start, 0), limit - size)
    return int(round(limit / 2 - size / 2))  # larger than the image: centre it, pad both sides


def _crop_padded(image: Image.Image, window) -> Image.Image:
    W, H = image.size
    x1, y1, x2, y2 = window
    if x1 >= 0 and y1 >= 0 and x2 <= W and y2 <= H:
        return image.crop(window)
    a = np.asarray(image.convert("RGB"))
    pad = ((max(0, -y1), max(0, y2 - H)), (max(0, -x1), max(0, x2 - W)), (0, 0))
    a = np.pad(a, pad, mode="symmetric")
    ox, oy = x1 + pad[1][0], y1 + pad[0][0]
    return Image.fromarray(a[oy:oy + (y2 - y1), ox:ox + (x2 - x1)])


# -- the protocol -------------------------------------------------------------------------------

class Inpainter(ABC):
    """Base class of every backend: validates inputs, asks ``draw`` for a patch, pastes it in the box.

    To add a backend, subclass this and implement ``draw`` (or subclass ``DiffusionInpainter`` and
    implement ``generate``). Anything with an ``inpaint(image, box, prompt, generator=None)``
    method returning a same-size PIL image also works with ``ObjectInserter``.

    A backend that draws from a reference image sets ``accepts_reference`` (and ``requires_reference``
    if it cannot draw without one) and takes ``reference=`` (a ``Reference``) in ``draw``; the others
    never see it.
    """

    #: Soft seam width in pixels, inside the box only (0 = hard edge).
    feather: int = 0
    #: Whether ``inpaint(..., reference=)`` is understood / needed.
    accepts_reference: bool = False
    requires_reference: bool = False

    def inpaint(self, image, box, prompt: str | None = None, generator=None, reference=None) -> Image.Image:
        """Draw ``prompt`` (or the ``reference`` object) inside ``box`` (xyxy pixels) of ``image``;
        only pixels in the box change. With a reference the prompt may be omitted."""
        img = load_image(image)
        b = check_box(box, *img.size)
        if reference is None:
            if self.requires_reference:
                raise ValueError(f"{type(self).__name__} draws the object of a reference image: pass reference= "
                                 "(a photo or an RGBA cut-out of the object)")
            patch, alpha = self.draw(img, b, check_prompt(prompt), generator)
        else:
            check_reference_support(self)
            ref = as_reference(reference)
            prompt = "" if prompt is None else check_prompt(prompt)
            patch, alpha = self.draw(img, b, prompt, generator, reference=ref)
        return paste_inside(img, patch, b, alpha=alpha, feather=self.feather)

    __call__ = inpaint

    @abstractmethod
    def draw(self, image: Image.Image, box, prompt: str, generator=None) -> tuple[Image.Image, np.ndarray | None]:
        """Return (patch for ``pixel_box(box)``, optional alpha in [0, 1] of the same shape)."""


def check_reference_support(inpainter) -> None:
    """``ValueError`` unless ``inpainter`` can draw from a reference image (naming the backends that can)."""
    if isinstance(inpainter, Inpainter):
        ok = inpainter.accepts_reference
    else:   # any object with an inpaint method: it must at least take the keyword
        import inspect

        try:
            params = inspect.signature(inpainter.inpaint).parameters
        except (TypeError, ValueError):
            params = {}
        ok = "reference" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    if not ok:
        raise ValueError(f"{type(inpainter).__name__} cannot use a reference image (it draws from text only); "
                         f"the backends that insert a given object are {', '.join(REFERENCE_BACKENDS)}")


class DiffusionInpainter(Inpainter):
    """A backend that runs a diffusers pipeline on a context window at its native resolution."""

    square: bool = False

    def __init__(self, pipe, *, resolution: int | None = None, multiple: int | None = None,
                 context: float = 2.0, feather: int = 0, num_inference_steps: int = 50,
                 guidance_scale: float | None = None, negative_prompt: str | None = None, **call_kwargs):
        if pipe is None or not callable(pipe):
            raise TypeError(f"{type(self).__name__} needs a diffusers pipeline, got {type(pipe).__name__}")
        self.pipe = pipe
        self.multiple = check_int(multiple, "multiple", minimum=1, optional=True) or self.default_multiple()
        self.resolution = (check_int(resolution, "resolution", minimum=self.multiple, optional=True)
                           or self.default_resolution())
        self.context = check_float(context, "context (window size / box size)", minimum=1)
        self.feather = check_int(feather, "feather", minimum=0)
        self.num_inference_steps = check_int(num_inference_steps, "num_inference_steps", minimum=1)
        self.guidance_scale = check_float(guidance_scale, "guidance_scale", minimum=0, optional=True)
        self.negative_prompt = negative_prompt
        self.call_kwargs = call_kwargs
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)

    def default_multiple(self) -> int:
        """The grid the context window snaps to: the VAE's scale factor."""
        return int(getattr(self.pipe, "vae_scale_factor", 8))

    def default_resolution(self) -> int:
        """What the pipeline generates when given no size: UNet sample size (SD: 64 latents = 512 px) or
        ``default_sample_size`` (Flux, SD3: 128 latents = 1024 px) times the VAE factor."""
        vae_scale = int(getattr(self.pipe, "vae_scale_factor", 8))
        unet = getattr(self.pipe, "unet", None)
        if unet is not None and isinstance(getattr(unet.config, "sample_size", None), int):
            return int(unet.config.sample_size) * vae_scale
        if isinstance(getattr(self.pipe, "default_sample_size", None), int):
            return int(self.pipe.default_sample_size) * vae_scale
        return 512

    def draw(self, image, box, prompt, generator=None, reference: Reference | None = None):
        """Crop a context window around the box, generate it, and return the box's patch."""
        crop = ContextCrop.around(image, box, resolution=self.resolution, multiple=self.multiple,
                                  context=self.context, square=self.square)
        if reference is None:
            return crop.box_patch(self.generate(crop, prompt, generator)), None
        return crop.box_patch(self.generate(crop, prompt, generator, reference=reference)), None

    def common_kwargs(self, generator) -> dict:
        """The pipeline call arguments every backend passes (steps, guidance, generator, extras)."""
        kw = dict(num_inference_steps=self.num_inference_steps, generator=generator, output_type="pil")
        if self.guidance_scale is not None:
            kw["guidance_scale"] = self.guidance_scale
        return {**kw, **self.call_kwargs}

    @abstractmethod
    def generate(self, crop: ContextCrop, prompt: str, generator=None) -> Image.Image:
        """Run the pipeline on ``crop.image`` / ``crop.mask``; return an image of ``crop.size``.

        A backend with ``accepts_reference`` also takes ``reference=`` (a ``Reference``)."""


def load_pipeline(cls, model_id: str, *, dtype=None, device=None, **kwargs):
    """``cls.from_pretrained`` with the dtype keyword this diffusers understands, then ``.to(device)``.

    diffusers >= 0.40 takes ``dtype=`` (``torch_dtype=`` is deprecated; passing both is an error);
    older releases only know ``torch_dtype=``.
    """
    import diffusers
    from packaging.version import Version

    if dtype is not None:
        if isinstance(dtype, str):
            import torch
            dtype = getattr(torch, dtype)
        key = "dtype" if Version(diffusers.__version__).release >= (0, 40) else "torch_dtype"
        kwargs[key] = dtype
    pipe = cls.from_pretrained(model_id, **kwargs)
    return pipe.to(device) if device is not None else pipe
