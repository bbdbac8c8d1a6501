"""The page's pictures: numbered candidate boxes, the heatmap, the region, enlarged for small images.

Small images (the synthetic world's 64 px scenes) are shown enlarged by a whole ``scale`` with
nearest-neighbour pixels, so the boxes are drawn crisp; a click at pixel (x, y) of the enlarged
picture is (x / scale, y / scale) in the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ..modeling.heatmap import heatmap_overlay
from ..regions import as_region

__all__ = ["display_scale", "enlarge", "candidates_figure", "heatmap_figure"]

#: Pictures are enlarged until their long side reaches about this many pixels.
DISPLAY_SIDE = 512
CANDIDATE = (255, 214, 0)
CHOSEN = (235, 40, 40)
REGION = (255, 255, 255)


def display_scale(width: int, height: int, side: int = DISPLAY_SIDE) -> int:
    return max(1, side // max(width, height))


def enlarge(image: Image.Image, scale: int) -> Image.Image:
    return image if scale == 1 else image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _region_outline(draw: ImageDraw.ImageDraw, region, width: int, height: int, scale: int, lw: int) -> None:
    """The allowed area as a dashed white rectangle (the boxes' centres must lie in it)."""
    region = as_region(region)
    if region is None or (region.rect is None and region.mask is None):
        return
    x1, y1, x2, y2 = (v * scale for v in region.resolve(width, height).bounds())
    x2, y2 = x2 - 1, y2 - 1
    dash = 6 * lw
    for a, b, fixed, horizontal in ((x1, x2, y1, True), (x1, x2, y2, True), (y1, y2, x1, False), (y1, y2, x2, False)):
        t = a
        while t < b:
            e = min(t + dash, b)
            xy = [t, fixed, e, fixed] if horizontal else [fixed, t, fixed, e]
            draw.line(xy, fill=REGION + (230,), width=lw)
            t += 2 * dash


def candidates_figure(image: Image.Image, boxes: torch.Tensor, selected: int | None = None, *, region=None,
                      scale: int = 1, done_boxes: torch.Tensor | None = None) -> Image.Image:
    """``image`` enlarged by ``scale`` with candidate ``boxes`` numbered 1.. (best first) and the
    ``selected`` one in thick red; ``done_boxes`` (earlier steps) in thin red."""
    img = enlarge(image.convert("RGB"), scale)
    draw = ImageDraw.Draw(img, "RGBA")
    lw = max(2, round(min(img.size) / 200))
    font = _font(max(11, round(min(img.size) / 28)))
    _region_outline(draw, region, image.width, image.height, scale, max(1, lw // 2))
    if done_boxes is not None:
        for b in (done_boxes * scale).tolist():
            draw.rectangle(b, outline=CHOSEN + (160,), width=max(1, lw // 2))
    order = list(range(len(boxes)))
    if selected is not None:   # the selected box is drawn last, on top
        order.remove(selected)
        order.append(selected)
    for i in order:
        x1, y1, x2, y2 = (float(v) * scale for v in boxes[i])
        sel = i == selected
        colour = CHOSEN if sel else CANDIDATE
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=colour + (255 if sel else 210,), width=2 * lw if sel else lw)
        tag = str(i + 1)
        tx, ty = x1 + lw, y1 + lw
        l, t, r, b = draw.textbbox((tx, ty), tag, font=font)
        draw.rectangle([l - 2, t - 1, r + 2, b + 1], fill=colour + (235,))
        draw.text((tx, ty), tag, fill=(255, 255, 255) if sel else (20, 20, 20), font=font)
    return img


def heatmap_figure(image: Image.Image, heat: torch.Tensor, *, region=None, scale: int = 1) -> Image.Image:
    """The heatmap over ``image``, both enlarged by ``scale`` (the map smoothly, the image crisply)."""
    big = enlarge(image.convert("RGB"), scale)
    h = torch.as_tensor(heat, dtype=torch.float32)
    if scale > 1:
        h = F.interpolate(h[None, None], size=(big.height, big.width), mode="bilinear", align_corners=False)[0, 0]
    out = heatmap_overlay(big, h.clamp(min=0))
    draw = ImageDraw.Draw(out, "RGBA")
    _region_outline(draw, region, image.width, image.height, scale, max(1, round(min(out.size) / 400)))
    return out
