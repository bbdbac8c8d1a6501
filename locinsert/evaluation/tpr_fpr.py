"""TPR/FPR of sampled boxes against labelled positive and negative boxes (the paper's Fig. 6 protocol).

For each query (one image and one category) with labelled positives P and negatives Q:

1. every predicted box is matched to the labelled box, positive or negative **jointly**, with the
   highest IoU, provided that IoU is strictly greater than ``iou_threshold``; a prediction that
   matches nothing is *ignored* (nobody labelled that place, so it is neither right nor wrong);
2. **ties** (two labelled boxes with exactly the same best IoU) go to the first labelled box in the
   order positives-then-negatives, each in the order given. A prediction equally close to a
   positive and a negative therefore counts as a positive hit;
3. ``count="labels"`` (default, the paper's reading): TPR = positives hit by at least one prediction /
   all positives, FPR = negatives hit / all negatives. A labelled box hit by several predictions
   counts once, so both rates rise with the number of samples K, as in the paper's curves;
   ``count="predictions"`` (the other reading of the paper's definition): TPR = predictions matched to a
   positive / all positives, FPR = predictions matched to a negative / all negatives; duplicates
   count every time, so these "rates" can exceed 1;
4. both rates are **pooled** over queries: summed numerators over summed denominators, so a query
   with many labels weighs more than one with few (``TprFpr.per_query`` keeps the per-query counts
   for macro averages). A pooled denominator of zero gives ``nan``.

The work is one batched IoU over padded tensors (queries, predictions, labels). ``Matches`` keeps,
for each labelled box, the index of the **first** prediction that hits it. A box is hit by the first
K predictions exactly when that index is < K, so the counts for every prefix K (10, 20, ..., 100) and
every subset of queries (per category) come from that one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

from ..boxes import box_iou

COUNT_MODES = ("labels", "predictions")

# Kinds of a prediction after matching (Matches.pred_kind).
_PAD, _IGNORED, _NEG, _POS = -2, -1, 0, 1
_NEVER = 2 ** 62  # first_hit of a labelled box that no prediction hits


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else math.nan


@dataclass
class TprFpr:
    """Pooled TPR/FPR and the counts behind them.

    ``matched_positives`` / ``matched_negatives``: labelled boxes hit by at least one prediction.
    ``positive_predictions`` / ``negative_predictions``: predictions matched to a positive / negative.
    ``ignored``: predictions that matched no labelled box (IoU <= threshold with all of them).
    ``per_query``: the same counts per query as (Qn,) long tensors, in input order.
    """

    matched_positives: int
    num_positives: int
    matched_negatives: int
    num_negatives: int
    positive_predictions: int
    negative_predictions: int
    ignored: int
    num_predictions: int
    num_queries: int
    iou_threshold: float = 0.5
    count: str = "labels"
    k: int | None = None
    per_query: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def tpr(self) -> float:
        """The true-positive rate under this result's ``count`` reading."""
        num = self.matched_positives if self.count == "labels" else self.positive_predictions
        return _ratio(num, self.num_positives)

    @property
    def fpr(self) -> float:
        """The false-positive rate under this result's ``count`` reading."""
        num = self.matched_negatives if self.count == "labels" else self.negative_predictions
        return _ratio(num, self.num_negatives)

    @property
    def macro_tpr(self) -> float:
        """Mean of per-query TPRs over queries with at least one positive (not the paper's pooled rate)."""
        return self._macro("matched_positives" if self.count == "labels" else "positive_predictions",
                           "num_positives")

    @property
    def macro_fpr(self) -> float:
        """Mean of per-query FPRs over queries with at least one negative."""
        return self._macro("matched_negatives" if self.count == "labels" else "negative_predictions",
                           "num_negatives")

    def _macro(self, num: str, den: str) -> float:
        if not self.per_query:
            raise ValueError("per-query counts are not available for this result")
        n, d = self.per_query[num].double(), self.per_query[den].double()
        keep = d > 0
        return float((n[keep] / d[keep]).mean()) if keep.any() else math.nan

    def counts(self) -> dict:
        """The scalar fields as a plain dict (what goes into JSON)."""
        return {name: getattr(self, name) for name in (
            "k", "tpr", "fpr", "matched_positives", "num_positives", "matched_negatives", "num_negatives",
            "positive_predictions", "negative_predictions", "ignored", "num_predictions", "num_queries")}


def _as_box_list(x, name: str) -> list[torch.Tensor]:
    """A list of per-query (N_i, 4) float tensors; empty entries allowed; a (Qn, N, 4) tensor is split."""
    if isinstance(x, torch.Tensor):
        if x.ndim != 3 or x.shape[-1] != 4:
            raise ValueError(f"{name} as one tensor must have shape (queries, N, 4), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return list(x.detach().float().cpu().unbind(0))
    if not isinstance(x, (list, tuple)):
        raise TypeError(f"{name} must be a list with one (N, 4) box tensor per query, got {type(x).__name__}")
    out = []
    for i, b in enumerate(x):
        t = b.detach().float().cpu() if isinstance(b, torch.Tensor) else torch.as_tensor(b, dtype=torch.float32)
        if t.numel() == 0:
            t = t.reshape(0, 4)
        if t.ndim == 1 and t.shape[0] == 4:
            t = t[None]
        if t.ndim != 2 or t.shape[-1] != 4:
            raise ValueError(f"{name}[{i}] must have shape (N, 4) (xyxy), got {tuple(t.shape)}")
        out.append(t)
    # One finiteness check for all queries; look for the culprit only when it fails.
    if out and not torch.isfinite(torch.cat(out)).all():
        i = next(i for i, t in enumerate(out) if not torch.isfinite(t).all())
        raise ValueError(f"{name}[{i}] contains NaN or infinite values")
    return out


def _pad(boxes: list[torch.Tensor], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (N_i, 4) into (Qn, width, 4) with a (Qn, width) validity mask."""
    lengths = torch.tensor([min(len(b), width) for b in boxes])
    valid = torch.arange(width)[None, :] < lengths[:, None]
    out = torch.zeros(len(boxes), width, 4)
    if valid.any():
        out[valid] = torch.cat([b[:width] for b in boxes])  # row-major order of valid matches the cat
    return out, valid


def _check_threshold(iou_threshold: float) -> float:
    t = float(iou_threshold)
    if not (0.0 <= t < 1.0):
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    return t


def _check_count(count: str) -> str:
    if count not in COUNT_MODES:
        raise ValueError(f"count must be one of {COUNT_MODES}, got {count!r}")
    return count


@dataclass
class Matches:
    """The result of matching every prediction of every query once; cheap to count for any prefix K.

    ``first_hit`` (Qn, L): index of the first prediction that hits each labelled box, or a huge
    sentinel (2**62) if none does. ``label_kind`` (Qn, L): 1 positive, 0 negative,
    -2 padding. ``pred_kind`` (Qn, K): 1 matched a positive, 0 a negative, -1 ignored, -2 padding.
    Labels are in the order positives-then-negatives of each query.
    """

    first_hit: torch.Tensor
    label_kind: torch.Tensor
    pred_kind: torch.Tensor
    iou_threshold: float

    @property
    def num_queries(self) -> int:
        """The number of queries matched."""
        return self.first_hit.shape[0]

    @property
    def max_k(self) -> int:
        """The number of samples per query."""
        return self.pred_kind.shape[1]

    def counts(self, k: int | None = None, queries: torch.Tensor | Sequence[int] | None = None,
               count: str = "labels") -> TprFpr:
        """Pooled TPR/FPR using only the first ``k`` predictions of each query (all if None), over the
        queries selected by ``queries`` (a bool mask or indices; all if None)."""
        _check_count(count)
        first_hit, label_kind, pred_kind = self.first_hit, self.label_kind, self.pred_kind
        if queries is not None:
            sel = torch.as_tensor(queries)
            if sel.dtype != torch.bool:
                sel = sel.long()  # indices (an empty list would otherwise be float)
            first_hit, label_kind, pred_kind = first_hit[sel], label_kind[sel], pred_kind[sel]
        if k is not None:
            if int(k) < 0:
                raise ValueError(f"k must be >= 0, got {k}")
            pred_kind = pred_kind[:, :int(k)]
            hit = first_hit < int(k)
        else:
            hit = first_hit < self.max_k
        pos, neg = label_kind == _POS, label_kind == _NEG
        per_query = {
            "matched_positives": (hit & pos).sum(1),
            "num_positives": pos.sum(1),
            "matched_negatives": (hit & neg).sum(1),
            "num_negatives": neg.sum(1),
            "positive_predictions": (pred_kind == _POS).sum(1),
            "negative_predictions": (pred_kind == _NEG).sum(1),
            "ignored": (pred_kind == _IGNORED).sum(1),
            "num_predictions": (pred_kind != _PAD).sum(1),
        }
        totals = {name: int(v.sum()) for name, v in per_query.items()}
        return TprFpr(**totals, num_queries=int(first_hit.shape[0]), iou_threshold=self.iou_threshold,
                      count=count, k=None if k is None else int(k), per_query=per_query)


def match(pred_boxes, positives, negatives, iou_threshold: float = 0.5, chunk_size: int = 1024,
          device: torch.device | str | None = None) -> Matches:
    """Match every predicted box of every query to its labelled boxes, batched (see the module docstring).

    ``pred_boxes``, ``positives``, ``negatives``: lists with one (K_i, 4), (P_i, 4), (Q_i, 4) xyxy
    tensor per query (any of them may be empty), or (Qn, N, 4) tensors. ``chunk_size`` queries are
    matched at a time to bound memory (the IoU tensor is chunk x K x L). ``device`` (e.g. "cuda"):
    where the IoU and matching of each chunk run; the result is on the CPU either way.
    """
    iou_threshold = _check_threshold(iou_threshold)
    preds = _as_box_list(pred_boxes, "pred_boxes")
    pos = _as_box_list(positives, "positives")
    neg = _as_box_list(negatives, "negatives")
    if not (len(preds) == len(pos) == len(neg)):
        raise ValueError(f"need one entry per query in each list; got {len(preds)} pred_boxes, "
                         f"{len(pos)} positives, {len(neg)} negatives")
    qn = len(preds)
    k_max = max((len(p) for p in preds), default=0)
    labels = [torch.cat([p, n]) for p, n in zip(pos, neg)]
    l_max = max((len(lab) for lab in labels), default=0)

    label_kind = torch.full((qn, l_max), _PAD, dtype=torch.long)
    for i, (p, n) in enumerate(zip(pos, neg)):
        label_kind[i, :len(p)] = _POS
        label_kind[i, len(p):len(p) + len(n)] = _NEG
    first_hit = torch.full((qn, l_max), _NEVER, dtype=torch.long)
    pred_kind = torch.full((qn, k_max), _PAD, dtype=torch.long)
    if qn == 0 or k_max == 0:
        return Matches(first_hit, label_kind, pred_kind, iou_threshold)

    for s in range(0, qn, chunk_size):
        e = min(s + chunk_size, qn)
        p_box, p_valid = (t.to(device) for t in _pad(preds[s:e], k_max))
        l_box, l_valid = (t.to(device) for t in _pad(labels[s:e], l_max))
        if l_max == 0:
            pred_kind[s:e] = torch.where(p_valid, _IGNORED, _PAD).cpu()
            continue
        iou = box_iou(p_box, l_box)                                    # (c, K, L)
        iou = iou.masked_fill(~l_valid[:, None, :], -1.0)              # padding never wins
        best = iou.max(-1, keepdim=True).values
        # The first label with the best IoU wins a tie (positives come before negatives).
        order = torch.arange(l_max, device=iou.device).expand_as(iou)
        best_label = torch.where(iou == best, order, l_max).min(-1).values   # (c, K)
        matched = p_valid & (best[..., 0] > iou_threshold)
        kind = label_kind[s:e].to(iou.device).gather(1, best_label.clamp(max=l_max - 1))
        pred_kind[s:e] = torch.where(matched, kind, torch.where(p_valid, _IGNORED, _PAD)).cpu()
        # First hit per label: scatter the prediction index with 'amin'; unmatched predictions go to a
        # spare column l_max that is dropped.
        target = torch.where(matched, best_label, l_max)
        src = torch.arange(k_max, device=iou.device).expand_as(target)
        fh = torch.full((e - s, l_max + 1), _NEVER, dtype=torch.long, device=iou.device)
        fh.scatter_reduce_(1, target, src, reduce="amin", include_self=True)
        first_hit[s:e] = fh[:, :l_max].cpu()
    return Matches(first_hit, label_kind, pred_kind, iou_threshold)


def tpr_fpr(pred_boxes, positives, negatives, iou_threshold: float = 0.5, count: str = "labels",
            device: torch.device | str | None = None) -> TprFpr:
    """Pooled TPR/FPR of predicted boxes against labelled positives and negatives.

    ``pred_boxes``, ``positives``, ``negatives``: one (K_i, 4), (P_i, 4), (Q_i, 4) xyxy tensor per
    query (lists of equal length). A prediction matches the labelled box with the highest IoU if that
    IoU > ``iou_threshold`` (strictly); ties go to the first of positives-then-negatives; unmatched
    predictions are ignored; ``count`` is ``"labels"`` (a labelled box hit several times counts once;
    the paper's reading) or ``"predictions"`` (matched predictions over the label count). See the
    module docstring for the full definition. ``device``: where the matching runs (see ``match``).
    """
    _check_count(count)
    return match(pred_boxes, positives, negatives, iou_threshold, device=device).counts(count=count)


def tpr_fpr_prefixes(pred_boxes, positives, negatives, ks: Iterable[int], iou_threshold: float = 0.5,
                     count: str = "labels") -> list[TprFpr]:
    """``tpr_fpr`` of the first k predictions of each query, for every k in ``ks``, from one matching pass."""
    m = match(pred_boxes, positives, negatives, iou_threshold)
    return [m.counts(k, count=count) for k in ks]


def tpr_fpr_loop(pred_boxes, positives, negatives, iou_threshold: float = 0.5, count: str = "labels") -> TprFpr:
    """Reference implementation: the same definition, one query and one prediction at a time in Python.

    Slow on purpose: it is what ``locinsert bench`` compares the batched version against, and what the
    tests cross-check it with.
    """
    iou_threshold = _check_threshold(iou_threshold)
    _check_count(count)
    preds = _as_box_list(pred_boxes, "pred_boxes")
    pos = _as_box_list(positives, "positives")
    neg = _as_box_list(negatives, "negatives")
    if not (len(preds) == len(pos) == len(neg)):
        raise ValueError("need one entry per query in each list")
    c = dict(matched_positives=0, num_positives=0, matched_negatives=0, num_negatives=0,
             positive_predictions=0, negative_predictions=0, ignored=0, num_predictions=0)
    for p_boxes, p, n in zip(preds, pos, neg):
        labels = torch.cat([p, n])
        hit = [False] * len(labels)
        for box in p_boxes:
            c["num_predictions"] += 1
            if len(labels) == 0:
                c["ignored"] += 1
                continue
            ious = box_iou(box[None], labels)[0].tolist()
            best = max(ious)
            if best <= iou_threshold:
                c["ignored"] += 1
                continue
            j = ious.index(best)  # first maximum: positives come first
            hit[j] = True
            c["positive_predictions" if j < len(p) else "negative_predictions"] += 1
        c["num_positives"] += len(p)
        c["num_negatives"] += len(n)
        c["matched_positives"] += sum(hit[:len(p)])
        c["matched_negatives"] += sum(hit[len(p):])
    return TprFpr(**c, num_queries=len(preds), iou_threshold=iou_threshold, count=count)
