"""Calibration of the synthetic world: how hard it is for samplers that look at nothing, at labels only,
and at the ground truth. ``training/synthetic_calibration.py`` prints these figures (docs/guides/synthetic-world.md).

- ``random``: uniform valid boxes on the token grid (``locinsert.evaluation.RandomBoxes``);
- ``prior``: boxes of the same class from the training labels of other scenes, image ignored
  (``locinsert.evaluation.ClassPrior`` fitted on PIPE-like + OPA-like training queries);
- ``oracle``: uniform draws from the dense set of true placements (precision 1 by construction).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..query import PlacementQuery
from .metrics import coverage, oracle_precision
from .oracle import CLASSES, dense_positives, plausible_np
from .drawing import render
from .scenes import make_scenes
from .splits import NEGATIVE_TYPES, _iou, opa_like, pipe_like, test_split


def oracle_samples(queries: Sequence[PlacementQuery], k: int, seed: int = 0, num_bins: int = 32) -> list[torch.Tensor]:
    """``k`` boxes per query drawn uniformly (with replacement) from its dense set of true placements."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for q in queries:
        dense = dense_positives(q.meta["scene"], q.category, num_bins)
        out.append(dense[torch.randint(0, len(dense), (k,), generator=g)] if len(dense) else torch.zeros(0, 4))
    return out


def baseline_samples(name: str, queries: Sequence[PlacementQuery], k: int, seed: int = 0, num_bins: int = 32,
                     train_queries: Sequence[PlacementQuery] | None = None) -> list[torch.Tensor]:
    """``k`` boxes per query from the evaluation package's ``random`` or ``prior`` baseline."""
    from ...evaluation import make_baseline

    base = make_baseline(name, train_queries, num_bins=num_bins)
    g = torch.Generator().manual_seed(seed)
    sizes = [q.size for q in queries]  # baselines never look at pixels: pass the size only
    return [s.boxes for s in base.sample(sizes, [q.category for q in queries], num_samples=k, generator=g)]


def uniform_plausible_rate(queries: Sequence[PlacementQuery], n: int = 1000, seed: int = 0,
                           num_bins: int = 32) -> dict[str, float]:
    """Per class (and ``"all"``): the share of uniform random valid boxes that the oracle accepts."""
    return oracle_precision(queries, baseline_samples("random", queries, n, seed, num_bins), per_class=True)


def negative_hardness(queries: Sequence[PlacementQuery], num_bins: int = 32) -> dict[str, dict[str, float]]:
    """Per negative type: count, share failing the oracle, median IoU with the nearest true placement
    (dense set) and with the nearest labelled positive, and the share within IoU > 0.5 of a true placement."""
    rows: dict[str, list] = {t: [] for t in NEGATIVE_TYPES}
    for q in queries:
        if len(q.negatives) == 0:
            continue
        scene, neg = q.meta["scene"], q.negatives.double().numpy()
        dense = dense_positives(scene, q.category, num_bins).double().numpy()
        fails = ~plausible_np(scene, q.category, neg)
        to_dense = _iou(neg, dense).max(1) if len(dense) else np.zeros(len(neg))
        to_pos = _iou(neg, q.positives.double().numpy()).max(1)
        for t, f, a, b in zip(q.meta["negative_types"], fails, to_dense, to_pos):
            rows[t].append((f, a, b))
    out = {}
    for t, v in rows.items():
        if not v:
            continue
        a = np.asarray(v, dtype=np.float64)
        out[t] = {"count": len(a), "fail_oracle": a[:, 0].mean(), "median_iou_true": float(np.median(a[:, 1])),
                  "median_iou_labelled": float(np.median(a[:, 2])), "near_true": float((a[:, 1] > 0.5).mean())}
    return out


def timings(n_scenes: int = 10_000, seed: int = 0, size: int = 64, num_bins: int = 32) -> dict[str, float]:
    """Seconds for: generating and rendering ``n_scenes`` scenes, the PIPE-like split over them, and
    the OPA-like split and the dense sets per (scene, class) (measured on a tenth, scaled up)."""
    t = {}
    t0 = time.perf_counter()
    scenes = make_scenes(n_scenes, seed, size)
    t["scenes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in scenes:
        render(s)
    t["render"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe_like(n_scenes, seed, size, num_bins)
    t["pipe_like"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    opa = opa_like(n_scenes // 10, seed, size, num_bins)
    t["opa_like"] = (time.perf_counter() - t0) * 10
    t0 = time.perf_counter()
    for q in opa:
        dense_positives(q.meta["scene"], q.category, num_bins)
    t["dense_per_query_ms"] = (time.perf_counter() - t0) / max(len(opa), 1) * 1000
    return t


def calibrate(train_scenes: int = 4000, test_scenes: int = 300, seed: int = 0, size: int = 64, num_bins: int = 32,
              ks: Sequence[int] = (10, 100), progress: bool = True) -> dict:
    """All calibration figures as one dict (see ``training/synthetic_calibration.py`` for the tables)."""
    from ...evaluation import tpr_fpr_prefixes

    train = pipe_like(train_scenes, seed, size, num_bins) + opa_like(train_scenes, seed, size, num_bins)
    test = test_split(test_scenes, seed, size, num_bins)
    kmax = max(ks)
    samplers = {
        "random": baseline_samples("random", test, kmax, seed, num_bins),
        "prior": baseline_samples("prior", test, kmax, seed, num_bins, train_queries=train),
        "oracle": oracle_samples(test, kmax, seed, num_bins),
    }
    report: dict = {"num_train_queries": len(train), "num_test_queries": len(test), "per_class": {}, "samplers": {}}
    dense_sizes: dict[str, list[int]] = {c: [] for c in CLASSES}
    for q in tqdm(test, desc="dense sets", disable=not progress):
        dense_sizes[q.category].append(len(dense_positives(q.meta["scene"], q.category, num_bins)))
    n_grid = (num_bins * (num_bins - 1) // 2) ** 2
    uniform = uniform_plausible_rate(test, 1000, seed, num_bins)
    for c in CLASSES:
        if dense_sizes[c]:
            report["per_class"][c] = {"median_dense": float(np.median(dense_sizes[c])),
                                      "dense_share": float(np.median(dense_sizes[c])) / n_grid,
                                      "uniform_precision": uniform.get(c, float("nan"))}
    for name, boxes in samplers.items():
        res = {"precision": oracle_precision(test, boxes, per_class=True),
               "coverage": coverage(test, boxes, 0.5, num_bins, per_class=True)}
        for k, r in zip(ks, tpr_fpr_prefixes(boxes, [q.positives for q in test], [q.negatives for q in test], ks)):
            res[f"tpr@{k}"], res[f"fpr@{k}"] = r.tpr, r.fpr
        report["samplers"][name] = res
    report["negatives"] = negative_hardness(opa_like(min(train_scenes, 1000), seed, size, num_bins), num_bins)
    return report
