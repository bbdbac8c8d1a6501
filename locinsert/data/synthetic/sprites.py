"""Class sprites of the synthetic world: RGBA cut-outs of each class, and pasting one into an image.

Flat, distinct colours, drawn at 4x and downsampled so the alpha channel has soft edges.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from .oracle import check_class

__all__ = ["sprite", "paste_sprite"]


def _sprite_cup(d: ImageDraw.ImageDraw, W: int, H: int) -> None:
    d.ellipse([0.55 * W, 0.25 * H, 0.98 * W, 0.7 * H], outline=(200, 40, 40, 255), width=max(1, int(0.08 * W)))
    d.rounded_rectangle([0.05 * W, 0.15 * H, 0.75 * W, 0.98 * H], radius=0.1 * W, fill=(220, 50, 50, 255))
    d.rectangle([0.05 * W, 0.15 * H, 0.75 * W, 0.25 * H], fill=(245, 235, 225, 255))


def _sprite_chair(d: ImageDraw.ImageDraw, W: int, H: int) -> None:
    wood = (120, 70, 35, 255)
    d.rectangle([0.1 * W, 0.0, 0.3 * W, 0.6 * H], fill=wood)                 # back post
    d.rectangle([0.1 * W, 0.05 * H, 0.9 * W, 0.3 * H], fill=(160, 95, 50, 255))  # backrest
    d.rectangle([0.05 * W, 0.52 * H, 0.95 * W, 0.62 * H], fill=wood)        # seat
    d.rectangle([0.08 * W, 0.6 * H, 0.22 * W, H], fill=wood)                # legs
    d.rectangle([0.78 * W, 0.6 * H, 0.92 * W, H], fill=wood)


def _sprite_plant(d: ImageDraw.ImageDraw, W: int, H: int) -> None:
    d.polygon([(0.2 * W, 0.65 * H), (0.8 * W, 0.65 * H), (0.7 * W, H), (0.3 * W, H)], fill=(190, 90, 50, 255))
    for box in ([0.1, 0.0, 0.6, 0.45], [0.4, 0.05, 0.9, 0.5], [0.15, 0.3, 0.85, 0.7]):
        d.ellipse([box[0] * W, box[1] * H, box[2] * W, box[3] * H], fill=(40, 150, 60, 255))


def _sprite_painting(d: ImageDraw.ImageDraw, W: int, H: int) -> None:
    d.rectangle([0, 0, W, H], fill=(200, 160, 40, 255))                    # gilt frame
    d.rectangle([0.12 * W, 0.12 * H, 0.88 * W, 0.88 * H], fill=(130, 190, 235, 255))
    d.polygon([(0.12 * W, 0.88 * H), (0.5 * W, 0.45 * H), (0.88 * W, 0.88 * H)], fill=(60, 140, 70, 255))


def _sprite_bird(d: ImageDraw.ImageDraw, W: int, H: int) -> None:
    ink = (35, 35, 45, 255)
    d.polygon([(0.0, 0.2 * H), (0.5 * W, 0.55 * H), (0.35 * W, 0.7 * H)], fill=ink)   # left wing
    d.polygon([(W, 0.0), (0.5 * W, 0.55 * H), (0.65 * W, 0.7 * H)], fill=ink)         # right wing
    d.ellipse([0.3 * W, 0.5 * H, 0.75 * W, 0.95 * H], fill=ink)                       # body
    d.polygon([(0.72 * W, 0.65 * H), (0.85 * W, 0.72 * H), (0.72 * W, 0.8 * H)], fill=(240, 170, 30, 255))


_SPRITES = {"cup": _sprite_cup, "chair": _sprite_chair, "plant": _sprite_plant,
            "painting": _sprite_painting, "bird": _sprite_bird}


def sprite(cls: str, size: tuple[int, int] = (32, 32)) -> Image.Image:
    """A cut-out of ``cls`` as an RGBA image of ``size = (w, h)``, transparent around the object.

    Drawn at 4x and downsampled, so the alpha channel has soft, real edges.
    """
    rule = check_class(cls)
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise TypeError(f"size must be a (width, height) pair of ints, got {size!r}") from None
    if w < 1 or h < 1:
        raise ValueError(f"sprite size must be at least 1x1, got {w}x{h}")
    W, H = 4 * w, 4 * h
    img = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    _SPRITES[rule.name](ImageDraw.Draw(img), W, H)
    return img.resize((w, h), Image.LANCZOS)


def paste_sprite(image, cls: str, box) -> Image.Image:
    """``image`` with the sprite of ``cls`` alpha-composited into the pixel ``box`` (a picture of a placement)."""
    from ...images import load_image
    out = load_image(image).copy()
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {list(box)} is degenerate: need x2 > x1 and y2 > y1")
    cut = sprite(cls, (x2 - x1, y2 - y1))
    out.paste(cut, (x1, y1), cut)
    return out
