"""Metrics only a world with a ground truth can measure: oracle precision and coverage.

``sampled_boxes`` is one entry per query: an (N, 4) tensor/array of xyxy pixel boxes, or anything
with a ``.boxes`` attribute (a ``BoxSamples``). The query's scene comes from ``meta["scene"]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...boxes import box_iou
from ..query import PlacementQuery
from .oracle import dense_positives, is_plausible


def _boxes_of(x, i: int) -> torch.Tensor:
    b = getattr(x, "boxes", x)
    b = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b, dtype=torch.float32)
    if b.numel() == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"sampled_boxes[{i}] must have shape (N, 4) (xyxy pixels), got {tuple(b.shape)}")
    return b


def _pairs(queries: Sequence[PlacementQuery], sampled_boxes: Sequence):
    if len(queries) != len(sampled_boxes):
        raise ValueError(f"got {len(queries)} queries but {len(sampled_boxes)} sets of sampled boxes")
    for i, (q, s) in enumerate(zip(queries, sampled_boxes)):
        scene = q.meta.get("scene") if isinstance(q.meta, dict) else None
        if scene is None:
            raise ValueError(f"query {q.query_id or i} has no meta['scene']: oracle metrics need synthetic queries")
        yield q, scene, _boxes_of(s, i)


def oracle_precision(queries: Sequence[PlacementQuery], sampled_boxes: Sequence,
                     per_class: bool = False) -> float | dict[str, float]:
    """Share of all sampled boxes that are truly plausible, pooled over queries (NaN if none).

    ``per_class=True`` returns ``{class: precision}`` plus ``"all"``.
    """
    hit: dict[str, int] = {}
    tot: dict[str, int] = {}
    for q, scene, b in _pairs(queries, sampled_boxes):
        ok = int(is_plausible(scene, q.category, b).sum()) if len(b) else 0
        hit[q.category] = hit.get(q.category, 0) + ok
        tot[q.category] = tot.get(q.category, 0) + len(b)
    share = lambda h, t: h / t if t else float("nan")  # noqa: E731
    overall = share(sum(hit.values()), sum(tot.values()))
    if not per_class:
        return overall
    return {**{c: share(hit[c], tot[c]) for c in sorted(tot)}, "all": overall}


def coverage(queries: Sequence[PlacementQuery], sampled_boxes: Sequence, iou: float = 0.5,
             num_bins: int = 32, per_class: bool = False) -> float | dict[str, float]:
    """Mean over queries of the share of the dense set of true placements (``dense_positives``)
    that at least one sample hits with IoU > ``iou``. A diverse, accurate sampler scores high; one
    that repeats a single good box scores low. Queries without any true placement are left out.
    """
    if not 0.0 <= iou < 1.0:
        raise ValueError(f"iou must be in [0, 1), got {iou}")
    shares: dict[str, list[float]] = {}
    for q, scene, b in _pairs(queries, sampled_boxes):
        dense = dense_positives(scene, q.category, num_bins)
        if len(dense) == 0:
            continue
        hit = (box_iou(dense, b) > iou).any(1).float().mean().item() if len(b) else 0.0
        shares.setdefault(q.category, []).append(hit)
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    overall = mean([s for v in shares.values() for s in v])
    if not per_class:
        return overall
    return {**{c: mean(shares[c]) for c in sorted(shares)}, "all": overall}
