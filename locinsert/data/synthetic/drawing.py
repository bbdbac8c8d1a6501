"""Pictures of the synthetic world: scene images, class sprites and labelled figures.

Flat, distinct colours on purpose: the model that learns this world is tiny and sees 64 px.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .oracle import check_class
from .scenes import Scene

SKY = (120, 180, 240)
FRAME = (250, 250, 250)
TABLE_TOP = (238, 140, 30)
TABLE_LEG = (80, 45, 20)
CRATE = (90, 130, 95)
CRATE_EDGE = (40, 60, 45)
VASE = (150, 60, 170)


def _fill(img: np.ndarray, box, value) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    img[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = value


def paint(scene: Scene, out: np.ndarray, value) -> np.ndarray:
    """Paint every part of ``scene`` into ``out`` (S, S, ...) with ``value(part, index)``, back to front.

    The one place that knows the scene's geometry: :func:`render` paints colours with it and
    :mod:`.labels` paints part labels and instance ids, so pictures and label maps agree pixel for pixel.
    Parts: ``wall``, ``floor``, ``window_frame``, ``glass``, ``crate_edge``, ``crate``, ``table_leg``,
    ``table_top``, ``vase``; ``index`` is the thing's row in its ``Scene`` array (0 for wall and floor).
    """
    S, hz = scene.size, int(scene.horizon)
    out[:hz] = value("wall", 0)
    out[hz:] = value("floor", 0)
    for i, w in enumerate(scene.windows):
        _fill(out, w, value("window_frame", i))
        _fill(out, (w[0] + 1, w[1] + 1, w[2] - 1, w[3] - 1), value("glass", i))
    floor_things = [("crate", i, c) for i, c in enumerate(scene.crates)] + \
                   [("table", i, t) for i, t in enumerate(scene.tables)]
    for kind, i, b in sorted(floor_things, key=lambda t: t[2][3]):  # far (higher up) first
        if kind == "crate":
            _fill(out, b, value("crate_edge", i))
            _fill(out, (b[0] + 1, b[1] + 1, b[2] - 1, b[3] - 1), value("crate", i))
        else:
            d = scene.table_tops[i]
            leg = max(1, int(round(0.05 * S * scene.scale_at(b[3]))))
            _fill(out, (b[0] + 1, b[1] + d, b[0] + 1 + leg, b[3]), value("table_leg", i))
            _fill(out, (b[2] - 1 - leg, b[1] + d, b[2] - 1, b[3]), value("table_leg", i))
            _fill(out, (b[0], b[1], b[2], b[1] + d), value("table_top", i))
    for i, v in enumerate(scene.vases):
        _fill(out, v, value("vase", i))
    return out


def render(scene: Scene) -> np.ndarray:
    """The scene as an (S, S, 3) uint8 image: wall, floor, windows, crates, tables (back to front), vases."""
    colors = {"wall": scene.wall_color, "floor": scene.floor_color, "window_frame": FRAME, "glass": SKY,
              "crate_edge": CRATE_EDGE, "crate": CRATE, "table_leg": TABLE_LEG, "table_top": TABLE_TOP,
              "vase": VASE}
    return paint(scene, np.empty((scene.size, scene.size, 3), dtype=np.uint8), lambda part, i: colors[part])


# -- sprites ---------------------------------------------------------------------------------------

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


# -- figures ---------------------------------------------------------------------------------------

def plot_scenes(queries: Sequence, samples: Sequence | None = None, ncols: int = 4, path=None,
                max_queries: int = 8, show_negatives: bool = True, dpi: int = 100):
    """A grid of query images with positives (green), negatives (red, dashed) and optional samples (yellow).

    ``samples``: one (N, 4) box set (or ``BoxSamples``) per query. Saves to ``path`` if given and
    returns the matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    queries = list(queries)[:max_queries]
    if not queries:
        raise ValueError("plot_scenes needs at least one query")
    if samples is not None and len(samples) < len(queries):
        raise ValueError(f"got {len(samples)} sample sets for {len(queries)} queries")
    ncols = max(1, min(ncols, len(queries)))
    nrows = (len(queries) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3.2 * nrows), squeeze=False)

    def draw(ax, boxes, color, style, lw):
        for b in np.asarray(getattr(boxes, "boxes", boxes), dtype=np.float64).reshape(-1, 4):
            ax.add_patch(Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False,
                                   edgecolor=color, linestyle=style, linewidth=lw))

    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(queries):
            continue
        q = queries[i]
        ax.imshow(np.asarray(q.image), interpolation="nearest")
        if samples is not None:
            draw(ax, samples[i], "yellow", "-", 0.8)
        if show_negatives:
            draw(ax, q.negatives, "red", "--", 1.2)
        draw(ax, q.positives, "lime", "-", 1.6)
        ax.set_title(f"{q.category}: {len(q.positives)} pos, {len(q.negatives)} neg", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
