"""PIPE (Paint-by-Inpaint, arXiv 2404.18212) as (image, category, box) examples for pretraining.

A PIPE row is a pair of 512x512 JPEGs: ``target_img`` (a real photo with an object) and
``source_img`` (the same photo with the object inpainted away), plus instructions. The location
model learns p(box | source_img, class), so each example is:

- ``image``: ``source_img`` (the object is absent, as it will be when we insert);
- ``category``: ``Instruction_Class`` without its verb and article ("add a fire hydrant" ->
  "fire hydrant"), lower case, with raw dataset names made plain ("teddy_bear" -> "teddy bear",
  "bow_(weapon)" -> "bow"). When it is empty, ``Instruction_Ref_Dataset`` and then
  ``Instruction_VLM-LLM`` are read the same way (counted in ``report.notes``).
- ``box``: xyxy pixels of ``image``, float, ``x2``/``y2`` exclusive: the bounding box of
  ``PIPE_Masks``'s ``mask`` thresholded at ``> 127`` (the mask is a JPEG, so its edges are soft).
  PIPE has no box column; the masks join on (``target_img_dataset``, ``img_id``, ``ann_id``).
  That mask is the **dilated inpainting mask** (PIPE dilates the object mask before inpainting it
  away), so boxes run a few pixels larger than the object; ``mask_erode=n`` erodes the mask by
  ``n`` image pixels first for tighter boxes.
- A mask of another size than the image is **resized onto the image** (stretched, bilinear, then
  thresholded): the mask is assumed to cover the whole image frame, as a resized copy rather than
  a crop, which is how the scripts that ran on the real train masks rescale them to the 512x512
  images. The box is thus the mask's box scaled by image/mask size on each axis (within a pixel),
  and the row is counted in ``report.notes["rescaled_mask"]``.
- Fallback when a row has no mask (or ``masks=None``): the **difference** of ``source_img`` and
  ``target_img``: per-pixel max channel difference ``> diff_threshold``, a 3x3 binary opening
  against JPEG and inpainting speckle, then the bbox of the largest 8-connected component.
  Inpainting changes pixels outside the object a little, so this box is noisier than the mask's.
- ``with_mask=True`` adds ``mask``: the binary region the box is the bbox of (the thresholded,
  resized, eroded object mask, or the difference component), as an L-mode image of the image's
  size with the object at 255.

The image size is read **once** (from the first readable ``source_img``, or ``image_size=``): PIPE's
images are all 512x512 (dataset card), so non-streaming never reads the 80 GB of images up front.

Rows are dropped and counted (:class:`SkipReport`, one unit = one PIPE row) for: ``bad_key`` (an
empty id), ``missing_image`` (no ``source_img`` bytes), ``no_class`` (every instruction empty),
``missing_mask`` (no mask and fallback off), ``empty_mask`` / ``eroded_away`` /
``empty_difference``, ``tiny_box`` (a side below ``min_box_size`` px), ``whole_image_box`` (area
above ``max_box_fraction`` of the image), ``unreadable_mask``, and, where the images are decoded
anyway (streaming, or the difference fallback), ``size_mismatch`` (an image of another size than
the split's) / ``unreadable_image``.

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
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .report import SkipReport

if TYPE_CHECKING:
    import datasets

PIPE_ID = "paint-by-inpaint/PIPE"
PIPE_MASKS_ID = "paint-by-inpaint/PIPE_Masks"
KEY_COLUMNS = ("target_img_dataset", "img_id", "ann_id")
# Where a class is read from, in order, and the note counted when a fallback column gave it.
CLASS_COLUMNS = ("Instruction_Class", "Instruction_Ref_Dataset", "Instruction_VLM-LLM")
CLASS_NOTES = {"Instruction_Ref_Dataset": "class_from_ref_dataset", "Instruction_VLM-LLM": "class_from_vlm_llm"}
MASK_THRESHOLD = 127
OUTPUT_COLUMNS = ("image", "category", "box", "width", "height", "box_source", *KEY_COLUMNS)
SIZE_PROBE_ROWS = 64  # rows tried to find one readable source_img (the split's image size)
# What reading one bad image cell can raise: it costs that row only.
IMAGE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)

_PREFIX = re.compile(r"^(?:please\s+)?(?:add|insert)(?:\s+|$)", re.I)
_ARTICLE = re.compile(r"^(?:a|an|the|some|one)(?:\s+|$)", re.I)
_QUALIFIER = re.compile(r"\s*\([^)]*\)")  # LVIS disambiguation: "bow_(weapon)"


class PipeData(NamedTuple):
    """What :func:`load_pipe` returns: ``dataset, report = load_pipe(...)``."""

    dataset: Any  # datasets.Dataset | datasets.IterableDataset
    report: SkipReport


def class_from_instruction(text: str | None) -> str | None:
    """``"Add a fire hydrant."`` -> ``"fire hydrant"``; ``"add a bow_(weapon)"`` -> ``"bow"``; None if empty."""
    s = " ".join(str(text or "").replace("_", " ").split()).strip(" .!\"'")
    s = _PREFIX.sub("", s)
    s = _ARTICLE.sub("", s)
    s = " ".join(_QUALIFIER.sub("", s).split()).strip(" .!\"'").lower()
    return s or None


def class_of_row(row: dict) -> tuple[str | None, str]:
    """(class, the column it came from) from the first non-empty instruction of ``CLASS_COLUMNS``."""
    for column in CLASS_COLUMNS:
        category = class_from_instruction(row.get(column))
        if category is not None:
            return category, column
    return None, ""


# -- masks and boxes from pixels -----------------------------------------------------------------

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


def _has_image(x) -> bool:
    """Whether a cell holds image data at all (None, empty bytes and an empty dict do not)."""
    if isinstance(x, Image.Image):
        return True
    if isinstance(x, dict):
        return bool(x.get("bytes")) or bool(x.get("path"))
    return bool(x)


def _bbox(binary: np.ndarray) -> list[float] | None:
    rows, cols = np.flatnonzero(binary.any(1)), np.flatnonzero(binary.any(0))
    if rows.size == 0:
        return None
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def object_mask(mask, image_size: tuple[int, int] | None = None, threshold: int = MASK_THRESHOLD,
                erode: int = 0) -> tuple[np.ndarray, bool]:
    """(bool (H, W) object mask in the image's frame, whether it had to be resized).

    ``mask`` (PIL, bytes or datasets' dict) is resized onto ``image_size`` (stretched, bilinear) when
    its size differs, thresholded at ``> threshold`` and eroded by ``erode`` pixels of the image
    (pixels beyond the image border count as object, so an object cut by the border keeps its edge).
    """
    img = _open(mask).convert("L")
    rescaled = image_size is not None and img.size != tuple(image_size)
    if rescaled:
        img = img.resize(tuple(image_size), Image.BILINEAR)
    return _erode(np.asarray(img) > threshold, erode), rescaled


def _erode(binary: np.ndarray, pixels: int) -> np.ndarray:
    """``binary`` eroded by ``pixels`` (a (2n+1)-square, = n steps of 3x3); beyond the border counts as set."""
    box = _bbox(binary) if pixels > 0 else None
    if box is None:
        return binary
    from scipy import ndimage

    # Only the object's bbox (plus one row of background) can change: erode that crop alone.
    h, w = binary.shape
    x0, y0, x1, y1 = max(int(box[0]) - 1, 0), max(int(box[1]) - 1, 0), min(int(box[2]) + 1, w), min(int(box[3]) + 1, h)
    out = np.zeros_like(binary)
    crop = binary[y0:y1, x0:x1].view(np.uint8)
    out[y0:y1, x0:x1] = ndimage.minimum_filter(crop, size=2 * int(pixels) + 1, mode="constant", cval=1) > 0
    return out


def box_from_mask(mask, threshold: int = MASK_THRESHOLD, image_size: tuple[int, int] | None = None,
                  erode: int = 0) -> tuple[list[float] | None, tuple[int, int]]:
    """(xyxy box of the object mask, or None if empty, (width, height) of the frame it is in).

    The frame is ``image_size`` when given (the mask is mapped onto it, see :func:`object_mask`),
    else the mask's own.
    """
    m, _ = object_mask(mask, image_size, threshold, erode)
    return _bbox(m), (m.shape[1], m.shape[0])


def difference_region(source, target, threshold: int = 32) -> np.ndarray:
    """Bool (H, W): the largest changed region between two same-size images (all False if none)."""
    from scipy import ndimage

    s, t = _open(source).convert("RGB"), _open(target).convert("RGB")
    if s.size != t.size:
        raise ValueError(f"source_img is {s.size[0]}x{s.size[1]} but target_img is {t.size[0]}x{t.size[1]}")
    diff = np.abs(np.asarray(s, np.int16) - np.asarray(t, np.int16)).max(-1) > threshold
    diff = ndimage.binary_opening(diff, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(diff, structure=np.ones((3, 3), int))
    if n == 0:
        return np.zeros(diff.shape, bool)
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return labels == largest


def box_from_difference(source, target, threshold: int = 32) -> tuple[list[float] | None, tuple[int, int]]:
    """(xyxy box of the largest changed region between two same-size images or None, (w, h))."""
    region = difference_region(source, target, threshold)
    return _bbox(region), (region.shape[1], region.shape[0])


def _png(binary: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(binary.astype(np.uint8) * 255).save(buf, "PNG", compress_level=1)  # fast; masks compress anyway
    return buf.getvalue()


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

def _mask_boxes(masks: list, image_size, threshold: int, erode: int, with_mask: bool) -> dict[str, list]:
    out = {"mask_box": [], "mask_rescaled": [], "mask_error": [], "object_mask": []}
    for m in masks:
        box, rescaled, err, png = None, False, "", None
        try:
            binary, rescaled = object_mask(m, image_size, threshold)
            box = _bbox(binary)
            if box is not None and erode > 0:
                binary = _erode(binary, erode)
                box = _bbox(binary)
                err = "" if box is not None else "eroded_away"
            if with_mask and box is not None:
                png = {"bytes": _png(binary), "path": None}
        except IMAGE_ERRORS as e:
            err = f"unreadable mask ({e})"
        out["mask_box"].append(box)
        out["mask_rescaled"].append(rescaled)
        out["mask_error"].append(err)
        out["object_mask"].append(png)
    if not with_mask:
        del out["object_mask"]
    return out


def _difference(source, target, threshold: int) -> tuple[np.ndarray | None, str]:
    """(changed region or None, error reason)."""
    if not _has_image(source) or not _has_image(target):
        return None, "missing_image"
    try:
        return difference_region(source, target, threshold), ""
    except ValueError as e:
        return None, ("size_mismatch" if "but target_img" in str(e) else "unreadable_image")
    except IMAGE_ERRORS:
        return None, "unreadable_image"


def _difference_boxes(sources: list, targets: list, threshold: int, with_mask: bool) -> dict[str, list]:
    out = {"diff_box": [], "diff_width": [], "diff_height": [], "diff_error": [], "object_mask": []}
    for s, t in zip(sources, targets):
        region, err = _difference(s, t, threshold)
        box = _bbox(region) if region is not None else None
        out["diff_box"].append(box)
        out["diff_width"].append(region.shape[1] if region is not None else 0)
        out["diff_height"].append(region.shape[0] if region is not None else 0)
        out["diff_error"].append(err)
        out["object_mask"].append({"bytes": _png(region), "path": None} if with_mask and box is not None else None)
    if not with_mask:
        del out["object_mask"]
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


def _columns(ds) -> list[str]:
    return list(ds.column_names if ds.column_names is not None else (ds.features or {}))


def _require(ds, columns, what: str) -> None:
    names = _columns(ds)
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"{what} lacks the column(s) {missing} (has {names})")


def _id(value) -> str:
    return "" if value is None else str(value).strip()


def _key(dataset, img_id, ann_id) -> tuple[str, str, str]:
    return (_id(dataset), _id(img_id), _id(ann_id))


def _undecoded(ds, columns):
    """``ds`` with its Image columns among ``columns`` cast to raw {"bytes", "path"} (no decoding)."""
    import datasets

    for c in columns:
        if isinstance((ds.features or {}).get(c), datasets.Image):
            ds = ds.cast_column(c, datasets.Image(decode=False))
    return ds


def _image_size(pipe) -> tuple[int, int] | None:
    """The split's image size from the first readable ``source_img`` (header only); None if no rows."""
    probe = _undecoded(pipe.select_columns(["source_img"]), ["source_img"])
    rows = itertools.islice(iter(probe), SIZE_PROBE_ROWS)
    seen = 0
    for row in rows:
        seen += 1
        try:
            return _open(row["source_img"]).size
        except IMAGE_ERRORS:
            continue
    if seen == 0:
        return None
    raise ValueError(f"PIPE: none of the first {seen} source_img cells is a readable image, so the split's "
                     "image size is unknown; pass image_size=(width, height)")


def _present_images(pipe) -> np.ndarray:
    """Per row, whether ``source_img`` holds bytes or a path: read from arrow's validity bitmaps and
    offsets only, so the image bytes are not touched."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = pipe.data.column("source_img")
    if pa.types.is_struct(col.type):
        has = None
        for field, length in (("bytes", pc.binary_length), ("path", pc.utf8_length)):
            if col.type.get_field_index(field) >= 0:
                filled = pc.fill_null(pc.greater(length(pc.struct_field(col, field)), 0), False)
                has = filled if has is None else pc.or_(has, filled)
        present = pc.is_valid(col) if has is None else pc.and_(pc.is_valid(col), has)
    elif pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        present = pc.fill_null(pc.greater(pc.binary_length(col), 0), False)
    else:
        present = pc.is_valid(col)
    out = np.asarray(present.to_numpy(zero_copy_only=False), bool)
    if pipe._indices is not None:  # a selection of an underlying table: map through its index
        out = out[pipe._indices.column(0).to_numpy()]
    return out


@dataclass(frozen=True)
class _Rules:
    """How rows become examples: the same for the materialised and the streaming paths."""

    fallback: bool
    min_box_size: float
    max_box_fraction: float
    diff_threshold: int
    image_size: tuple[int, int] | None
    with_mask: bool


class _MaskIndex(NamedTuple):
    """key -> (box or None, rescaled, error, row in ``table``); ``table`` holds ``object_mask`` if asked."""

    entries: dict
    table: Any  # datasets.Dataset (the mapped mask table) or None


def _mask_index(masks, split: str, cache_dir, image_size, threshold: int, erode: int, with_mask: bool,
                num_proc) -> _MaskIndex:
    """Every mask reduced once, by datasets.map, to its box in the image frame."""
    import datasets

    m = _load(masks, split, False, cache_dir)
    if isinstance(m, datasets.IterableDataset):
        raise ValueError("masks must be a materialised (non-streaming) dataset: it is the join index")
    _require(m, ("mask", *KEY_COLUMNS), "PIPE_Masks")
    m = _undecoded(m.select_columns(["mask", *KEY_COLUMNS]), ["mask"])
    features = datasets.Features({**{c: m.features[c] for c in KEY_COLUMNS},
                                  "mask_box": datasets.List(datasets.Value("float32")),
                                  "mask_rescaled": datasets.Value("bool"), "mask_error": datasets.Value("string"),
                                  **({"object_mask": datasets.Image()} if with_mask else {})})
    size = tuple(image_size) if image_size is not None else None
    table = m.map(_mask_boxes, batched=True, batch_size=256, input_columns=["mask"], remove_columns=["mask"],
                  fn_kwargs={"image_size": size, "threshold": threshold, "erode": erode, "with_mask": with_mask},
                  features=features, num_proc=num_proc, desc="PIPE_Masks: boxes")
    cols = table.select_columns([*KEY_COLUMNS, "mask_box", "mask_rescaled", "mask_error"]).to_dict()
    entries = {}
    for row, (d, i, a, box, rescaled, err) in enumerate(zip(*(cols[c] for c in (*KEY_COLUMNS, "mask_box",
                                                                               "mask_rescaled", "mask_error")))):
        key = _key(d, i, a)
        if all(key):  # a mask with an empty id can join nothing
            entries.setdefault(key, (box, rescaled, err, row))  # a duplicated key keeps its first mask
    return _MaskIndex(entries, table if with_mask else None)


def _output_features(keep_columns: Sequence[str], pipe_features, with_mask: bool):
    import datasets

    f = {"image": datasets.Image(), "category": datasets.Value("string"),
         "box": datasets.List(datasets.Value("float32"), length=4),
         "width": datasets.Value("int32"), "height": datasets.Value("int32"),
         "box_source": datasets.Value("string")}
    f.update({c: datasets.Value("string") for c in KEY_COLUMNS})
    if with_mask:
        f["mask"] = datasets.Image()
    for c in keep_columns:
        f[c] = pipe_features[c]
    return f


def load_pipe(source: str | os.PathLike | datasets.Dataset | datasets.IterableDataset = PIPE_ID,
              masks: str | os.PathLike | datasets.Dataset | None = PIPE_MASKS_ID, split: str = "train", streaming: bool = False, *,
              fallback: bool = True, min_box_size: float = 4.0, max_box_fraction: float = 0.95,
              mask_threshold: int = MASK_THRESHOLD, mask_erode: int = 0, diff_threshold: int = 32,
              image_size: tuple[int, int] | None = None, with_mask: bool = False,
              keep_columns: Sequence[str] = (), num_proc: int | None = None,
              cache_dir: str | os.PathLike | None = None, keep_target: bool = False) -> PipeData:
    """Load PIPE as ``image`` / ``category`` / ``box`` examples, with a report of dropped rows.

    Args:
        source: the PIPE hub id, a local folder of its parquet files (``data/train-*.parquet``), one
            parquet file, or an already loaded ``datasets`` (Iterable)Dataset.
        masks: the same for PIPE_Masks, or ``None`` (``"none"``) to take every box from the image difference.
        split: ``"train"`` (888,230 rows) or ``"test"`` (752).
        streaming: stream PIPE (an ``IterableDataset``); the mask table is still materialised.
        fallback: use the image difference for rows without a mask (else they are dropped).
        min_box_size: drop boxes with a side shorter than this, in pixels.
        max_box_fraction: drop boxes covering more than this fraction of the image.
        mask_threshold: the binarisation threshold of masks (0-255): a pixel above it is the object.
        mask_erode: erode the mask by this many image pixels before taking its box. PIPE's masks are
            the dilated inpainting masks, so their boxes run a few pixels large; erosion tightens them.
        diff_threshold: the binarisation threshold (0-255) of the source/target difference, for
            rows without a mask.
        image_size: (width, height) of every ``source_img``; ``None`` reads it once from the first
            readable image (PIPE: 512x512). Masks of another size are resized onto it.
        with_mask: add a ``mask`` column: the binary region whose bbox is ``box``, in the image's
            frame (an L-mode PIL image of the image's size, object = 255).
        keep_columns: PIPE columns to carry through unchanged (e.g. ``"object_location"``).
        num_proc: processes for ``datasets.map`` (mask decoding), non-streaming.
        cache_dir: the ``datasets`` cache folder.
        keep_target: also keep ``target_img`` (the photo with the object), e.g. for inspection.

    Returns:
        :class:`PipeData` ``(dataset, report)``. ``dataset`` has the columns ``image`` (PIL,
        decoded by ``datasets``), ``category`` (str), ``box`` (4 floats, xyxy pixels of ``image``),
        ``width``, ``height``, ``box_source`` ("mask" | "difference"), the three key columns (str),
        then ``mask`` and ``keep_columns`` if asked. Non-streaming, ``report`` is complete on
        return; streaming, it fills during iteration. ``report.notes`` counts kept rows that needed
        a rescaled mask (``rescaled_mask``) or a class from a fallback column.
    """
    import datasets

    if not 0 < max_box_fraction <= 1:
        raise ValueError(f"max_box_fraction must be in (0, 1], got {max_box_fraction}")
    if min_box_size < 0:
        raise ValueError(f"min_box_size must be >= 0, got {min_box_size}")
    if isinstance(mask_erode, bool) or not isinstance(mask_erode, (int, np.integer)) or mask_erode < 0:
        raise ValueError(f"mask_erode must be a whole number of pixels >= 0, got {mask_erode!r}")
    if image_size is not None:
        if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in image_size)):
            raise ValueError(f"image_size must be (width, height) in positive whole pixels, got {image_size!r}")
        image_size = (int(image_size[0]), int(image_size[1]))
    if isinstance(masks, str) and masks.lower() in ("", "none"):  # a config's "none"
        masks = None
    if masks is None and not fallback:
        raise ValueError("masks=None needs fallback=True (boxes from the image difference)")
    if isinstance(keep_columns, str):
        keep_columns = [keep_columns]
    keep_columns = [c for c in keep_columns if c not in ("source_img", *KEY_COLUMNS)]
    if keep_target and "target_img" not in keep_columns:
        keep_columns.append("target_img")
    pipe = _load(source, split, streaming, cache_dir)
    names = _columns(pipe)
    _require(pipe, ["source_img", *KEY_COLUMNS] + (["target_img"] if fallback else []) + keep_columns, "PIPE")
    if not any(c in names for c in CLASS_COLUMNS):
        raise ValueError(f"PIPE lacks every instruction column {list(CLASS_COLUMNS)} (has {names})")
    index = _MaskIndex({}, None)
    if masks is not None:
        if image_size is None:
            image_size = _image_size(pipe)
        index = _mask_index(masks, split, cache_dir, image_size, mask_threshold, mask_erode, with_mask, num_proc)
    report = SkipReport(name=f"pipe/{split}")
    rules = _Rules(fallback=fallback, min_box_size=min_box_size, max_box_fraction=max_box_fraction,
                   diff_threshold=diff_threshold, image_size=image_size, with_mask=with_mask)
    if isinstance(pipe, datasets.IterableDataset):
        return PipeData(_stream(pipe, index, report, keep_columns, rules), report)
    return PipeData(_materialised(pipe, index, report, keep_columns, num_proc, rules), report)


class _Verdict(NamedTuple):
    reason: str  # the skip reason, "" to keep
    category: str | None
    class_column: str
    box: list[float] | None
    size: tuple[int, int] | None
    source: str  # "mask" | "difference" (to compute) | ""
    rescaled: bool
    mask_row: int


def _verdict(row: dict, index: _MaskIndex, rules: _Rules, has_image: bool) -> _Verdict:
    """The verdict on one PIPE row from its key, class and mask (before any image is decoded)."""
    key = _key(*(row.get(c) for c in KEY_COLUMNS))
    category, column = class_of_row(row)
    v = _Verdict("", category, column, None, None, "", False, -1)
    if not all(key):
        return v._replace(reason="bad_key")
    if not has_image:
        return v._replace(reason="missing_image")
    if category is None:
        return v._replace(reason="no_class")
    hit = index.entries.get(key)
    if hit is None:
        return v._replace(source="difference") if rules.fallback else v._replace(reason="missing_mask")
    box, rescaled, err, mask_row = hit
    v = v._replace(box=box, size=rules.image_size, source="mask", rescaled=rescaled, mask_row=mask_row)
    if err:
        return v._replace(reason="eroded_away" if err == "eroded_away" else "unreadable_mask")
    return v._replace(reason=_degenerate(box, rules.image_size, rules.min_box_size, rules.max_box_fraction,
                                         "empty_mask"))


def _record(report: SkipReport, v: _Verdict, where: str) -> None:
    """Count a row's verdict: a skip with its example, or a kept row and its notes."""
    report.seen += 1
    if v.reason:
        report.skip(v.reason, where)
        return
    report.keep()
    if v.rescaled:
        report.note("rescaled_mask")
    if v.class_column in CLASS_NOTES:
        report.note(CLASS_NOTES[v.class_column])


def _where(row: dict, i: int | None = None) -> str:
    key = "/".join(_id(row.get(c)) for c in KEY_COLUMNS)
    texts = [row.get(c) for c in CLASS_COLUMNS if row.get(c)]
    return (f"row {i} " if i is not None else "") + f"({key}, {texts[0] if texts else ''!r})"


def _materialised(pipe, index: _MaskIndex, report, keep_columns, num_proc, rules: _Rules):
    import datasets

    text_columns = [c for c in CLASS_COLUMNS if c in pipe.column_names]
    cols = pipe.select_columns([*text_columns, *KEY_COLUMNS]).to_dict()
    n = len(pipe)
    present = _present_images(pipe)
    verdicts = []
    for i in range(n):
        row = {c: cols[c][i] for c in cols}
        verdicts.append(_verdict(row, index, rules, bool(present[i])))
    to_diff = [i for i, v in enumerate(verdicts) if not v.reason and v.source == "difference"]
    diff = None
    if to_diff:
        sub = _undecoded(pipe.select(to_diff).select_columns(["source_img", "target_img"]),
                         ["source_img", "target_img"])
        features = datasets.Features({"diff_box": datasets.List(datasets.Value("float32")),
                                      "diff_width": datasets.Value("int32"), "diff_height": datasets.Value("int32"),
                                      "diff_error": datasets.Value("string"),
                                      **({"object_mask": datasets.Image()} if rules.with_mask else {})})
        diff = sub.map(_difference_boxes, batched=True, batch_size=64, input_columns=["source_img", "target_img"],
                       remove_columns=["source_img", "target_img"], features=features,
                       fn_kwargs={"threshold": rules.diff_threshold, "with_mask": rules.with_mask},
                       num_proc=num_proc, desc="PIPE: boxes from image differences")
        d = diff.select_columns(["diff_box", "diff_width", "diff_height", "diff_error"]).to_dict()
        for j, i in enumerate(to_diff):
            box, size, err = d["diff_box"][j], (d["diff_width"][j], d["diff_height"][j]), d["diff_error"][j]
            reason = err or _degenerate(box, size, rules.min_box_size, rules.max_box_fraction, "empty_difference")
            verdicts[i] = verdicts[i]._replace(reason=reason, box=box, size=size, mask_row=j)
    kept = []
    for i, v in enumerate(verdicts):
        _record(report, v, _where({c: cols[c][i] for c in cols}, i) if v.reason else "")
        if not v.reason:
            kept.append(i)
    zero = [0.0, 0.0, 0.0, 0.0]  # arrow needs a value of the right type in dropped rows too
    new = {"category": [v.category or "" for v in verdicts],
           "box": [v.box if v.box is not None and not v.reason else zero for v in verdicts],
           "width": [v.size[0] if v.size else 0 for v in verdicts],
           "height": [v.size[1] if v.size else 0 for v in verdicts],
           "box_source": [v.source if not v.reason else "" for v in verdicts]}
    feats = _output_features([], None, False)
    extra = datasets.Dataset.from_dict(new, features=datasets.Features(
        {k: feats[k] for k in ("category", "box", "width", "height", "box_source")}))
    if rules.with_mask:
        extra = datasets.concatenate_datasets([extra, _mask_column(verdicts, index, diff)], axis=1)
    drop = [c for c in pipe.column_names if c not in ("source_img", *KEY_COLUMNS, *keep_columns)]
    # Concatenating columns and selecting rows by an index mapping leaves PIPE's image bytes in place.
    out = datasets.concatenate_datasets([pipe.remove_columns(drop), extra], axis=1).select(kept)
    out = out.rename_column("source_img", "image")
    for c in KEY_COLUMNS:
        if out.features[c] != datasets.Value("string"):
            out = out.cast_column(c, datasets.Value("string"))
    return out.select_columns([*OUTPUT_COLUMNS] + (["mask"] if rules.with_mask else []) + list(keep_columns))


def _mask_column(verdicts: list[_Verdict], index: _MaskIndex, diff):
    """A one-column ("mask") dataset aligned with PIPE's rows, gathered from the mask and difference
    tables by an index mapping, then written once (it is small: a binary PNG per row)."""
    import datasets

    parts, offsets = [], {}
    for name, table in (("mask", index.table), ("difference", diff)):
        if table is not None and len(table):
            offsets[name] = sum(len(p) for p in parts)
            parts.append(table.select_columns(["object_mask"]))
    if not parts:
        return datasets.Dataset.from_dict({"mask": [None] * len(verdicts)},
                                          features=datasets.Features({"mask": datasets.Image()}))
    rows = [offsets[v.source] + v.mask_row if not v.reason and v.source in offsets else 0 for v in verdicts]
    gathered = datasets.concatenate_datasets(parts).select(rows).flatten_indices()
    return gathered.rename_column("object_mask", "mask")


class _StreamJoin:
    """Joins one streamed PIPE row to its mask box (same verdict as the materialised path); counts it."""

    def __init__(self, index: _MaskIndex, report: SkipReport, rules: _Rules):
        self.index, self.report, self.rules = index, report, rules

    def __call__(self, ex: dict) -> dict:
        rules = self.rules
        v = _verdict(ex, self.index, rules, _has_image(ex["source_img"]))
        region = None
        if not v.reason:
            try:
                size = _open(ex["source_img"]).size
            except IMAGE_ERRORS:
                v = v._replace(reason="unreadable_image")
        if not v.reason and v.source == "difference":
            region, err = _difference(ex["source_img"], ex["target_img"], rules.diff_threshold)
            box = _bbox(region) if region is not None else None
            wh = (region.shape[1], region.shape[0]) if region is not None else None
            v = v._replace(box=box, size=wh, reason=err or _degenerate(
                box, wh, rules.min_box_size, rules.max_box_fraction, "empty_difference"))
        if not v.reason and v.source == "mask" and size != v.size:
            v = v._replace(reason="size_mismatch")
        _record(self.report, v, _where(ex))
        out = {"category": v.category or "", "box": v.box if not v.reason else [0.0] * 4,
               "width": v.size[0] if v.size else 0, "height": v.size[1] if v.size else 0,
               "box_source": v.source if not v.reason else "", "skip_reason": v.reason}
        if rules.with_mask:
            mask = None
            if not v.reason and v.source == "mask":
                mask = self.index.table[v.mask_row]["object_mask"]
            elif not v.reason and region is not None:
                mask = {"bytes": _png(region), "path": None}
            out["mask"] = mask
        return out


def _stream(pipe, index: _MaskIndex, report, keep_columns, rules: _Rules):
    import datasets

    pipe = _undecoded(pipe, ["source_img", "target_img"])  # decoded here, so a bad image is a counted skip
    feats = _output_features(keep_columns, pipe.features, rules.with_mask)
    drop = [c for c in pipe.column_names or [] if c not in ("source_img", *KEY_COLUMNS, *keep_columns)]
    mapped = datasets.Features({**{c: v for c, v in feats.items() if c != "image"},
                                "source_img": datasets.Image(decode=False), "skip_reason": datasets.Value("string")})
    out = pipe.map(_StreamJoin(index, report, rules), remove_columns=drop, features=mapped)
    out = out.filter(lambda ex: not ex["skip_reason"]).remove_columns(["skip_reason"])
    out = out.rename_column("source_img", "image").cast_column("image", datasets.Image())
    for c in keep_columns:
        if isinstance(feats[c], datasets.Image):
            out = out.cast_column(c, datasets.Image())
    return out.select_columns([*OUTPUT_COLUMNS] + (["mask"] if rules.with_mask else []) + list(keep_columns))


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
