"""The positional-prompt benchmark: "add a <class> on the left" on the synthetic world, measured by its oracle.

Every held-out query (scene, class) is asked with every phrase of :data:`BENCH_PHRASES`. A request
*fits* when the scene has at least one true placement (the oracle's dense set on the model's bin
grid) that satisfies the phrase's region; otherwise it is *hopeless*. Per request, the library's
default path runs (``ObjectInserter.propose``: fit verdict, candidates drawn by the exact
conditional sampler, the most likely by log p chosen), and, for comparison, the old path (masked
decoding, candidates ranked by the masked log q). Measured over the requests that fit:

- ``chosen_plausible``: share of chosen boxes the oracle accepts;
- ``candidate_precision``: share of the K candidates it accepts;
- ``width_ratio`` / ``height_ratio`` p50 and p90: the chosen box's width (height) over the median
  width (height) of the request's true placements;

and over all requests, fit detection: ROC AUC of the region mass separating fitting from hopeless
requests, and at the threshold the share of fitting requests kept and of hopeless ones flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

__all__ = ["BENCH_PHRASES", "PositionalRequest", "positional_benchmark", "calibrate_threshold", "roc_auc",
           "format_positional", "positional_figure", "demo_section", "report_lines", "DEMO_QUERIES"]

#: Held-out queries the demo asks with every phrase, per budget.
DEMO_QUERIES = {"quick": 10, "default": 40}

#: The benchmark's phrases: both sides, top and bottom, three corners and the centre.
BENCH_PHRASES = ("on the left", "on the right", "near the top", "near the bottom", "in the top left corner",
                 "in the top right corner", "in the bottom left corner", "in the center")


@dataclass
class PositionalRequest:
    """One (query, phrase) request and what both paths did with it."""

    query_id: str
    category: str
    phrase: str
    fits: bool
    mass: float
    verdict: str
    chosen: list
    chosen_plausible: bool
    candidate_precision: float
    width_ratio: float
    height_ratio: float
    before: list = field(default_factory=list)
    before_plausible: bool = False
    before_precision: float = 0.0
    before_width_ratio: float = float("nan")
    before_height_ratio: float = float("nan")


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (ties count one half); ``nan`` if one class is empty."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def calibrate_threshold(masses: Sequence[float], fits: Sequence[bool], keep: float = 0.92) -> dict:
    """The largest fit threshold that still keeps ``keep`` of the fitting requests.

    A larger threshold flags more hopeless requests but also more fitting ones; the rule fixes the
    share of fitting requests kept (default 92 %: the 90 % target plus a margin for the noise of
    the mass estimates) and flags as many hopeless ones as that allows. Candidates are the
    geometric midpoints between neighbouring distinct masses. Returns the threshold with its kept
    and flagged shares and balanced accuracy (their mean).
    """
    m = np.asarray(masses, dtype=np.float64)
    y = np.asarray(fits, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("calibration needs both fitting and hopeless requests")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be a share in (0, 1], got {keep}")
    values = np.unique(np.clip(m, 1e-12, 1.0))
    cands = np.concatenate([[values[0] / 2], np.sqrt(values[:-1] * values[1:])])
    ok = [t for t in cands if (m[y] >= t).mean() >= keep]
    t = float(max(ok))  # the smallest candidate keeps every request, so ok is never empty
    kept, flagged = float((m[y] >= t).mean()), float((m[~y] < t).mean())
    return {"threshold": t, "kept": kept, "flagged": flagged, "balanced_accuracy": (kept + flagged) / 2,
            "keep": keep}


def _true_in_region(scene, cls: str, region, num_bins: int):
    from ..data.synthetic import dense_positives
    from ..modeling.constraints import BoxConstraints

    dense = dense_positives(scene, cls, num_bins)
    if len(dense) == 0:
        return dense
    ok = BoxConstraints(scene.width, scene.height, num_bins, region).satisfied(dense)
    return dense[ok]


def _ratios(box, truth) -> tuple[float, float]:
    w, h = float(box[2] - box[0]), float(box[3] - box[1])
    tw = float((truth[:, 2] - truth[:, 0]).median())
    th = float((truth[:, 3] - truth[:, 1]).median())
    return w / tw, h / th


def positional_benchmark(model, queries, phrases: Sequence[str] = BENCH_PHRASES, *, num_candidates: int = 16,
                         threshold: float | None = None, seed: int = 0, compare: bool = True,
                         progress: bool = True, sampler: str | None = None, refine: bool = True) -> dict:
    """Run the benchmark on synthetic ``queries`` (``PlacementQuery`` with ``meta["scene"]``).

    ``num_candidates``: K, the candidates per request (the inserter's default); ``threshold``: the
    fit threshold (default: the model's, ``locinsert.fit.model_fit_threshold``); ``compare``: also run the old
    path (masked decoding ranked by log q); ``sampler``: override ``sample``'s sampler for the new
    path (default: the library's default); ``refine``: the inserter's ``refine`` (the chosen box
    moved to its local maximum of log p). Returns ``{"summary": {...}, "requests": [...]}``.
    """
    from tqdm.auto import tqdm

    from .inserter import ObjectInserter

    inserter = ObjectInserter(model, None, num_candidates=num_candidates, fit_threshold=threshold, refine=refine)
    threshold = inserter.fit_threshold   # the given one, else the model's (locinsert.fit.model_fit_threshold)
    if sampler is not None:
        original = model.sample

        def sample_with(*a, **k):
            return original(*a, sampler=sampler, **k)

        inserter.model = _SamplerOverride(model, sample_with)
    num_bins = model.config.num_bins
    gen = torch.Generator().manual_seed(seed)
    requests: list[PositionalRequest] = []
    work = [(q, p) for q in queries for p in phrases]
    for q, phrase in tqdm(work, desc="positional requests", unit="request", disable=not progress):
        with model.reusing_prefixes():   # both paths ask about the same image and class
            requests.append(_request(model, inserter, q, phrase, num_bins, num_candidates, gen, compare))
    return {"summary": summarise(requests, threshold, num_candidates), "requests": [vars(r) for r in requests]}


def _request(model, inserter, q, phrase: str, num_bins: int, num_candidates: int, gen, compare: bool
             ) -> PositionalRequest:
    """One (query, phrase) request through the default path and, with ``compare``, the old one."""
    from ..data.synthetic import is_plausible
    from .inserter import select_box
    from ..regions import Region

    scene = q.meta["scene"]
    region = Region.parse(phrase)
    truth = _true_in_region(scene, q.category, region, num_bins)
    cands = inserter.propose(q.image, q.category, region, generator=gen)
    i = select_box(cands.boxes, cands.log_p)
    ok = is_plausible(scene, q.category, cands.boxes)
    fits = len(truth) > 0
    wr, hr = _ratios(cands.boxes[i], truth) if fits else (float("nan"), float("nan"))
    r = PositionalRequest(q.query_id, q.category, phrase, fits, cands.fit.mass, cands.fit.message,
                          [round(float(v), 2) for v in cands.boxes[i]], bool(ok[i]), float(ok.float().mean()),
                          wr, hr)
    if compare:
        old = model.sample(q.image, q.category, num_samples=num_candidates, region=region, sampler="masked",
                           generator=gen)
        j = int(torch.argmax(old.log_q))
        ok_old = is_plausible(scene, q.category, old.boxes)
        r.before = [round(float(v), 2) for v in old.boxes[j]]
        r.before_plausible, r.before_precision = bool(ok_old[j]), float(ok_old.float().mean())
        if fits:
            r.before_width_ratio, r.before_height_ratio = _ratios(old.boxes[j], truth)
    return r


class _SamplerOverride:
    """A model whose ``sample`` uses another sampler; everything else is the model's."""

    def __init__(self, model, sample):
        self._model, self.sample = model, sample

    def __getattr__(self, name):
        return getattr(self._model, name)


def _pct(values, q: float) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.percentile(v, q)) if v else float("nan")


def summarise(requests: Sequence[PositionalRequest], threshold: float, num_candidates: int) -> dict:
    """The benchmark's figures from its requests (see the module docstring)."""
    fit = [r for r in requests if r.fits]
    hopeless = [r for r in requests if not r.fits]
    mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    out = {
        "requests": len(requests), "fitting": len(fit), "hopeless": len(hopeless), "num_candidates": num_candidates,
        "threshold": threshold,
        "chosen_plausible": mean([r.chosen_plausible for r in fit]),
        "candidate_precision": mean([r.candidate_precision for r in fit]),
        "width_ratio_p50": _pct([r.width_ratio for r in fit], 50), "width_ratio_p90": _pct([r.width_ratio for r in fit], 90),
        "height_ratio_p50": _pct([r.height_ratio for r in fit], 50),
        "height_ratio_p90": _pct([r.height_ratio for r in fit], 90),
        "fit_auc": roc_auc([r.mass for r in requests], [r.fits for r in requests]),
        "kept": mean([r.mass >= threshold for r in fit]),
        "flagged": mean([r.mass < threshold for r in hopeless]),
        "per_phrase": {p: mean([r.chosen_plausible for r in fit if r.phrase == p])
                       for p in dict.fromkeys(r.phrase for r in requests)},
    }
    if requests and requests[0].before:
        out["before"] = {
            "chosen_plausible": mean([r.before_plausible for r in fit]),
            "candidate_precision": mean([r.before_precision for r in fit]),
            "width_ratio_p50": _pct([r.before_width_ratio for r in fit], 50),
            "width_ratio_p90": _pct([r.before_width_ratio for r in fit], 90),
            "height_ratio_p90": _pct([r.before_height_ratio for r in fit], 90)}
    return out


#: The issue's targets, for the table: (key, comparison, value).
TARGETS = (("chosen_plausible", ">=", 0.85), ("candidate_precision", ">=", 0.55), ("width_ratio_p90", "<=", 1.5),
           ("fit_auc", ">=", 0.95), ("kept", ">=", 0.90), ("flagged", ">=", 0.95))


def format_positional(summary: dict) -> str:
    """A Markdown table: each figure, the old path's where measured, and the target."""
    before = summary.get("before", {})
    names = {"chosen_plausible": "chosen box plausible (fitting requests)",
             "candidate_precision": f"candidate precision at K={summary['num_candidates']}",
             "width_ratio_p50": "chosen width / true width, p50", "width_ratio_p90": "chosen width / true width, p90",
             "height_ratio_p90": "chosen height / true height, p90", "fit_auc": "fit detection ROC AUC",
             "kept": f"fitting requests kept (threshold {summary['threshold']:g})",
             "flagged": f"hopeless requests flagged (threshold {summary['threshold']:g})"}
    target = {k: f"{op} {v:g}" for k, op, v in TARGETS}
    lines = [f"{summary['requests']} requests ({summary['fitting']} fit, {summary['hopeless']} hopeless)", "",
             "| figure | before (masked, log q) | now | target |", "|---|---|---|---|"]
    for key, name in names.items():
        b = before.get(key)
        lines.append(f"| {name} | {'-' if b is None else f'{b:.3f}'} | {summary[key]:.3f} | {target.get(key, '-')} |")
    return "\n".join(lines)


def positional_figure(queries, result: dict, path, ncols: int = 4, hopeless: int = 2):
    """Save a grid: each cell a prompt, its region, the old chosen box (dashed blue) and the new (red), the verdict.

    Two rows of ``ncols`` requests from different scenes: fitting requests of different phrases, then
    ``hopeless`` requests the oracle says have no room.
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ..io import save_figure
    from ..regions import Region

    by_id = {q.query_id: q for q in queries}
    reqs = result["requests"]
    # Fitting requests of different phrases and scenes first, then hopeless ones: both kinds of verdict.
    cells = 2 * ncols
    picked, used = [], set()
    for phrase in dict.fromkeys(r["phrase"] for r in reqs):
        for r in reqs:
            if len(picked) < cells - hopeless and r["fits"] and r["phrase"] == phrase and r["query_id"] not in used \
                    and r["query_id"] in by_id:
                picked.append(r)
                used.add(r["query_id"])
                break
    for r in reqs:
        if len(picked) < cells and not r["fits"] and r["query_id"] not in used and r["query_id"] in by_id:
            picked.append(r)
            used.add(r["query_id"])
    nrows = max(1, math.ceil(len(picked) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, picked):
        q = by_id[r["query_id"]]
        img = q.image
        ax.imshow(img)
        x1, y1, x2, y2 = Region.parse(r["phrase"]).resolve(img.width, img.height).bounds()
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", lw=1, ls=":"))
        if r["before"]:
            b = r["before"]
            ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="#3b82f6", lw=1.5, ls="--"))
        b = r["chosen"]
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="#e11d48", lw=2))
        title = f"add a {r['category']} {r['phrase']}" + ("" if r["fits"] else "  [oracle: no room]")
        verdict = textwrap.fill(r["verdict"], 46)
        flagged = "hardly fits" in r["verdict"]
        ax.set_title(f"{title}\n{verdict}", fontsize=7, color="#b45309" if flagged else "black")
    fig.suptitle("positional prompts: old choice (blue dashed: masked decoding, best log q) vs new (red: exact "
                 "conditional sampler, best log p); region dotted; verdict below each prompt (orange: hardly fits)",
                 fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    try:
        return save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def demo_section(model, test, folder, budget: str, seed: int = 0, progress: bool = True) -> dict:
    """The demo report's positional-prompt section: the benchmark on the first test queries and its picture."""
    from pathlib import Path

    folder = Path(folder)
    queries = list(test)[: DEMO_QUERIES.get(budget, DEMO_QUERIES["default"])]
    result = positional_benchmark(model, queries, seed=seed, progress=progress)
    positional_figure(queries, result, folder / "positional.png")
    return result["summary"]


def report_lines(summary: dict) -> list[str]:
    """Markdown lines of the demo report's positional-prompt section."""
    return ["", "## Positional prompts: does the object land where it fits?", "", "![positional](positional.png)", "",
            "`positional.png`: prompts on held-out scenes, the region (dotted), the box the old path chose (blue",
            "dashed: masked decoding, ranked by the masked log q) and the new default (red: exact conditional",
            "sampler, ranked by the model's own log p), and the fit verdict. The table covers every (query,",
            "phrase) request of the benchmark; a request *fits* when at least one true placement lies in its",
            "region, and is *hopeless* otherwise:", "",
            format_positional(summary)]
