"""Pictures of the synthetic world: labelled figures, and the scene images of :mod:`.scenes` (class
sprites: :mod:`.sprites`).

Flat, distinct colours on purpose: the model that learns this world is tiny and sees 64 px.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# The scene's own painter lives with its geometry (scenes.py); re-exported here, with its colours.
from .scenes import CRATE_COLOR as CRATE, CRATE_EDGE_COLOR as CRATE_EDGE, FRAME_COLOR as FRAME  # noqa: F401
from .scenes import SKY_COLOR as SKY, TABLE_LEG_COLOR as TABLE_LEG, TABLE_TOP_COLOR as TABLE_TOP  # noqa: F401
from .scenes import VASE_COLOR as VASE, paint, render  # noqa: F401

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
        from ...io import save_figure

        save_figure(fig, path, dpi=dpi)
    return fig
