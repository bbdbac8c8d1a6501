"""Evaluation: the paper's TPR/FPR protocol, curves over K, baselines, and the synthetic world's oracle metrics.

``tpr_fpr(pred_boxes, positives, negatives, iou_threshold=0.5)`` is the pure metric;
``evaluate(model, queries)`` samples boxes and returns a ``Curve``; ``RandomBoxes`` and
``ClassPrior`` are baselines with the model's ``sample`` interface.
"""

from __future__ import annotations

from .baselines import BASELINES, BaselineSamples, ClassPrior, RandomBoxes, make_baseline
from .curves import PAPER_CURVES, PAPER_MAIN, Curve, CurvePoint, paper_curve, plot_curves, save_figure
from .evaluate import DEFAULT_KS, evaluate, evaluate_boxes, sample_boxes, shuffle_images
from .tables import MATCHED_FPRS, curve_row, format_class_table, format_learning_table, tpr_at_fpr
from .tpr_fpr import Matches, TprFpr, match, tpr_fpr, tpr_fpr_loop, tpr_fpr_prefixes

__all__ = [
    "tpr_fpr", "tpr_fpr_prefixes", "tpr_fpr_loop", "match", "Matches", "TprFpr",
    "evaluate", "evaluate_boxes", "sample_boxes", "DEFAULT_KS", "shuffle_images",
    "curve_row", "tpr_at_fpr", "MATCHED_FPRS", "format_learning_table", "format_class_table",
    "Curve", "CurvePoint", "PAPER_CURVES", "PAPER_MAIN", "paper_curve", "plot_curves", "save_figure",
    "RandomBoxes", "ClassPrior", "BaselineSamples", "make_baseline", "BASELINES",
]
