"""PIPE (Paint-by-Inpaint, arXiv 2404.18212) as (image, category, box) examples for pretraining.

A PIPE row is a pair of 512x512 JPEGs: ``target_img`` (a real photo with an object) and
``source_img`` (the same photo with the object inpainted away), plus instructions. The location
model learns p(box | source_img, class), so each example is:

- ``image``: ``source_img`` (the object is absent, as it will be when we insert);
- ``category``: ``Instruction_Class`` without its verb and article ("add a fire hydrant" ->
  "fire hydrant"), lower case;
- ``box``: xyxy pixels, float. The bounding box of ``PIPE_Masks``'s ``mask`` thresholded at
  ``> 127`` (the mask is a JPEG, so its edges are soft), ``x2``/``y2`` exclusive. PIPE has no box
  column. The masks join on (``target_img_dataset``, ``img_id``, ``ann_id``).
- Fallback when a row has no mask (or ``masks=None``): the **difference** of ``source_img`` and
  ``target_img``: per-pixel max channel difference ``> diff_threshold``, a 3x3 binary opening
  against JPEG and inpainting speckle, then the bbox of the largest 8-connected component.
  Inpainting changes pixels outside the object a little, so this box is noisier than the mask's.

Rows are dropped and counted (:class:`SkipReport`, one unit = one PIPE row) for: ``no_class``
(empty instruction), ``missing_mask`` (no mask and fallback off), ``empty_mask`` /
``empty_difference``, ``tiny_box`` (a side below ``min_box_size`` px), ``whole_image_box``
(area above ``max_box_fraction`` of the image), ``unreadable_mask``, and, where the images are
decoded anyway (streaming, or the difference fallback), ``size_mismatch`` / ``unreadable_image``.
Non-streaming, the mask's size stands for the image's (PIPE's masks are pixel-aligned with
``source_img``), so the 80 GB of images are not read up front.

How the join scales to 888k rows: PIPE_Masks is small (7 parquet files, 0.7 GB) next to PIPE
(163 files, 80 GB), so the mask table is always materialised (memory-mapped arrow) and reduced once
to a box per key with ``datasets.map`` (cached on disk, parallel with ``num_proc``). A dict from key
to box then joins in memory (about 100 bytes a row). Non-streaming, the new columns are
concatenated beside PIPE's arrow table and the kept rows are selected by an index mapping, so the
80 GB of images are never rewritten. Streaming, PIPE's rows stream and are joined one by one
against the same dict; the report then fills while you iterate (in the iterating process, and
it keeps adding up if you iterate again).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from .report import SkipReport

PIPE_ID = "paint-by-inpaint/PIPE"
PIPE_MASKS_ID = "paint-by-inpaint/PIPE_Masks"
KEY_COLUMNS = ("target_img_dataset", "img_id", "ann_id")
MASK_THRESHOLD = 127
OUTPUT_COLUMNS = ("image", "category", "box", "width", "height", "box_source", *KEY_COLUMNS)

_PREFIX = re.compile(r"^(?:please\s+)?(?:add|insert)(?:\s+|$)", re.I)
_ARTICLE = re.compile(r"^(?:a|an|the|some|one)(?:\s+|$)", re.I)


class PipeData(NamedTuple):
    """What :func:`load_pipe` returns: ``dataset, report = load_pipe(...)``."""

    dataset: Any  # datasets.Dataset | datasets.IterableDataset
    report: SkipReport


def class_from_instruction(text: str | None) -> str | None:
    """``"Add a fire hydrant."`` -> ``"fire hydrant"``; ``None`` when nothing is left."""
    s = " ".join(str(text or "").split()).strip(" .!\"'")
    s = _PREFIX.sub("", s)
    s = _ARTICLE.sub("", s).strip(" .!\"'").lower()
    return s or None


# -- boxes from pixels ---------------------------------------------------------------------------

def _open(x) -> Image.Image:
    """A PIL image from a PIL image, raw bytes, or datasets' {"bytes", "path"} dict."""
    if isinstance(x, Image.Image):
        return x
    if isinstance(x, dict):
        data, path = x.get("bytes"), x.get("path")
        x = data if data is not None else path
    if isinstance(x, (bytes, bytearray)):
        return Image.open(io.BytesIO(x))
    if isinstance(x, (str, os.PathLike)):
        return Image.open(x)
    raise ValueError(f"not an image: {type(x).__name__}")


def _bbox(binary: np.ndarray) -> list[float] | None:
    rows, cols = np.flatnonzero(binary.any(1)), np.flatnonzero(binary.any(0))
    if rows.size == 0:
        return None
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def box_from_mask(mask, threshold: int = MASK_THRESHOLD) -> tuple[list[float] | None, tuple[int, int]]:
    """(xyxy box of ``mask > threshold`` or None if empty, (width, height) of the mask)."""
    img = _open(mask)
    a = np.asarray(img.convert("L"))
    return _bbox(a > threshold), img.size


def box_from_difference(source, target, threshold: int = 32) -> tuple[list[float] | None, tuple[int, int]]:
    """(xyxy box of the largest changed region between two same-size images or None, (w, h))."""
    from scipy import ndimage

    s, t = _open(source).convert("RGB"), _open(target).convert("RGB")
    if s.size != t.size:
        raise ValueError(f"source_img is {s.size[0]}x{s.size[1]} but target_img is {t.size[0]}x{t.size[1]}")
    diff = np.abs(np.asarray(s, np.int16) - np.asarray(t, np.int16)).max(-1) > threshold
    diff = ndimage.binary_opening(diff, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(diff, structure=np.ones((3, 3), int))
    if n == 0:
        return None, s.size
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return _bbox(labels == largest), s.size


def _degenerate(box: list[float] | None, size: tuple[int, int], min_box_size: float,
                max_box_fraction: float, empty: str) -> str:
    """The skip reason for a box, or "" if it is usable."""
    if box is None:
        return empty
    w, h = box[2] - box[0], box[3] - box[1]
    if w < min_box_size or h < min_box_size:
        return "tiny_box"
    if w * h > max_box_fraction * size[0] * size[1]:
        return "whole_image_box"
    return ""


# -- batched functions for datasets.map (module level: datasets fingerprints them cheaply) --------

def _mask_boxes(masks: list, threshold: int) -> dict[str, list]:
    out = {"mask_box": [], "mask_width": [], "mask_height": [], "mask_error": []}
    for m in masks:
        try:
            box, (w, h) = box_from_mask(m, threshold)
            err = ""
        except (UnidentifiedImageError, OSError, ValueError) as e:
            box, w, h, err = None, 0, 0, f"unreadable mask ({e})"
        out["mask_box"].append(box)
        out["mask_width"].append(w)
        out["mask_height"].append(h)
        out["mask_error"].append(err)
    return out


def _difference_boxes(sources: list, targets: list, threshold: int) -> dict[str, list]:
    out = {"diff_box": [], "diff_width": [], "diff_height": [], "diff_error": []}
    for s, t in zip(sources, targets):
        try:
            box, (w, h) = box_from_difference(s, t, threshold)
            err = ""
        except ValueError as e:
            box, w, h, err = None, 0, 0, ("size_mismatch" if "but target_img" in str(e) else "unreadable_image")
        except (UnidentifiedImageError, OSError):
            box, w, h, err = None, 0, 0, "unreadable_image"
        out["diff_box"].append(box)
        out["diff_width"].append(w)
        out["diff_height"].append(h)
        out["diff_error"].append(err)
    return out


# -- loading -------------------------------------------------------------------------------------

def _load(source, split: str, streaming: bool, cache_dir):
    """A hub id, a local folder of parquet files, a parquet file, or an already loaded dataset."""
    import datasets

    if isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        return source
    if isinstance(source, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in source:
            raise ValueError(f"split {split!r} not in {list(source)}")
        return source[split]
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a hub id, a path or a datasets.Dataset, got {type(source).__name__}")
    path = Path(source)
    if path.is_file():
        return datasets.load_dataset("parquet", data_files={split: str(path)}, split=split,
                                     streaming=streaming, cache_dir=cache_dir)
    if path.exists() or str(source).startswith((".", "/")):
        if not path.is_dir():
            raise ValueError(f"PIPE source {source} does not exist")
        return datasets.load_dataset(str(path), split=split, streaming=streaming, cache_dir=cache_dir)
    return datasets.load_dataset(str(source), split=split, streaming=streaming, cache_dir=cache_dir)


def _require(ds, columns, what: str) -> None:
    names = ds.column_names if ds.column_names is not None else list(ds.features or {})
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"{what} lacks the column(s) {missing} (has {names})")


def _key(dataset, img_id, ann_id) -> tuple[str, str, str]:
    return (str(dataset).strip(), str(img_id).strip(), str(ann_id).strip())


def _mask_index(masks, split: str, cache_dir, threshold: int, num_proc) -> dict:
    """key -> (box or None, width, height, error) for every mask, computed once by datasets.map."""
    import datasets

    m = _load(masks, split, False, cache_dir)
    if isinstance(m, datasets.IterableDataset):
        raise ValueError("masks must be a materialised (non-streaming) dataset: it is the join index")
    _require(m, ("mask", *KEY_COLUMNS), "PIPE_Masks")
    if isinstance(m.features["mask"], datasets.Image):
        m = m.cast_column("mask", datasets.Image(decode=False))
    boxes = m.map(_mask_boxes, batched=True, batch_size=256, input_columns=["mask"], remove_columns=["mask"],
                  fn_kwargs={"threshold": threshold}, num_proc=num_proc, desc="PIPE_Masks: boxes")
    cols = boxes.select_columns([*KEY_COLUMNS, "mask_box", "mask_width", "mask_height", "mask_error"]).to_dict()
    index = {}
    for d, i, a, box, w, h, err in zip(*(cols[c] for c in (*KEY_COLUMNS, "mask_box", "mask_width",
                                                            "mask_height", "mask_error"))):
        index.setdefault(_key(d, i, a), (box, w, h, err))  # a duplicated key keeps its first mask
    return index


def _output_features(keep_target: bool):
    import datasets

    f = {"image": datasets.Image(), "category": datasets.Value("string"),
         "box": datasets.List(datasets.Value("float32"), length=4),
         "width": datasets.Value("int32"), "height": datasets.Value("int32"),
         "box_source": datasets.Value("string")}
    f.update({c: datasets.Value("string") for c in KEY_COLUMNS})
    if keep_target:
        f["target_img"] = datasets.Image()
    return f


def load_pipe(source=PIPE_ID, masks=PIPE_MASKS_ID, split: str = "train", streaming: bool = False, *,
              fallback: bool = True, min_box_size: float = 4.0, max_box_fraction: float = 0.95,
              mask_threshold: int = MASK_THRESHOLD, diff_threshold: int = 32, num_proc: int | None = None,
              cache_dir: str | os.PathLike | None = None, keep_target: bool = False) -> PipeData:
    """Load PIPE as ``image`` / ``category`` / ``box`` examples, with a report of dropped rows.

    Args:
        source: the PIPE hub id, a local folder of its parquet files (``data/train-*.parquet``), one
            parquet file, or an already loaded ``datasets`` (Iterable)Dataset.
        masks: the same for PIPE_Masks, or ``None`` to take every box from the image difference.
        split: ``"train"`` (888,230 rows) or ``"test"`` (752).
        streaming: stream PIPE (an ``IterableDataset``); the mask table is still materialised.
        fallback: use the image difference for rows without a mask (else they are dropped).
        min_box_size: drop boxes with a side shorter than this, in pixels.
        max_box_fraction: drop boxes covering more than this fraction of the image.
        mask_threshold / diff_threshold: binarisation thresholds (0-255).
        num_proc: processes for ``datasets.map`` (mask decoding), non-streaming.
        cache_dir: the ``datasets`` cache folder.
        keep_target: also keep ``target_img`` (the photo with the object), e.g. for inspection.

    Returns:
        :class:`PipeData` ``(dataset, report)``. ``dataset`` has the columns ``image`` (PIL,
        decoded by ``datasets``), ``category`` (str), ``box`` (4 floats, xyxy pixels of ``image``),
        ``width``, ``height``, ``box_source`` ("mask" | "difference") and the three key columns.
        Non-streaming, ``report`` is complete on return; streaming, it fills during iteration.
    """
    import datasets

    if not 0 < max_box_fraction <= 1:
        raise ValueError(f"max_box_fraction must be in (0, 1], got {max_box_fraction}")
    if min_box_size < 0:
        raise ValueError(f"min_box_size must be >= 0, got {min_box_size}")
    if masks is None and not fallback:
        raise ValueError("masks=None needs fallback=True (boxes from the image difference)")
    pipe = _load(source, split, streaming, cache_dir)
    needed = ["source_img", "Instruction_Class", *KEY_COLUMNS] + (["target_img"] if fallback or keep_target else [])
    _require(pipe, needed, "PIPE")
    index = _mask_index(masks, split, cache_dir, mask_threshold, num_proc) if masks is not None else {}
    report = SkipReport(name=f"pipe/{split}")
    params = dict(fallback=fallback, min_box_size=min_box_size, max_box_fraction=max_box_fraction,
                  diff_threshold=diff_threshold)
    if isinstance(pipe, datasets.IterableDataset):
        return PipeData(_stream(pipe, index, report, keep_target, **params), report)
    return PipeData(_materialised(pipe, index, report, keep_target, num_proc, **params), report)


def _row_verdict(category, key, index, fallback, min_box_size, max_box_fraction):
    """(reason, box, w, h, box_source) from the class and the mask; box_source "difference" = to compute."""
    if category is None:
        return "no_class", None, 0, 0, ""
    hit = index.get(key)
    if hit is None:
        return ("", None, 0, 0, "difference") if fallback else ("missing_mask", None, 0, 0, "")
    box, w, h, err = hit
    if err:
        return "unreadable_mask", None, 0, 0, ""
    reason = _degenerate(box, (w, h), min_box_size, max_box_fraction, "empty_mask")
    return reason, box, w, h, "mask"


def _materialised(pipe, index, report, keep_target, num_proc, *, fallback, min_box_size, max_box_fraction,
                  diff_threshold):
    import datasets

    cols = pipe.select_columns(["Instruction_Class", *KEY_COLUMNS]).to_dict()
    n = len(pipe)
    new = {"category": [""] * n, "box": [None] * n, "width": [0] * n, "height": [0] * n, "box_source": [""] * n}
    reasons = [""] * n
    to_diff = []
    for i, (text, d, img, ann) in enumerate(zip(*(cols[c] for c in ("Instruction_Class", *KEY_COLUMNS)))):
        category = class_from_instruction(text)
        reason, box, w, h, src = _row_verdict(category, _key(d, img, ann), index, fallback, min_box_size,
                                              max_box_fraction)
        reasons[i] = reason
        new["category"][i], new["box"][i], new["width"][i], new["height"][i] = category or "", box, w, h
        new["box_source"][i] = src
        if not reason and src == "difference":
            to_diff.append(i)
    if to_diff:
        sub = pipe.select(to_diff).select_columns(["source_img", "target_img"])
        for c in ("source_img", "target_img"):
            if isinstance(sub.features[c], datasets.Image):
                sub = sub.cast_column(c, datasets.Image(decode=False))
        diff = sub.map(_difference_boxes, batched=True, batch_size=64, input_columns=["source_img", "target_img"],
                       remove_columns=["source_img", "target_img"], fn_kwargs={"threshold": diff_threshold},
                       num_proc=num_proc, desc="PIPE: boxes from image differences").to_dict()
        for j, i in enumerate(to_diff):
            box, w, h, err = diff["diff_box"][j], diff["diff_width"][j], diff["diff_height"][j], diff["diff_error"][j]
            reasons[i] = err or _degenerate(box, (w, h), min_box_size, max_box_fraction, "empty_difference")
            new["box"][i], new["width"][i], new["height"][i] = box, w, h
    kept = []
    for i, reason in enumerate(reasons):
        if reason:
            d, img, ann = (cols[c][i] for c in KEY_COLUMNS)
            report.skip(reason, f"row {i} ({d}/{img}/{ann}, {cols['Instruction_Class'][i]!r})")
        else:
            kept.append(i)
    report.seen, report.kept = n, len(kept)
    for i in range(n):  # arrow needs a value of the right type in dropped rows too
        if new["box"][i] is None:
            new["box"][i] = [0.0, 0.0, 0.0, 0.0]
    feats = _output_features(False)
    extra = datasets.Dataset.from_dict(new, features=datasets.Features(
        {k: feats[k] for k in ("category", "box", "width", "height", "box_source")}))
    drop = [c for c in pipe.column_names if c not in ("source_img", *KEY_COLUMNS)
            and not (keep_target and c == "target_img")]
    # Concatenating columns and selecting rows by an index mapping leaves PIPE's image bytes in place.
    out = datasets.concatenate_datasets([pipe.remove_columns(drop), extra], axis=1).select(kept)
    out = out.rename_column("source_img", "image")
    for c in KEY_COLUMNS:
        if out.features[c] != datasets.Value("string"):
            out = out.cast_column(c, datasets.Value("string"))
    return out.select_columns([*OUTPUT_COLUMNS] + (["target_img"] if keep_target else []))


class _StreamJoin:
    """Joins one streamed PIPE row to its mask box; records the verdict in the report."""

    def __init__(self, index, report, *, fallback, min_box_size, max_box_fraction, diff_threshold):
        self.index, self.report = index, report
        self.fallback, self.min_box_size, self.max_box_fraction = fallback, min_box_size, max_box_fraction
        self.diff_threshold = diff_threshold

    def __call__(self, ex: dict) -> dict:
        key = _key(*(ex[c] for c in KEY_COLUMNS))
        category = class_from_instruction(ex["Instruction_Class"])
        reason, box, w, h, src = _row_verdict(category, key, self.index, self.fallback, self.min_box_size,
                                              self.max_box_fraction)
        try:
            size = _open(ex["source_img"]).size
        except (UnidentifiedImageError, OSError, ValueError):
            reason, size = reason or "unreadable_image", None
        if not reason and src == "difference":
            try:
                box, (w, h) = box_from_difference(ex["source_img"], ex["target_img"], self.diff_threshold)
                reason = _degenerate(box, (w, h), self.min_box_size, self.max_box_fraction, "empty_difference")
            except ValueError as e:
                reason = "size_mismatch" if "but target_img" in str(e) else "unreadable_image"
            except (UnidentifiedImageError, OSError):
                reason = "unreadable_image"
        if not reason and size != (w, h):
            reason = "size_mismatch"
        self.report.seen += 1
        if reason:
            self.report.skip(reason, f"{'/'.join(key)} ({ex['Instruction_Class']!r})")
        else:
            self.report.keep()
        return {"category": category or "", "box": box if not reason else [0.0] * 4, "width": w, "height": h,
                "box_source": src, "skip_reason": reason}


def _stream(pipe, index, report, keep_target, **params):
    import datasets

    feats = _output_features(keep_target)
    drop = [c for c in pipe.column_names or [] if c not in ("source_img", *KEY_COLUMNS)
            and not (keep_target and c == "target_img")]
    mapped_features = datasets.Features({**{c: v for c, v in feats.items() if c != "image"},
                                         "source_img": datasets.Image(), "skip_reason": datasets.Value("string")})
    out = pipe.map(_StreamJoin(index, report, **params), remove_columns=drop, features=mapped_features)
    out = out.filter(lambda ex: not ex["skip_reason"]).remove_columns(["skip_reason"])
    out = out.rename_column("source_img", "image")
    return out.select_columns([*OUTPUT_COLUMNS] + (["target_img"] if keep_target else []))


class PipeQueries:
    """A map-style PIPE dataset seen as a sequence of :class:`PlacementQuery` (one positive, no negatives).

    This is what the training datasets consume. Labels are read per row without touching the
    images; ``query.image`` decodes the row's ``image`` only when asked.
    """

    def __init__(self, dataset):
        import datasets

        if isinstance(dataset, datasets.IterableDataset):
            raise TypeError("PipeQueries needs random access: load PIPE with streaming=False "
                            "(or iterate the IterableDataset's rows directly)")
        _require(dataset, ("image", "category", "box", "width", "height", *KEY_COLUMNS), "PIPE examples")
        self.dataset = dataset
        self._labels = dataset.select_columns(["category", "box", "width", "height", *KEY_COLUMNS])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int | slice):
        from .query import PlacementQuery

        if isinstance(i, slice):
            return PipeQueries(self.dataset.select(range(len(self))[i]))
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} PIPE examples")
        i = i % len(self)
        row = self._labels[i]
        key = "/".join(str(row[c]) for c in KEY_COLUMNS)
        dataset = self.dataset
        return PlacementQuery(
            category=row["category"], positives=[row["box"]], negatives=[],
            image_source=lambda: dataset[i]["image"], image_id=key, query_id=f"pipe/{key}",
            width=int(row["width"]), height=int(row["height"]), meta={"dataset": "pipe"})


def as_queries(dataset) -> PipeQueries:
    """``load_pipe(...).dataset`` (non-streaming) as a sequence of placement queries."""
    return PipeQueries(dataset)
