"""Metrics only a world with a ground truth can measure: oracle precision and coverage.

``sampled_boxes`` is one entry per query: an (N, 4) tensor/array of xyxy pixel boxes, or anything
with a ``.boxes`` attribute (a ``BoxSamples``). The query's scene comes from ``meta["scene"]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...boxes import box_iou
from ...evaluation.evaluate import register_oracle
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


_NEVER = 2 ** 62  # first-hit index of a dense box no sample hits: beyond every K


@register_oracle("scene")
def prefix_metrics(queries: Sequence[PlacementQuery], sampled_boxes: Sequence, ks: Sequence[int],
                   iou: float | None = 0.5, num_bins: int = 32) -> tuple[list[dict], list[dict] | None]:
    """Oracle precision and coverage of every prefix (the first K samples) of each query's boxes,
    one oracle pass per query: each query's plausibility flags are summed cumulatively and each
    dense box remembers the first sample that hits it (as in ``tpr_fpr.match``).

    Returns ``(precision, coverage)``, each a list with one ``{class: value, "all": value}`` dict per
    K (definitions as in :func:`oracle_precision` and :func:`coverage`); ``iou=None`` skips coverage
    (and the dense sets) and returns ``None`` for it.
    """
    if iou is not None and not 0.0 <= iou < 1.0:
        raise ValueError(f"iou must be in [0, 1), got {iou}")
    cats, plaus_cum, first_hit = [], [], []
    for q, scene, b in _pairs(queries, sampled_boxes):
        ok = is_plausible(scene, q.category, b) if len(b) else torch.zeros(0, dtype=torch.bool)
        cats.append(q.category)
        plaus_cum.append(torch.cat([torch.zeros(1), ok.float().cumsum(0)]))
        if iou is None:
            continue
        dense = dense_positives(scene, q.category, num_bins)
        if len(dense) and len(b):
            hit = box_iou(dense, b) > iou                                    # (M, N)
            first_hit.append(torch.where(hit, torch.arange(len(b)), _NEVER).min(1).values)
        else:
            first_hit.append(torch.full((len(dense),), _NEVER))

    share = lambda h, t: h / t if t else float("nan")  # noqa: E731
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    prec_out, cov_out = [], []
    for k in ks:
        hits: dict[str, float] = {}
        tot: dict[str, int] = {}
        for c, cum in zip(cats, plaus_cum):
            n = min(k, len(cum) - 1)
            hits[c] = hits.get(c, 0.0) + float(cum[n])
            tot[c] = tot.get(c, 0) + n
        prec_out.append({**{c: share(hits[c], tot[c]) for c in sorted(tot)},
                         "all": share(sum(hits.values()), sum(tot.values()))})
        if iou is None:
            continue
        shares: dict[str, list[float]] = {}
        for c, fh in zip(cats, first_hit):
            if len(fh):  # queries without any true placement are left out
                shares.setdefault(c, []).append(float((fh < k).float().mean()))
        cov_out.append({**{c: mean(shares[c]) for c in sorted(shares)},
                        "all": mean([x for v in shares.values() for x in v])})
    return prec_out, (cov_out if iou is not None else None)


def oracle_precision(queries: Sequence[PlacementQuery], sampled_boxes: Sequence,
                     per_class: bool = False) -> float | dict[str, float]:
    """Share of all sampled boxes that are truly plausible, pooled over queries (NaN if none).

    ``per_class=True`` returns ``{class: precision}`` plus ``"all"``.
    """
    prec = prefix_metrics(queries, sampled_boxes, [_NEVER], iou=None)[0][0]
    return prec if per_class else prec["all"]


def coverage(queries: Sequence[PlacementQuery], sampled_boxes: Sequence, iou: float = 0.5,
             num_bins: int = 32, per_class: bool = False) -> float | dict[str, float]:
    """Mean over queries of the share of the dense set of true placements (``dense_positives``)
    that at least one sample hits with IoU > ``iou``. A diverse, accurate sampler scores high; one
    that repeats a single good box scores low. Queries without any true placement are left out.
    """
    if not 0.0 <= iou < 1.0:
        raise ValueError(f"iou must be in [0, 1), got {iou}")
    cov = prefix_metrics(queries, sampled_boxes, [_NEVER], iou=iou, num_bins=num_bins)[1][0]
    return cov if per_class else cov["all"]
