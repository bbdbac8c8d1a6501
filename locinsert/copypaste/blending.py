"""How a cut-out meets the image: hard paste, feathered alpha, or Lab colour harmonisation.

- ``"hard"``: the mask (alpha > 0.5) replaces the pixels: sharp edges, the pasted object's own colours;
- ``"feather"``: the mask's edge is smoothed with a Gaussian (Simple Copy-Paste smooths its alpha
  the same way), so the object fades into its surroundings over a pixel or two;
- ``"harmonize"``: first the object's colours are moved towards its surroundings in CIE Lab (per
  channel, mean and spread of the object matched part-way to those of a ring of pixels around the
  box; Reinhard et al.'s colour transfer), then feathered.

The label of a pasted object is always its hard mask (alpha > 0.5), whatever the blending.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["BLENDS", "blend", "resize_cutout"]

BLENDS = ("hard", "feather", "harmonize")


def resize_cutout(rgba: np.ndarray, width: int, height: int) -> np.ndarray:
    """An (h, w, 4) uint8 cut-out resized to ``width`` x ``height`` (bilinear, alpha too)."""
    return np.asarray(Image.fromarray(rgba, "RGBA").resize((max(1, width), max(1, height)), Image.BILINEAR))


def _feather(alpha: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    hard = (alpha > 0.5).astype(np.float32)
    if sigma <= 0:
        return hard
    # pad so the blur can fade outwards past the cut-out's own frame
    pad = int(np.ceil(2 * sigma))
    soft = gaussian_filter(np.pad(hard, pad), sigma)[pad:-pad, pad:-pad]
    return np.minimum(soft, 1.0) * (soft > 0.02)


def _harmonize(obj: np.ndarray, mask: np.ndarray, ring: np.ndarray, strength: float) -> np.ndarray:
    from skimage.color import lab2rgb, rgb2lab

    if mask.sum() < 4 or len(ring) < 4:
        return obj
    lab = rgb2lab(obj.astype(np.float64) / 255.0)
    ring_lab = rgb2lab(ring.reshape(-1, 1, 3).astype(np.float64) / 255.0).reshape(-1, 3)
    inside = lab[mask]
    mu_o, sd_o = inside.mean(0), inside.std(0) + 1e-6
    mu_r, sd_r = ring_lab.mean(0), ring_lab.std(0) + 1e-6
    # only part-way, and the spread never shrinks below half: a full transfer washes objects out
    mu_t = mu_o + strength * (mu_r - mu_o)
    sd_t = sd_o * np.clip((sd_r / sd_o) ** strength, 0.5, 2.0)
    lab = (lab - mu_o) / sd_o * sd_t + mu_t
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    return np.clip(lab2rgb(lab) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def blend(image: np.ndarray, cutout: np.ndarray, box: tuple[int, int, int, int], mode: str = "feather",
          sigma: float = 1.0, strength: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Paste an RGBA ``cutout`` (already at the box's size) into ``image`` at ``box``.

    Args:
        image: (H, W, 3) uint8, not modified.
        cutout: (h, w, 4) uint8 with h, w the box's height and width.
        box: integer xyxy pixels; the parts outside the image are cut off.
        mode: one of :data:`BLENDS`.
        sigma: the feathering Gaussian's standard deviation in pixels.
        strength: how far harmonisation moves the colour statistics (0: not at all, 1: all the way).

    Returns:
        The new image (H, W, 3) uint8, and the pasted object's hard mask (H, W) bool.
    """
    if mode not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {mode!r}")
    H, W = image.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box)
    if cutout.shape[:2] != (y2 - y1, x2 - x1):
        raise ValueError(f"cut-out is {cutout.shape[1]}x{cutout.shape[0]} but the box is {x2 - x1}x{y2 - y1}")
    # the visible part of the box
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
    out, mask = image.copy(), np.zeros((H, W), bool)
    if cx2 <= cx1 or cy2 <= cy1:
        return out, mask
    crop = cutout[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]
    rgb, alpha = crop[..., :3], crop[..., 3].astype(np.float32) / 255.0
    hard = alpha > 0.5
    mask[cy1:cy2, cx1:cx2] = hard
    if mode == "harmonize":
        r = max(2, int(round(0.25 * max(cx2 - cx1, cy2 - cy1))))
        outer = np.zeros((H, W), bool)
        outer[max(cy1 - r, 0):cy2 + r, max(cx1 - r, 0):cx2 + r] = True
        outer[cy1:cy2, cx1:cx2] = False
        rgb = _harmonize(rgb, hard, image[outer], strength)
    if mode == "hard":
        a = hard.astype(np.float32)
    else:
        a = _feather(alpha, sigma)
        if hard.any() and not hard.all():
            # the feathered edge reaches past the mask, where a cut-out's colour means nothing:
            # give those pixels the colour of the nearest object pixel
            from scipy.ndimage import distance_transform_edt

            _, (iy, ix) = distance_transform_edt(~hard, return_indices=True)
            rgb = rgb[iy, ix]
    region = out[cy1:cy2, cx1:cx2].astype(np.float32)
    out[cy1:cy2, cx1:cx2] = np.clip(a[..., None] * rgb + (1 - a[..., None]) * region + 0.5, 0, 255).astype(np.uint8)
    return out, mask
