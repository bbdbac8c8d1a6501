"""Random regions for training a region-conditioned location model (``modeling/region_prefix.py``).

A box is trained on with a region only if the box could have been asked for with it: every region
drawn here contains the box's centre (the rule phrases follow, ``Region.parse``'s "center" mode).
Half of the regions are the rectangles of the supported phrases ("on the left", "near the top", the
corners, the centre), so the phrases users type are seen often; the other half are random
rectangles, so any rectangle a user passes is in distribution. The draw is a function of
``(seed, example index)`` only: reference log-probs computed once for DPO see the same regions as
the trained policy, whatever order the examples come in.
"""

from __future__ import annotations

import numpy as np
import torch

from ..modeling.region_prefix import WHOLE_IMAGE
from ..regions import PHRASE_RECTS

_PHRASES = np.asarray(PHRASE_RECTS, dtype=np.float64)
MIN_SIDE = 0.2  # the smallest random rectangle, as a fraction of the image side


def region_around(cx: float, cy: float, rng: np.random.Generator, phrase_share: float = 0.5) -> tuple:
    """A normalised rectangle that contains the point ``(cx, cy)`` (fractions of the image)."""
    if rng.random() < phrase_share:
        inside = _PHRASES[(_PHRASES[:, 0] <= cx) & (cx <= _PHRASES[:, 2]) & (_PHRASES[:, 1] <= cy) & (cy <= _PHRASES[:, 3])]
        if len(inside):
            return tuple(float(v) for v in inside[rng.integers(len(inside))])
    w, h = rng.uniform(MIN_SIDE, 1.0, size=2)
    x1 = rng.uniform(max(0.0, cx - w), min(cx, 1.0 - w))
    y1 = rng.uniform(max(0.0, cy - h), min(cy, 1.0 - h))
    return (float(x1), float(y1), float(x1 + w), float(y1 + h))


def training_regions(boxes: torch.Tensor, width: float, height: float, region_prob: float, seed: int,
                     index: int) -> torch.Tensor:
    """(k, 4) normalised regions for the k pixel ``boxes`` of training example ``index``.

    Each box gets, with probability ``region_prob``, a random region around its centre
    (:func:`region_around`), otherwise the whole image (no region).
    """
    rng = np.random.default_rng((int(seed), int(index)))
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        if rng.random() < region_prob:
            out.append(region_around((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, rng))
        else:
            out.append(WHOLE_IMAGE)
    return torch.tensor(out, dtype=torch.float32)
