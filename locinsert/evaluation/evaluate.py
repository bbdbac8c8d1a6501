"""Evaluate a location model (or a baseline) on placement queries: one TPR/FPR curve over K.

Sampling once, then prefixes: each query gets K = max(ks) i.i.d. samples in one ``sample`` call, and
the point for a smaller K uses the first K of them. The first K of N i.i.d. draws are themselves K
i.i.d. draws, so every point is a valid K-sample evaluation; the points of one curve simply share
their samples (which makes the curve smooth and monotone in K, and costs one sampling run, not ten).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
import torch

from ..validation import check_choice, check_float, check_int
from .curves import Curve, CurvePoint
from .tpr_fpr import match

DEFAULT_KS = tuple(range(10, 101, 10))


def check_ks(ks) -> list[int]:
    """Sorted, unique, positive integers."""
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = [ks]
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise TypeError(f"ks must be a list of positive integers, got {type(ks).__name__}")
    try:
        out = sorted({check_int(k, "ks", minimum=1) for k in ks})
    except (TypeError, ValueError) as e:
        raise type(e)(f"ks must be positive integers, got {ks!r}") from e
    if not out:
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return out


def _model_device(model) -> torch.device:
    dev = getattr(model, "device", None)
    return dev if isinstance(dev, torch.device) else torch.device("cpu")


def _input_for(model, query):
    """What ``sample`` gets as the image: baselines take a (width, height) when the labels know it."""
    if not getattr(model, "needs_image", True) and query.width is not None and query.height is not None:
        return (int(query.width), int(query.height))
    return query.image


def sample_boxes(model, queries: Sequence, num_samples: int = 100, seed: int = 0, batch_size: int = 16,
                 region=None, progress: bool = True) -> list[torch.Tensor]:
    """``num_samples`` boxes per query from ``model.sample``, ``batch_size`` queries per call.

    Returns one (N, 4) CPU float tensor per query. One ``torch.Generator`` seeded with ``seed`` drives
    the whole run, so results are reproducible for a given ``seed`` and ``batch_size``.
    """
    if not hasattr(model, "sample"):
        raise TypeError(f"{type(model).__name__} has no sample(images, classes, num_samples=...) method")
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    from tqdm.auto import tqdm

    generator = torch.Generator(device=_model_device(model)).manual_seed(int(seed))
    out: list[torch.Tensor] = []
    bar = tqdm(total=len(queries), desc=f"sampling {num_samples} boxes/query", unit="query",
               disable=not progress)
    for s in range(0, len(queries), batch_size):
        batch = queries[s:s + batch_size]
        kwargs = {"num_samples": int(num_samples), "generator": generator}
        if region is not None:
            kwargs["region"] = region
        with torch.no_grad():
            samples = model.sample([_input_for(model, q) for q in batch], [q.category for q in batch], **kwargs)
        if not isinstance(samples, (list, tuple)) or len(samples) != len(batch):
            raise TypeError(f"{type(model).__name__}.sample must return one result per image for a list of "
                            f"{len(batch)} images")
        for q, smp in zip(batch, samples):
            boxes = getattr(smp, "boxes", smp)
            boxes = torch.as_tensor(boxes).detach().float().cpu().reshape(-1, 4)
            out.append(boxes)
        bar.update(len(batch))
    bar.close()
    return out


#: Oracles of worlds that know the truth: the ``meta`` key their queries carry -> a ``prefix_metrics``
#: function (``locinsert.data.synthetic.metrics``). A world registers its own, so evaluation imports none.
ORACLES: dict[str, Callable] = {}


def register_oracle(meta_key: str) -> Callable[[Callable], Callable]:
    """Decorator: ``fn(queries, boxes, ks, iou, num_bins) -> (precision, coverage)`` scores queries whose
    ``meta`` holds ``meta_key`` (oracle precision and coverage of every prefix)."""
    def register(fn: Callable) -> Callable:
        ORACLES[meta_key] = fn
        return fn
    return register


def _synthetic_oracle(queries: Sequence):
    """The registered oracle of the world every query comes from (``meta["scene"]``...), else None."""
    for key, fn in ORACLES.items():
        if queries and all(key in getattr(q, "meta", {}) for q in queries):
            return fn
    return None


def evaluate_boxes(boxes: Sequence[torch.Tensor], queries: Sequence, ks=DEFAULT_KS, iou_threshold: float = 0.5,
                   count: str = "labels", name: str = "model", per_category: bool = True,
                   oracle: bool | None = None, meta: dict | None = None) -> Curve:
    """The curve of already sampled ``boxes`` (one (N, 4) tensor per query, N >= max(ks) for a full
    curve). ``oracle``: add synthetic-world oracle precision and coverage (None: when available)."""
    ks = check_ks(ks)
    iou_threshold = check_float(iou_threshold, "iou_threshold", minimum=0, maximum=1, high_open=True)
    check_choice(count, "count", ("labels", "predictions"))
    if len(boxes) != len(queries):
        raise ValueError(f"got boxes for {len(boxes)} queries but {len(queries)} queries")
    m = match(list(boxes), [q.positives for q in queries], [q.negatives for q in queries], iou_threshold)

    world = _synthetic_oracle(queries) if oracle in (None, True) else None
    if oracle and world is None:
        raise ValueError("oracle metrics need synthetic-world queries (meta['scene']) and "
                         "locinsert.data.synthetic.metrics.prefix_metrics")

    def points(select=None) -> list[CurvePoint]:
        out = []
        for k in ks:
            r = m.counts(k, queries=select, count=count)
            c = r.counts()
            c.pop("k")
            out.append(CurvePoint(k=k, **c))
        return out

    pts = points()
    meta = dict(meta or {})
    meta.setdefault("num_queries", len(queries))
    curve = Curve(name=name, points=pts, iou_threshold=float(iou_threshold), count=count, meta=meta)
    if per_category:
        cats = [q.category for q in queries]
        for cat in sorted(set(cats)):
            sel = torch.tensor([c == cat for c in cats])
            curve.per_category[cat] = Curve(name=f"{name} / {cat}", points=points(sel),
                                            iou_threshold=float(iou_threshold), count=count,
                                            meta={"num_queries": int(sel.sum())})
    if world is not None:
        # one oracle pass per query for all K: see synthetic.metrics.prefix_metrics
        prec, cov = world(queries, boxes, ks, iou=iou_threshold)
        for i, p in enumerate(pts):
            p.oracle_precision, p.coverage = prec[i]["all"], cov[i]["all"]
            for cat, c in curve.per_category.items():
                c.points[i].oracle_precision = prec[i].get(cat, math.nan)
                c.points[i].coverage = cov[i].get(cat, math.nan)
    return curve


def evaluate(model, queries: Sequence, ks=DEFAULT_KS, iou_threshold: float = 0.5, seed: int = 0,
             batch_size: int = 16, region=None, progress: bool = True, count: str = "labels",
             name: str | None = None, per_category: bool = True, oracle: bool | None = None) -> Curve:
    """TPR/FPR curve of ``model`` on ``queries`` (``PlacementQuery``s), one point per K in ``ks``.

    ``model``: anything with ``sample(images, classes, num_samples=, generator=)`` returning one
    object with ``.boxes`` (N, 4) per image: a ``LocationModel`` or a baseline (``RandomBoxes``,
    ``ClassPrior``). Samples max(ks) boxes per query once and uses prefixes for smaller K (see the
    module docstring). Deterministic for a given ``seed`` and ``batch_size``. Synthetic-world queries
    also get oracle precision and coverage per K. Returns a ``Curve`` with per-category curves.
    """
    ks = check_ks(ks)
    check_float(iou_threshold, "iou_threshold", minimum=0, maximum=1, high_open=True)
    check_choice(count, "count", ("labels", "predictions"))
    seed, batch_size = check_int(seed, "seed", minimum=0), check_int(batch_size, "batch_size", minimum=1)
    queries = list(queries)
    if not queries:
        raise ValueError("no queries to evaluate")
    boxes = sample_boxes(model, queries, num_samples=ks[-1], seed=seed, batch_size=batch_size, region=region,
                         progress=progress)
    name = name or getattr(model, "name", None) or type(model).__name__
    meta = {"model": repr(model) if len(repr(model)) < 200 else type(model).__name__, "seed": int(seed),
            "batch_size": int(batch_size), "num_samples": ks[-1]}
    return evaluate_boxes(boxes, queries, ks, iou_threshold=iou_threshold, count=count, name=name,
                          per_category=per_category, oracle=oracle, meta=meta)


__all__ = ["DEFAULT_KS", "check_ks", "sample_boxes", "evaluate_boxes", "evaluate"]


def shuffle_images(queries) -> list:
    """The image ablation: each query gets the image of a query half the split away (another scene),
    keeping its class, labels and oracle scene. A model that uses the image loses precision here."""
    queries = list(queries)
    n = len(queries)
    scenes = {q.image_id for q in queries}
    if len(scenes) < 2:
        raise ValueError("shuffling images needs queries from at least two scenes")
    out = []
    for i, q in enumerate(queries):
        j = (i + n // 2) % n
        while queries[j].image_id == q.image_id:  # never the query's own scene
            j = (j + 1) % n
        out.append(dataclasses.replace(q, image_source=queries[j].image_source, _image=None))
    return out
