"""TPR/FPR curves: one (FPR, TPR) point per number of samples K, saved as JSON and drawn with matplotlib.

``PAPER_CURVES`` holds the reference curves of arXiv 2410.13564 (v1, Fig. 6 right) on the OPA test
set, read off the official figure (``Qualcomm-AI-research/location-modeling``,
``static/images/tpr_fpr.jpg``) by marker centroids: about +-0.0005 FPR and +-0.002 TPR; a few
overlapping markers are estimates. The paper's IoU threshold could not be read (0.5 assumed).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

# K = 10, 20, ..., 100 -> (FPR, TPR). ContextCNN's last two points lie beyond the plot (FPR > 0.06).
_PAPER_POINTS = {
    "dpo": ("ours, with DPO", [
        (0.0067, 0.057), (0.0097, 0.093), (0.0139, 0.119), (0.0189, 0.138), (0.0239, 0.149),
        (0.0283, 0.161), (0.0333, 0.173), (0.0379, 0.180), (0.043, 0.188), (0.0491, 0.195)]),
    "no_dpo": ("ours, w/o DPO", [
        (0.0082, 0.052), (0.0130, 0.085), (0.0161, 0.113), (0.0213, 0.131), (0.0260, 0.146),
        (0.0325, 0.163), (0.0382, 0.174), (0.0435, 0.185), (0.049, 0.195), (0.0548, 0.204)]),
    "random": ("random boxes", [
        (0.0026, 0.003), (0.0045, 0.005), (0.0076, 0.009), (0.0109, 0.013), (0.0171, 0.017),
        (0.0227, 0.018), (0.0286, 0.021), (0.0340, 0.023), (0.0414, 0.025), (0.050, 0.027)]),
    "fopa": ("FOPA", [
        (0.0034, 0.029), (0.0055, 0.052), (0.0073, 0.065), (0.0096, 0.078), (0.0111, 0.087),
        (0.0130, 0.099), (0.0159, 0.108), (0.0191, 0.115), (0.0216, 0.122), (0.0248, 0.126)]),
    "graconet": ("GracoNet", [
        (0.0054, 0.032), (0.0097, 0.055), (0.0131, 0.077), (0.0171, 0.090), (0.021, 0.100),
        (0.0244, 0.111), (0.0288, 0.121), (0.0316, 0.127), (0.0349, 0.135), (0.0384, 0.141)]),
    "faster_rcnn": ("Faster R-CNN", [
        (0.0083, 0.036), (0.0135, 0.064), (0.0177, 0.083), (0.0220, 0.095), (0.0255, 0.106),
        (0.0279, 0.112), (0.0298, 0.117), (0.0319, 0.120), (0.0338, 0.123), (0.0361, 0.125)]),
    "context_cnn": ("ContextCNN", [
        (0.0079, 0.028), (0.0178, 0.048), (0.0250, 0.065), (0.0320, 0.081), (0.0375, 0.089),
        (0.0465, 0.099), (0.0536, 0.108), (0.060, 0.115)]),
}
#: The paper's main comparison (with DPO, without DPO, random), overlaid by ``--paper`` / ``paper=True``.
PAPER_MAIN = ("dpo", "no_dpo", "random")
PAPER_SOURCE = "arXiv 2410.13564 v1, Fig. 6 (OPA test), values read off the official figure"


@dataclass
class CurvePoint:
    """One K: pooled rates and the counts behind them (see ``tpr_fpr.TprFpr``).

    ``oracle_precision`` / ``coverage``: synthetic world only (``None`` elsewhere).
    """

    k: int
    fpr: float
    tpr: float
    matched_positives: int | None = None
    num_positives: int | None = None
    matched_negatives: int | None = None
    num_negatives: int | None = None
    positive_predictions: int | None = None
    negative_predictions: int | None = None
    ignored: int | None = None
    num_predictions: int | None = None
    num_queries: int | None = None
    oracle_precision: float | None = None
    coverage: float | None = None


def _clean(v):
    """JSON has no NaN: write null."""
    return None if isinstance(v, float) and math.isnan(v) else v


@dataclass
class Curve:
    """A method's TPR/FPR curve: ``points`` ordered by K, plus how it was made.

    ``per_category`` maps a category to its own ``Curve`` (pooled over that category's queries).
    ``meta`` is free-form provenance (model, dataset, seed, number of queries, ...).
    """

    name: str
    points: list[CurvePoint]
    iou_threshold: float = 0.5
    count: str = "labels"
    meta: dict = field(default_factory=dict)
    per_category: dict[str, "Curve"] = field(default_factory=dict)

    @property
    def ks(self) -> list[int]:
        """The sample counts K of the curve's points."""
        return [p.k for p in self.points]

    @property
    def fpr(self) -> list[float]:
        """The false-positive rate at each K."""
        return [p.fpr for p in self.points]

    @property
    def tpr(self) -> list[float]:
        """The true-positive rate at each K."""
        return [p.tpr for p in self.points]

    def at(self, k: int) -> CurvePoint:
        """The point for ``k`` samples; ``KeyError`` if the curve has none."""
        for p in self.points:
            if p.k == k:
                return p
        raise KeyError(f"curve {self.name!r} has no point for K={k} (has {self.ks})")

    @property
    def has_oracle(self) -> bool:
        """Whether the points carry oracle precision or coverage (synthetic queries)."""
        return any(p.oracle_precision is not None or p.coverage is not None for p in self.points)

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN as ``None``); ``from_dict`` reads it back."""
        return {
            "name": self.name,
            "iou_threshold": self.iou_threshold,
            "count": self.count,
            "meta": self.meta,
            "points": [{k: _clean(v) for k, v in asdict(p).items()} for p in self.points],
            "per_category": {c: cur.to_dict() for c, cur in sorted(self.per_category.items())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Curve":
        """A curve from ``to_dict``'s output; ``ValueError`` if the dict is not a curve."""
        try:
            points = [CurvePoint(**{k: (math.nan if v is None and k in ("fpr", "tpr") else v)
                                    for k, v in p.items()}) for p in d["points"]]
            return cls(name=d["name"], points=points, iou_threshold=float(d.get("iou_threshold", 0.5)),
                       count=d.get("count", "labels"), meta=dict(d.get("meta", {})),
                       per_category={c: cls.from_dict(v) for c, v in d.get("per_category", {}).items()})
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a locinsert curve: {e}") from e

    def to_json(self, path: str | Path | None = None, indent: int = 1) -> str:
        """The curve as JSON text; also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from ..io import write_text_atomic

            write_text_atomic(path, text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "Curve":
        """Read a curve from JSON text or from a file written by ``to_json``."""
        s = str(text_or_path)
        source = "curve JSON"
        if not s.lstrip().startswith("{"):
            p = Path(s)
            if not p.is_file():
                raise FileNotFoundError(f"no curve file {s}")
            source = f"curve file {s}"
            try:
                s = p.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{source} is not UTF-8 text (not a curve.json?)") from e
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source} is malformed JSON ({e})") from e
        return cls.from_dict(d)

    # -- text and plots -----------------------------------------------------------------------

    def table(self) -> str:
        """A small fixed-width table, one row per K."""
        rows = [f"{self.name}  (IoU > {self.iou_threshold:g}, count={self.count})",
                "    K     FPR     TPR  oracle-prec  coverage"]
        for p in self.points:
            extra = "".join(f"  {v:11.3f}" if v is not None else "            -"
                            for v in (p.oracle_precision, p.coverage))
            rows.append(f"{p.k:5d}  {p.fpr:6.4f}  {p.tpr:6.4f}{extra}")
        return "\n".join(rows)

    def plot(self, ax=None, label: str | None = None, annotate: bool = True, **style):
        """Draw TPR against FPR with one marker per K on ``ax`` (a new figure if None); returns ax."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4))
        style.setdefault("marker", "o")
        style.setdefault("markersize", 4)
        (line,) = ax.plot(self.fpr, self.tpr, label=label or self.name, **style)
        if annotate and self.points:
            for p in (self.points[0], self.points[-1]):
                ax.annotate(f"K={p.k}", (p.fpr, p.tpr), textcoords="offset points", xytext=(4, -9),
                            fontsize=7, color=line.get_color())
        ax.set_xlabel("FPR (negative labels hit)")
        ax.set_ylabel("TPR (positive labels hit)")
        return ax


def paper_curve(key: str) -> Curve:
    """A reference curve from the paper (keys: dpo, no_dpo, random, fopa, graconet, faster_rcnn, context_cnn)."""
    if key not in _PAPER_POINTS:
        raise ValueError(f"unknown paper curve {key!r}; choose from {sorted(_PAPER_POINTS)}")
    name, pts = _PAPER_POINTS[key]
    points = [CurvePoint(k=10 * (i + 1), fpr=f, tpr=t) for i, (f, t) in enumerate(pts)]
    return Curve(name=f"paper: {name}", points=points, meta={"source": PAPER_SOURCE})


PAPER_CURVES = {k: paper_curve(k) for k in _PAPER_POINTS}


def _paper_keys(paper) -> list[str]:
    if paper is None or paper is False:
        return []
    if paper is True or paper == "main":
        return list(PAPER_MAIN)
    if paper == "all":
        return list(_PAPER_POINTS)
    keys = [paper] if isinstance(paper, str) else list(paper)
    for k in keys:
        paper_curve(k)  # validates
    return keys


def plot_curves(curves: Sequence[Curve], ax=None, paper=None, title: str | None = None):
    """Several curves on one TPR/FPR plot. ``paper``: None, True/"main" (``PAPER_MAIN``: with DPO, without DPO, random),
    "all", or a list of keys of ``PAPER_CURVES``, drawn dashed with open markers. Returns ax."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.2))
    for c in curves:
        c.plot(ax)
    # Reference curves in greys with open markers, so they never read as one of ours.
    for i, key in enumerate(_paper_keys(paper)):
        PAPER_CURVES[key].plot(ax, annotate=False, linestyle="--", linewidth=1, markerfacecolor="none",
                               color=str(0.15 + 0.5 * i / max(1, len(_PAPER_POINTS) - 1)),
                               marker="osD^v<>"[i % 7], markersize=3.5)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title or "TPR vs FPR, K samples per query")
    ax.legend(fontsize=7, loc="best")
    return ax


def plot_oracle(curves: Sequence[Curve], ax=None):
    """Oracle precision (solid) and coverage (dashed) against K, for curves that have them."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    for c in curves:
        if not c.has_oracle:
            continue
        prec = [p.oracle_precision for p in c.points]
        cov = [p.coverage for p in c.points]
        (line,) = ax.plot(c.ks, [math.nan if v is None else v for v in prec], marker="o", markersize=3,
                          label=f"{c.name}: oracle precision")
        ax.plot(c.ks, [math.nan if v is None else v for v in cov], marker="s", markersize=3, linestyle="--",
                color=line.get_color(), label=f"{c.name}: coverage")
    ax.set_xlabel("K (samples per query)")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("synthetic world: oracle precision and coverage")
    ax.legend(fontsize=7, loc="best")
    return ax


def save_figure(curves: Sequence[Curve], path: str | Path, paper=None, title: str | None = None) -> Path:
    """Write the TPR/FPR plot (plus an oracle panel when any curve has oracle metrics) to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    oracle = any(c.has_oracle for c in curves)
    fig, axes = plt.subplots(1, 2 if oracle else 1, figsize=(11, 4.3) if oracle else (5.8, 4.5))
    axes = list(axes) if oracle else [axes]
    plot_curves(curves, axes[0], paper=paper, title=title)
    if oracle:
        plot_oracle(curves, axes[1])
    fig.tight_layout()
    from ..io import save_figure

    try:
        return save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def load_curves(paths: Iterable[str | Path]) -> list[Curve]:
    return [Curve.from_json(p) for p in paths]
