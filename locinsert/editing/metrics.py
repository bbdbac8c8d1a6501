"""Edit metrics: was the background kept, and does the box show the object?

- ``background_ssim(original, edited, box)``: scikit-image's full SSIM map, averaged over the area
  outside the box, minus a margin of ``win_size // 2`` around the box and the image border so that
  no SSIM window touches the box (or the padding). 1.0 means the background is untouched; an
  inpainter that keeps pixels outside the box byte-identical scores 1 up to float error.
- ``foreground_clip_score(image, box, text)``: cosine similarity of CLIP embeddings of the box crop
  and ``"a photo of a {text}"``, in [-1, 1] (torchmetrics' CLIPScore is ``max(100 * cos, 0)``).
  It uses transformers' ``CLIPModel`` forward outputs (``image_embeds`` / ``text_embeds``, already
  L2-normalised), which behave the same on transformers 4 and 5.
- ``reference_clip_similarity(image, box, reference)``: fidelity to a reference image (insert *this*
  object): cosine similarity of the CLIP image embeddings of the box crop and the reference (a
  cut-out composited onto white), in [-1, 1].
- ``reference_pixel_error(edited, box, reference, fit=)``: where the object is known exactly (the
  synthetic world's sprites), the mean absolute error in [0, 1] between the box and the reference
  drawn into it (``place_in_box``, as the reference backends place it), over the pixels the
  reference covers opaquely (its soft edge depends on the background as well).
  ``sprite_pixel_error(edited, box, cls)`` is that against the synthetic sprite of ``cls`` drawn
  at the box, the way the synthetic renderer draws it.
- ``masked_psnr(reference, result, mask)`` / ``masked_ssim(...)``: removal quality, measured only
  inside the object's mask against the scene without the object (the synthetic world renders it).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from ..boxes import check_box, pixel_box
from ..images import load_image

__all__ = ["background_ssim", "masked_psnr", "masked_ssim", "foreground_clip_score", "reference_clip_similarity",
           "reference_pixel_error", "sprite_pixel_error", "CLIPScorer", "DEFAULT_CLIP"]

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
TEMPLATE = "a photo of a {}"


def _pair(reference, result, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ..images import as_mask

    a, b = load_image(reference, "reference"), load_image(result, "result")
    if a.size != b.size:
        raise ValueError(f"reference is {a.width}x{a.height} but result is {b.width}x{b.height}")
    m = as_mask(mask, a.size)
    if not m.any():
        raise ValueError("mask is empty: there are no pixels to measure")
    return np.asarray(a, np.float64), np.asarray(b, np.float64), m


def masked_psnr(reference, result, mask) -> float:
    """PSNR (dB, 8-bit range) over the pixels of ``mask`` only; ``inf`` where they are identical.

    For removal: ``reference`` is the scene without the object, ``result`` the filled image.
    """
    a, b, m = _pair(reference, result, mask)
    mse = float(((a[m] - b[m]) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0 ** 2 / mse))


def masked_ssim(reference, result, mask, win_size: int = 7) -> float:
    """Mean of the SSIM map (``win_size`` windows, 8-bit range) over the pixels of ``mask``."""
    from skimage.metrics import structural_similarity

    a, b, m = _pair(reference, result, mask)
    if min(m.shape) < win_size:
        raise ValueError(f"image {m.shape[1]}x{m.shape[0]} is smaller than the SSIM window ({win_size})")
    _, ssim_map = structural_similarity(a.astype(np.uint8), b.astype(np.uint8), channel_axis=-1, data_range=255,
                                        win_size=win_size, full=True)
    return float(ssim_map.mean(axis=-1)[m].mean())


def background_ssim(original, edited, box, win_size: int = 7) -> float:
    """Mean SSIM outside ``box`` (xyxy pixels); ``ValueError`` if no background is left to measure."""
    from skimage.metrics import structural_similarity

    a, b = load_image(original, "original"), load_image(edited, "edited")
    if a.size != b.size:
        raise ValueError(f"original is {a.width}x{a.height} but edited is {b.width}x{b.height}")
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd number >= 3, got {win_size}")
    W, H = a.size
    if min(W, H) < win_size:
        raise ValueError(f"image {W}x{H} is smaller than the SSIM window ({win_size})")
    _, ssim_map = structural_similarity(np.asarray(a), np.asarray(b), channel_axis=-1, data_range=255,
                                        win_size=win_size, full=True)
    r = win_size // 2
    x1, y1, x2, y2 = pixel_box(check_box(box, W, H), W, H)
    keep = np.zeros((H, W), bool)
    keep[r:H - r, r:W - r] = True
    keep[max(0, y1 - r):y2 + r, max(0, x1 - r):x2 + r] = False
    if not keep.any():
        raise ValueError(f"box {[x1, y1, x2, y2]} leaves no background farther than {r} px from it "
                         f"in the {W}x{H} image")
    return float(ssim_map.mean(axis=-1)[keep].mean())


class CLIPScorer:
    """CLIP similarity of image crops and texts with a transformers ``CLIPModel`` + ``CLIPProcessor``."""

    def __init__(self, model, processor, template: str = TEMPLATE):
        self.model, self.processor, self.template = model.eval(), processor, template

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_CLIP, *, device=None, dtype=None, **kwargs) -> "CLIPScorer":
        """Load a transformers ``CLIPModel`` and ``CLIPProcessor`` (a hub id or a folder)."""
        from transformers import CLIPModel, CLIPProcessor

        model = CLIPModel.from_pretrained(model_id, **({"dtype": dtype} if dtype is not None else {}))
        if device is not None:
            model = model.to(device)
        return cls(model, CLIPProcessor.from_pretrained(model_id), **kwargs)

    def similarity(self, images: list[Image.Image], texts: list[str]):
        """(len(images), len(texts)) cosine similarities."""
        import torch

        inputs = self.processor(text=[self.template.format(t) for t in texts], images=images, return_tensors="pt",
                                padding=True, truncation=True)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(**{k: v.to(device) for k, v in inputs.items()})
        return (out.image_embeds.float() @ out.text_embeds.float().T).cpu()

    def image_embeds(self, images: list[Image.Image]):
        """(len(images), dim) L2-normalised CLIP image embeddings."""
        import torch

        inputs = self.processor(images=images, return_tensors="pt")
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model.vision_model(pixel_values=inputs["pixel_values"].to(device))
            f = self.model.visual_projection(out.pooler_output).float()
        return (f / f.norm(dim=-1, keepdim=True)).cpu()

    def image_similarity(self, image, box, reference) -> float:
        """Cosine similarity of the CLIP embeddings of the crop of ``box`` and the reference image."""
        from ..inpainting.reference import as_reference

        ref = as_reference(reference)
        img = load_image(image)
        crop = img.crop(pixel_box(check_box(box, *img.size), *img.size))
        e = self.image_embeds([crop, ref.rgb() if ref.has_alpha else ref.image.convert("RGB")])
        return float(e[0] @ e[1])

    def __call__(self, image, box, text: str) -> float:
        """Cosine similarity of the crop of ``box`` and ``text``."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is empty: name the object the box should show")
        img = load_image(image)
        crop = img.crop(pixel_box(check_box(box, *img.size), *img.size))
        return float(self.similarity([crop], [text.strip()])[0, 0])


@functools.lru_cache(maxsize=2)
def _scorer(model_id: str) -> CLIPScorer:
    return CLIPScorer.from_pretrained(model_id)


def _as_scorer(model, processor) -> CLIPScorer:
    if isinstance(model, CLIPScorer):
        return model
    if model is None or isinstance(model, str):
        return _scorer(model or DEFAULT_CLIP)
    if processor is None:
        raise ValueError("pass the CLIPProcessor that goes with the CLIPModel (processor=...)")
    return CLIPScorer(model, processor)


def reference_clip_similarity(image, box, reference, model=None, processor=None) -> float:
    """CLIP image-image cosine similarity of the box crop and ``reference`` (fidelity to *this* object).

    ``model`` / ``processor`` as in ``foreground_clip_score``.
    """
    return _as_scorer(model, processor).image_similarity(image, box, reference)


def reference_pixel_error(edited, box, reference, fit: str = "contain") -> float:
    """Mean |edited - reference drawn into the box| / 255 over the pixels the reference covers opaquely.

    The reference is placed in ``pixel_box(box)`` by ``place_in_box(..., fit)`` (``"contain"``: as the
    reference backends place it by default; ``"stretch"``: filling the box). 0 means the object is
    reproduced exactly.
    """
    from ..inpainting.reference import as_reference

    img = load_image(edited, "edited")
    x1, y1, x2, y2 = pixel_box(check_box(box, *img.size), *img.size)
    rgb, alpha = as_reference(reference).placed((x2 - x1, y2 - y1), fit)
    return _covered_error(np.asarray(img)[y1:y2, x1:x2], np.asarray(rgb), alpha)


def sprite_pixel_error(edited, box, cls: str) -> float:
    """Like ``reference_pixel_error``, against the synthetic sprite of ``cls`` drawn at the pixel box
    exactly as the synthetic renderer draws it (``sprite(cls, box size)``, untrimmed, filling the box)."""
    from ..data.synthetic import sprite

    img = load_image(edited, "edited")
    x1, y1, x2, y2 = pixel_box(check_box(box, *img.size), *img.size)
    s = np.asarray(sprite(cls, (x2 - x1, y2 - y1)), np.float32)
    return _covered_error(np.asarray(img)[y1:y2, x1:x2], s[..., :3], s[..., 3] / 255.0)


def _covered_error(crop: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> float:
    # Only opaque pixels: at the object's soft edge the right answer depends on the background too.
    covered = alpha >= 254.5 / 255
    if not covered.any():
        raise ValueError(f"the reference covers no pixel of the {crop.shape[1]}x{crop.shape[0]} box opaquely")
    return float(np.abs(crop.astype(np.float32) - rgb.astype(np.float32))[covered].mean() / 255.0)


def foreground_clip_score(image, box, text: str, model=None, processor=None) -> float:
    """CLIP cosine similarity of the box crop and ``"a photo of a {text}"``.

    ``model`` may be a ``CLIPModel`` (then ``processor`` is required), a ``CLIPScorer``, a model id
    or path, or ``None`` for ``openai/clip-vit-base-patch32`` (needs the hub or a warm cache).
    """
    return _as_scorer(model, processor)(image, box, text)
