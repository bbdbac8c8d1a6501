"""Placement heatmaps: where the location model thinks an object can go, as a (H, W) map.

``placement_heatmap(model, image, cls, region=...)`` (also ``LocationModel.heatmap``) samples boxes
from p(box | image, class, region) and turns them into a density over the image's pixels with
``boxes_heatmap``:

- ``kind="center"`` (default): a kernel density estimate of the **box centre**. Each sampled centre
  spreads a Gaussian (``bandwidth`` pixels, default 6 % of the short side, at least one coordinate
  bin) that is renormalised within the image, so every sample carries exactly ``1 / N`` of the mass
  and nothing leaks past the border.
- ``kind="cover"``: the probability that a pixel lies **inside** the object's box, renormalised
  to sum 1 (a pixel counts when its centre is inside a box).

``heatmap_overlay(image, heat)`` draws a map over its image for people.
"""

from __future__ import annotations


import numpy as np
import torch
from PIL import Image

from ..boxes import as_boxes
from ..images import load_image
from ..validation import check_float, check_positive_int, check_probability

__all__ = ["HEATMAP_KINDS", "boxes_heatmap", "placement_heatmap", "heatmap_overlay", "default_bandwidth"]

HEATMAP_KINDS = ("center", "cover")

#: Default kernel width as a fraction of the image's short side (see ``default_bandwidth``).
BANDWIDTH_FRACTION = 0.06


def default_bandwidth(width: int, height: int, num_bins: int | None = None) -> float:
    """6 % of the short side, and at least one coordinate bin so quantised centres never show as dots."""
    h = BANDWIDTH_FRACTION * min(width, height)
    if num_bins:
        h = max(h, max(width, height) / num_bins)
    return max(h, 0.5)


def _gaussian_rows(centres: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """(N, size): a Gaussian per centre over pixel centres 0.5 .. size - 0.5, each row summing to 1."""
    grid = torch.arange(size, dtype=torch.float64) + 0.5
    g = torch.exp(-0.5 * ((grid[None] - centres.double()[:, None]) / sigma) ** 2)
    # A centre far outside (impossible for checked boxes) would underflow to an all-zero row.
    return g / g.sum(1, keepdim=True).clamp(min=1e-300)


def _inside_rows(lo: torch.Tensor, hi: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size): 1 where the pixel centre lies in [lo, hi), at least the pixel holding the box centre."""
    grid = torch.arange(size, dtype=torch.float64) + 0.5
    rows = ((grid[None] >= lo.double()[:, None]) & (grid[None] < hi.double()[:, None])).double()
    mid = ((lo + hi) / 2).floor().long().clamp(0, size - 1)
    rows[torch.arange(len(rows)), mid] = 1.0   # a box thinner than a pixel still covers one
    return rows


def boxes_heatmap(boxes, width: int, height: int, *, kind: str = "center", bandwidth: float | None = None,
                  weights=None) -> torch.Tensor:
    """A (height, width) float32 map summing to 1 from xyxy pixel ``boxes`` (see the module docstring).

    ``weights`` (N,) optionally weighs the boxes (e.g. importance weights); they are normalised.
    ``bandwidth`` smooths ``kind="center"`` (Gaussian sigma in pixels; default
    ``default_bandwidth``) and, when given, ``kind="cover"`` too (default: no smoothing).
    Both kernels are separable, so the map is one (H, N) x (N, W) product: O(N (H + W) + H W N).
    """
    if kind not in HEATMAP_KINDS:
        raise ValueError(f"kind must be one of {HEATMAP_KINDS}, got {kind!r}")
    if isinstance(width, bool) or isinstance(height, bool) or int(width) != width or int(height) != height \
            or width < 1 or height < 1:
        raise ValueError(f"width and height must be positive integers, got {width!r} x {height!r}")
    width, height = int(width), int(height)
    b = as_boxes(boxes)
    if len(b) == 0:
        raise ValueError("no boxes to make a heatmap from")
    bandwidth = check_float(bandwidth, "bandwidth (pixels)", minimum=0, low_open=True, optional=True)
    if weights is None:
        w = torch.full((len(b),), 1.0 / len(b), dtype=torch.float64)
    else:
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if w.shape[0] != len(b) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {len(b)} finite non-negative numbers with a positive sum")
        w = w / w.sum()
    if kind == "center":
        sigma = bandwidth or default_bandwidth(width, height)
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        rows_x, rows_y = _gaussian_rows(cx, width, sigma), _gaussian_rows(cy, height, sigma)
    else:
        rows_x = _inside_rows(b[:, 0], b[:, 2], width)
        rows_y = _inside_rows(b[:, 1], b[:, 3], height)
        if bandwidth:
            rows_x, rows_y = _smooth(rows_x, bandwidth), _smooth(rows_y, bandwidth)
    heat = (rows_y.T * w[None]) @ rows_x
    return (heat / heat.sum()).float()


def _smooth(rows: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each row with a Gaussian whose every column is renormalised within the image."""
    size = rows.shape[1]
    kernel = _gaussian_rows(torch.arange(size, dtype=torch.float64) + 0.5, size, sigma)  # (size, size)
    return rows @ kernel


@torch.no_grad()
def placement_heatmap(model, image, cls: str, region=None, num_samples: int = 256, generator=None, *,
                      kind: str = "center", bandwidth: float | None = None, **sample_kwargs) -> torch.Tensor:
    """Where ``model`` would place ``cls`` in ``image``: a (H, W) density summing to 1 (see the module).

    Samples ``num_samples`` boxes with ``model.sample(image, cls, region=region, ...)`` (extra
    keywords such as ``temperature`` or ``min_size`` go there) and smooths them with
    ``boxes_heatmap``; under a region, every sample and so all of the mass obeys it.
    ``bandwidth`` defaults to ``default_bandwidth`` of the image and the model's bins.
    """
    img = load_image(image)
    num_samples = check_positive_int(num_samples, "num_samples")
    s = model.sample(img, cls, num_samples=num_samples, region=region, generator=generator, **sample_kwargs)
    if kind == "center" and bandwidth is None:
        bandwidth = default_bandwidth(img.width, img.height, getattr(getattr(model, "config", None), "num_bins", None))
    return boxes_heatmap(s.boxes.cpu(), img.width, img.height, kind=kind, bandwidth=bandwidth)


def heatmap_overlay(image, heat, *, alpha: float = 0.65, cmap: str = "inferno") -> Image.Image:
    """``image`` with ``heat`` (H, W) drawn over it: colour and opacity grow with the density.

    The map is scaled by its maximum, so the likeliest place is fully coloured (at ``alpha``) and
    places the model never proposes show the image untouched. Returns an RGB PIL image.
    """
    from matplotlib import colormaps

    img = load_image(image)
    h = torch.as_tensor(heat, dtype=torch.float32)
    if h.ndim != 2 or tuple(h.shape) != (img.height, img.width):
        raise ValueError(f"heat must have the image's shape ({img.height}, {img.width}), got {tuple(h.shape)}")
    if not torch.isfinite(h).all() or (h < 0).any():
        raise ValueError("heat must be finite and non-negative")
    alpha = check_probability(alpha, "alpha")
    v = (h / h.max()).numpy() if h.max() > 0 else np.zeros(h.shape, np.float32)
    colour = colormaps[cmap](v)[..., :3]
    a = (alpha * np.sqrt(v))[..., None]   # sqrt: the tails stay visible next to a sharp peak
    base = np.asarray(img, dtype=np.float32) / 255.0
    out = base * (1 - a) + colour * a
    return Image.fromarray((out * 255).round().clip(0, 255).astype(np.uint8), "RGB")
