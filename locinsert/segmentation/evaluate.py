"""Mask quality: IoU and Dice against true masks, per class, and two baselines that never look at the image.

- ``RegionBaseline``: the region the text names ("on the left" -> the left half), the whole image
  when it names none. What a user gets by drawing the phrase's rectangle.
- ``ClassPriorBaseline``: the mean training mask of the named class (where that class usually is),
  cut to the named region and thresholded at the cut that fits the training masks best. It knows
  the data's layout but not the image: a learned model must beat it to show that it looks.

Both follow the ``segment(image, text)`` protocol; only the image's size is read.
Texts whose truth is empty ("the bird" in a scene without one) are scored apart: the share of them
for which the segmenter correctly finds nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..images import ImageInput
from ..validation import check_positive_int
from .base import Segmenter, check_threshold, hard_mask
from .data import KINDS, MaskExample, parse_target


def mask_iou_dice(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(IoU, Dice) of two bool masks of one shape; both empty counts as a perfect match."""
    pred, true = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {true.shape}")
    inter = float(np.logical_and(pred, true).sum())
    union = float(np.logical_or(pred, true).sum())
    total = float(pred.sum() + true.sum())
    if union == 0:
        return 1.0, 1.0
    return inter / union, 2.0 * inter / total


def _region_mask(box, width: int, height: int) -> np.ndarray:
    m = np.zeros((height, width), dtype=np.float32)
    if box is None:
        m[:] = 1.0
        return m
    x1, y1, x2, y2 = box
    m[int(round(y1 * height)):int(round(y2 * height)), int(round(x1 * width)):int(round(x2 * width))] = 1.0
    return m


class RegionBaseline(Segmenter):
    """The rectangle the text's location words name (whole image if none); ignores the pixels."""

    def __init__(self, kinds: Sequence[str] = KINDS, threshold: float = 0.5):
        self.kinds = tuple(kinds)
        self.threshold = check_threshold(threshold)

    def segment_many(self, image: ImageInput, texts) -> np.ndarray:
        """The rectangle each text's location words name (the whole image without one)."""
        img, texts = self._inputs(image, texts)
        return np.stack([_region_mask(parse_target(t, self.kinds)[1], img.width, img.height) for t in texts])


class ClassPriorBaseline(Segmenter):
    """Per class, the mean training mask (at ``size`` x ``size``), times the named region; see the module
    docstring. ``fit(examples)`` learns the priors and one threshold per class; the pixels are never read."""

    def __init__(self, kinds: Sequence[str] = KINDS, size: int = 64):
        self.kinds, self.size = tuple(kinds), check_positive_int(size, "size")
        self.priors: dict[str, np.ndarray] = {}
        self.thresholds: dict[str, float] = {}
        self.threshold = 0.5  # the priors are rescaled so that each class's own cut lands here

    def _resize(self, mask: np.ndarray, width: int, height: int) -> np.ndarray:
        if mask.shape == (height, width):
            return mask
        return np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))

    def fit(self, examples: Sequence[MaskExample]) -> "ClassPriorBaseline":
        """Learn each class's mean mask and best threshold from training examples."""
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for ex in examples:
            m = np.asarray(ex.mask, dtype=np.float32)
            if not m.any():
                continue
            m = self._resize(m, self.size, self.size)
            sums[ex.kind] = sums.get(ex.kind, 0) + m
            counts[ex.kind] = counts.get(ex.kind, 0) + 1
        if not sums:
            raise ValueError("no non-empty masks to fit class priors on")
        self.priors = {k: sums[k] / counts[k] for k in sums}
        grid = np.linspace(0.02, 0.9, 45)
        S = self.size
        for kind, prior in self.priors.items():
            rows = [ex for ex in examples if ex.kind == kind and np.asarray(ex.mask).any()][:500]
            true = np.stack([self._resize(np.asarray(ex.mask, dtype=np.float32), S, S) > 0.5 for ex in rows])
            soft = np.stack([prior * _region_mask(parse_target(ex.text, self.kinds)[1], S, S) for ex in rows])
            scores = []
            for t in grid:
                pred = soft > t
                inter = (pred & true).sum((1, 2))
                union = (pred | true).sum((1, 2))
                scores.append(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))
            self.thresholds[kind] = float(grid[int(np.argmax(scores))])
        return self

    def segment_many(self, image: ImageInput, texts) -> np.ndarray:
        """Each text's class prior, cut to its region; ``ValueError`` before ``fit``."""
        if not self.priors:
            raise ValueError("ClassPriorBaseline is not fitted: call fit(train_examples) first")
        img, texts = self._inputs(image, texts)
        W, H = img.size
        out = []
        for t in texts:
            kind, region = parse_target(t, self.kinds)
            if kind not in self.priors:
                out.append(np.zeros((H, W), dtype=np.float32))
                continue
            soft = self._resize(self.priors[kind], W, H) * _region_mask(region, W, H)
            # rescale so that this class's best cut becomes the shared threshold 0.5
            cut = self.thresholds[kind]
            out.append(np.where(soft > cut, 0.5 + 0.5 * (soft - cut) / max(1 - cut, 1e-6),
                                0.5 * soft / max(cut, 1e-6)).astype(np.float32))
        return np.stack(out)


def evaluate_segmenter(segmenter: Segmenter, examples: Sequence[MaskExample], threshold: float | None = None,
                       progress: bool = False) -> dict:
    """Mean IoU / Dice per class over the examples with a non-empty truth, and the share of empty-truth
    examples for which the segmenter found nothing.

    Returns ``{"classes": {kind: {"iou", "dice", "n"}}, "all": {"iou", "dice", "n"}, "nothing_found":
    {"accuracy", "n"}, "threshold"}``; ``all`` averages over examples (not classes).
    """
    t = check_threshold(segmenter.threshold if threshold is None else threshold)
    per: dict[str, list[tuple[float, float]]] = {}
    empty_ok: list[bool] = []
    # group texts by image so that segment_many runs once per image
    groups: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(id(ex.image), []).append(i)
    for idx in tqdm(list(groups.values()), desc="segmenting", disable=not progress):
        image = examples[idx[0]].image
        masks = segmenter.segment_many(image, [examples[i].text for i in idx])
        for i, soft in zip(idx, masks):
            ex = examples[i]
            true = np.asarray(ex.mask, dtype=np.float32) > 0.5
            pred = hard_mask(soft, t)
            if not true.any():
                empty_ok.append(not pred.any())
                continue
            per.setdefault(ex.kind, []).append(mask_iou_dice(pred, true))
    classes = {k: {"iou": float(np.mean([v[0] for v in vals])), "dice": float(np.mean([v[1] for v in vals])),
                   "n": len(vals)} for k, vals in sorted(per.items())}
    flat = [v for vals in per.values() for v in vals]
    return {
        "classes": classes,
        "all": {"iou": float(np.mean([v[0] for v in flat])) if flat else float("nan"),
                "dice": float(np.mean([v[1] for v in flat])) if flat else float("nan"), "n": len(flat)},
        "nothing_found": {"accuracy": float(np.mean(empty_ok)) if empty_ok else float("nan"), "n": len(empty_ok)},
        "threshold": t,
    }


def format_mask_table(results: dict[str, dict]) -> str:
    """A markdown table: one row per class, IoU / Dice columns per segmenter (``{name: evaluate_segmenter(...)}``)."""
    names = list(results)
    kinds = sorted({k for r in results.values() for k in r["classes"]})
    head = "| class | n | " + " | ".join(f"{n} IoU | {n} Dice" for n in names) + " |"
    sep = "|" + "---|" * (2 + 2 * len(names))
    rows = [head, sep]
    first = results[names[0]]
    for k in kinds:
        n = first["classes"].get(k, {}).get("n", 0)
        cells = []
        for name in names:
            c = results[name]["classes"].get(k)
            cells += [f"{c['iou']:.3f}", f"{c['dice']:.3f}"] if c else ["-", "-"]
        rows.append(f"| {k} | {n} | " + " | ".join(cells) + " |")
    cells = []
    for name in names:
        a = results[name]["all"]
        cells += [f"**{a['iou']:.3f}**", f"**{a['dice']:.3f}**"]
    rows.append(f"| **all** | {first['all']['n']} | " + " | ".join(cells) + " |")
    nf = " | ".join(f"{results[n]['nothing_found']['accuracy']:.3f} | -" for n in names)
    rows.append(f"| nothing found (accuracy) | {first['nothing_found']['n']} | {nf} |")
    return "\n".join(rows)


def plot_mask_examples(examples: Sequence[MaskExample], segmenters: dict[str, Segmenter], path=None,
                       max_examples: int = 6, dpi: int = 100):
    """A grid: one row per example, the true mask outlined in green, then one column per segmenter with its
    hard mask outlined in yellow and its IoU (or whether it rightly found nothing). Saves to ``path`` if
    given; returns the matplotlib ``Figure``."""
    import matplotlib.pyplot as plt

    from ..images import load_image

    examples = list(examples)[:max_examples]
    if not examples:
        raise ValueError("plot_mask_examples needs at least one example")
    cols = 1 + len(segmenters)
    fig, axes = plt.subplots(len(examples), cols, figsize=(2.2 * cols, 2.4 * len(examples)), squeeze=False)

    def show(ax, image, mask, color, title):
        rgb = np.asarray(load_image(image))
        ax.imshow(rgb, interpolation="nearest")
        m = np.asarray(mask, dtype=float)
        if m.any():
            ax.contour(m, levels=[0.5], colors=[color], linewidths=1.6)
            ax.imshow(np.dstack([np.ones_like(m)] * 3 + [0.35 * m]) * np.array([*_RGB[color], 1.0]),
                      interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")

    for row, ex in zip(axes, examples):
        truth = np.asarray(ex.mask, dtype=float) > 0.5
        show(row[0], ex.image, truth, "lime", f'"{ex.text}"\n' + ("truth" if truth.any() else "truth: not there"))
        for ax, (name, seg) in zip(row[1:], segmenters.items()):
            pred = hard_mask(seg.segment(ex.image, ex.text), seg.threshold)
            if not truth.any():
                label = "nothing found (right)" if not pred.any() else "found something (wrong)"
            else:
                label = "nothing found" if not pred.any() else f"IoU {mask_iou_dice(pred, truth)[0]:.2f}"
            show(ax, ex.image, pred, "yellow", f"{name}\n{label}")
    fig.tight_layout()
    if path is not None:
        from ..io import save_figure

        save_figure(fig, path, dpi=dpi)
    return fig


_RGB = {"lime": (0.0, 1.0, 0.0), "yellow": (1.0, 1.0, 0.0)}
