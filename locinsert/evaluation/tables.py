"""Rows and Markdown tables of K-curves: the learning table of ``locinsert train synthetic`` and the demo.

A row holds, per K, oracle precision, coverage, TPR and FPR, the TPR at matched FPRs
(:data:`MATCHED_FPRS`, interpolated along the curve) and, with per-category curves, each class's
oracle precision at the largest K.
"""

from __future__ import annotations

import numpy as np

MATCHED_FPRS = (0.1, 0.2)


def tpr_at_fpr(curve, fpr: float) -> float:
    """TPR of a K-curve at a given FPR, linearly interpolated between its K points (NaN outside them)."""
    fprs, tprs = np.array(curve.fpr, dtype=float), np.array(curve.tpr, dtype=float)
    order = np.argsort(fprs)
    fprs, tprs = fprs[order], tprs[order]
    if not len(fprs) or fpr < fprs[0] or fpr > fprs[-1]:
        return float("nan")
    return float(np.interp(fpr, fprs, tprs))


def curve_row(curve, ks=(10, 100)) -> dict:
    """One row of the learning table (and of the demo's table) from a method's K-curve; with per-category
    curves also ``precision/<class>@K`` for the largest K."""
    row = {"method": curve.name}
    for cat, c in sorted(curve.per_category.items()):
        row[f"precision/{cat}@{ks[-1]}"] = c.at(ks[-1]).oracle_precision
    for k in ks:
        p = curve.at(k)
        row.update({f"oracle_precision@{k}": p.oracle_precision, f"coverage@{k}": p.coverage,
                    f"tpr@{k}": p.tpr, f"fpr@{k}": p.fpr})
    for f in MATCHED_FPRS:
        row[f"tpr@fpr={f}"] = tpr_at_fpr(curve, f)
    return row


def format_learning_table(rows: list[dict], ks=(10, 100)) -> str:
    """The learning table as Markdown."""
    cols = ["method"] + [f"{m}@{k}" for k in (ks[-1],) for m in ("oracle_precision", "coverage")] + \
        [f"{m}@{k}" for k in ks for m in ("tpr", "fpr")] + [f"tpr@fpr={f}" for f in MATCHED_FPRS]
    head = ["method", f"oracle precision (K={ks[-1]})", f"coverage (K={ks[-1]})"] + \
        [f"{m} (K={k})" for k in ks for m in ("TPR", "FPR")] + [f"TPR at FPR {f}" for f in MATCHED_FPRS]
    return _markdown(rows, cols, head)


def _markdown(rows, cols, head) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"]] + [f"{r[c]:.3f}" if isinstance(r.get(c), float) and r[c] == r[c] else "n/a"
                                 for c in cols[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_class_table(rows: list[dict], k: int = 100) -> str:
    """Oracle precision per class (and over all queries) at K, one row per method, as Markdown."""
    classes = sorted({c.split("/", 1)[1].rsplit("@", 1)[0] for r in rows for c in r
                      if c.startswith("precision/") and c.endswith(f"@{k}")})
    cols = ["method", f"oracle_precision@{k}"] + [f"precision/{c}@{k}" for c in classes]
    return _markdown(rows, cols, ["method", "all"] + classes)
