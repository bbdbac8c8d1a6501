"""Detection datasets in and out: COCO JSON (boxes, polygon or RLE masks) and YOLO txt.

Both formats read into one in-memory shape, a :class:`DetectionDataset` of :class:`ImageRecord`
with :class:`Annotation`. Every record keeps its original entry (the COCO dict, the YOLO line)
so that an image written back without changes reproduces its annotations exactly; only the
annotations that an augmentation touches are rebuilt.

Masks go through ``pycocotools.mask`` (polygons and uncompressed RLE via ``frPyObjects``,
compressed RLE as is). A YOLO line is five numbers, or a class and a polygon: it is split, not
parsed by a grammar, and kept verbatim.

A bad record (a missing image, an unknown class, a mask of another size than its image, an
annotation that is not a COCO annotation) drops its image, never the others: the image could not
be labelled correctly. Each is counted in :attr:`DetectionDataset.skipped` with a message that
names the file and the record; ``strict=True`` raises on the first one instead. A file that cannot
be read at all, or a dataset left with no image, is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["Annotation", "ImageRecord", "DetectionDataset", "read_coco", "read_yolo", "read_dataset",
           "decode_segmentation", "encode_mask", "FORMATS", "IMAGE_EXTENSIONS"]

FORMATS = ("coco", "yolo")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class Annotation:
    """One labelled object: its class name, box ``(x, y, w, h)`` pixels and optional segmentation.

    ``segmentation`` is COCO's: a list of polygons or an RLE dict, pixels of the image. ``raw`` is
    the entry as read (a COCO dict or a YOLO line); ``None`` for an object that augmentation added
    or changed, which the writers then build from the fields.
    """

    category: str
    bbox: tuple[float, float, float, float]
    segmentation: Any = None
    raw: Any = None
    flags: dict = field(default_factory=dict)
    changed: bool = False

    @property
    def inserted(self) -> bool:
        """Whether augmentation added this object (it has no original entry)."""
        return self.raw is None

    def to_json(self) -> dict:
        """A JSON-ready dict (what shards carry from the workers to the writer)."""
        return {"category": self.category, "bbox": list(self.bbox), "segmentation": self.segmentation,
                "raw": self.raw, "flags": self.flags, "changed": self.changed}

    @classmethod
    def from_json(cls, d: dict) -> "Annotation":
        """The inverse of :meth:`to_json`."""
        return cls(d["category"], tuple(d["bbox"]), d.get("segmentation"), d.get("raw"), d.get("flags") or {},
                   bool(d.get("changed")))

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """The box as (x1, y1, x2, y2) pixels."""
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)


@dataclass
class ImageRecord:
    """One image and its annotations. ``key`` is the path relative to the image root: it names the
    output files and seeds the image's random draws. ``raw`` is the COCO image entry (``None`` for YOLO)."""

    key: str
    path: str
    width: int
    height: int
    annotations: list[Annotation] = field(default_factory=list)
    raw: dict | None = None


@dataclass
class DetectionDataset:
    """A detection dataset read by :func:`read_coco` or :func:`read_yolo`.

    ``names`` are the class names; ``categories`` the COCO category entries (built from ``names``
    for YOLO); ``meta`` the COCO file's other top-level keys (``info``, ``licenses``...).
    ``skipped`` counts the records left out by reason, ``problems`` holds their messages.
    """

    format: str
    source: str
    image_root: str
    names: list[str]
    records: list[ImageRecord]
    categories: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def class_counts(self) -> Counter:
        """Objects per class name over the whole dataset."""
        return Counter(a.category for r in self.records for a in r.annotations)


class _Skip(Exception):
    """A bad record: (reason, message)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _skip(dataset: DetectionDataset, err: _Skip, strict: bool) -> None:
    if strict:
        raise ValueError(str(err))
    dataset.skipped[err.reason] += 1
    dataset.problems.append(str(err))


def _finish(dataset: DetectionDataset, path: str) -> DetectionDataset:
    if not dataset.records:
        why = f" ({sum(dataset.skipped.values())} records skipped: {dict(dataset.skipped)})" if dataset.skipped else ""
        raise ValueError(f"{path}: empty dataset: no usable image{why}")
    dataset.records.sort(key=lambda r: r.key)
    return dataset


# -- masks ---------------------------------------------------------------------------------------

def decode_segmentation(segmentation, height: int, width: int, where: str = "segmentation") -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as an (H, W) bool mask.

    Raises:
        ValueError: the segmentation is malformed, or its RLE is of another size than the image.
    """
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, list):
            polys = [p for p in segmentation if len(p) >= 6]
            if not polys:
                raise ValueError("a polygon needs at least 3 points")
            rle = mask_utils.merge(mask_utils.frPyObjects([list(map(float, p)) for p in polys], height, width))
        elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
            size = [int(v) for v in segmentation["size"]]
            if size != [height, width]:
                raise ValueError(f"mask is {size[1]}x{size[0]} but the image is {width}x{height}")
            rle = segmentation
            if isinstance(rle["counts"], list):
                rle = mask_utils.frPyObjects(rle, height, width)
            elif isinstance(rle["counts"], str):
                rle = {"size": size, "counts": rle["counts"].encode("ascii")}
        else:
            raise ValueError("not a list of polygons or an RLE dict")
        return mask_utils.decode(rle).astype(bool)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    except (TypeError, KeyError, IndexError, UnicodeError) as e:
        raise ValueError(f"{where}: malformed segmentation ({type(e).__name__}: {e})") from None


def encode_mask(mask: np.ndarray) -> dict:
    """An (H, W) bool mask as COCO compressed RLE with string counts (JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


# -- COCO ----------------------------------------------------------------------------------------

def _load_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: malformed annotation file: {e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: malformed annotation file: not UTF-8 text") from None


def _coco_index(data: dict):
    """pycocotools' index of a loaded COCO dict (its ``createIndex`` chatters on stdout)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def read_coco(annotations: str | os.PathLike, images: str | os.PathLike | None = None, *,
              strict: bool = False, check_images: bool = True) -> DetectionDataset:
    """Read a COCO detection dataset.

    Args:
        annotations: the COCO JSON file.
        images: the folder that ``file_name`` is relative to (default: the JSON file's folder,
            or its ``images/`` subfolder when that holds the first image).
        strict: raise on the first bad record instead of skipping and counting it.
        check_images: check that each image file exists (a missing one is a bad record).

    Returns:
        The dataset; bad records are counted in ``skipped``.

    Raises:
        ValueError: the file is not COCO JSON, or no usable image is left.
        FileNotFoundError: the annotation file does not exist.
    """
    path = os.fspath(annotations)
    data = _load_json(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise ValueError(f"{path}: malformed annotation file: a COCO file is an object with 'images', "
                         "'annotations' and 'categories' lists")
    data.setdefault("annotations", [])
    if not isinstance(data["annotations"], list):
        raise ValueError(f"{path}: malformed annotation file: 'annotations' is not a list")
    categories, names, by_id = [], [], {}
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
            raise ValueError(f"{path}: category #{i}: needs an 'id' and a 'name'")
        categories.append(c)
        names.append(c["name"])
        by_id[c["id"]] = c["name"]
    root = os.fspath(images) if images is not None else _guess_root(path, data["images"])
    ds = DetectionDataset("coco", path, root, names, [], categories,
                          {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")})
    # pycocotools' index needs well-formed entries; the bad ones are set aside first, each counted
    good_images = []
    for i, im in enumerate(data["images"]):
        if isinstance(im, dict) and "id" in im and isinstance(im.get("file_name"), str):
            good_images.append(im)
        else:
            _skip(ds, _Skip("malformed", f"{path}: image #{i}: needs an 'id' and a 'file_name'"), strict)
    image_ids = {im["id"] for im in good_images}
    good_anns = []
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or "image_id" not in a or "category_id" not in a:
            _skip(ds, _Skip("malformed", f"{path}: annotation #{i}: needs an 'image_id' and a 'category_id'"), strict)
        elif a["image_id"] not in image_ids:
            _skip(ds, _Skip("unknown image", f"{path}: annotation {a.get('id', '#' + str(i))}: "
                                             f"image_id {a['image_id']!r} is not in 'images'"), strict)
        else:
            good_anns.append(a)
    coco = _coco_index({"images": good_images, "annotations": good_anns, "categories": categories})
    for im in good_images:
        where = f"{path}: image {im['id']} ({im['file_name']!r})"
        try:
            ds.records.append(_coco_record(coco, im, by_id, root, where, check_images))
        except _Skip as e:
            _skip(ds, e, strict)
    return _finish(ds, path)


def _guess_root(path: str, images: list) -> str:
    base = os.path.dirname(os.path.abspath(path))
    first = next((im.get("file_name") for im in images if isinstance(im, dict) and isinstance(im.get("file_name"), str)), None)
    if first and not os.path.exists(os.path.join(base, first)) and os.path.exists(os.path.join(base, "images", first)):
        return os.path.join(base, "images")
    return base


def _coco_record(coco, im: dict, by_id: dict, root: str, where: str, check_images: bool) -> ImageRecord:
    file = os.path.join(root, im["file_name"])
    if check_images and not os.path.isfile(file):
        raise _Skip("missing image", f"{where}: missing image {file}")
    w, h = im.get("width"), im.get("height")
    if not (isinstance(w, int) and isinstance(h, int)) or w < 1 or h < 1:
        if not check_images:
            raise _Skip("malformed", f"{where}: needs integer 'width' and 'height'")
        w, h = _image_size(file)
    rec = ImageRecord(im["file_name"], file, int(w), int(h), [], im)
    for a in coco.imgToAnns.get(im["id"], []):
        aw = f"{where}: annotation {a.get('id', '?')}"
        name = by_id.get(a["category_id"])
        if name is None:
            raise _Skip("unknown class", f"{aw}: unknown class: category_id {a['category_id']!r} is not in 'categories'")
        bbox = a.get("bbox")
        try:
            bbox = tuple(float(v) for v in bbox)
            if len(bbox) != 4 or not all(np.isfinite(bbox)) or bbox[2] < 0 or bbox[3] < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise _Skip("malformed", f"{aw}: bbox must be [x, y, w, h] with w, h >= 0, got {a.get('bbox')!r}") from None
        seg = a.get("segmentation") or None
        if seg is not None:
            try:
                if isinstance(seg, dict) and "size" in seg:  # a size check without decoding
                    size = [int(v) for v in seg["size"]]
                    if size != [rec.height, rec.width]:
                        raise ValueError(f"mask is {size[1]}x{size[0]} but the image is {rec.width}x{rec.height}")
                elif not isinstance(seg, list):
                    raise ValueError("not a list of polygons or an RLE dict")
            except (TypeError, ValueError) as e:
                raise _Skip("bad mask", f"{aw}: {e}") from None
        rec.annotations.append(Annotation(name, bbox, seg, a))
    return rec


# -- YOLO ----------------------------------------------------------------------------------------

def _yolo_names(root: str, names_file: str | None) -> tuple[list[str], str]:
    import yaml

    for cand in ([names_file] if names_file else [os.path.join(root, "data.yaml"), os.path.join(root, "data.yml")]):
        if cand and os.path.isfile(cand):
            try:
                with open(cand, encoding="utf-8") as f:
                    data = yaml.safe_load(f)
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise ValueError(f"{cand}: malformed YAML: {' '.join(str(e).split())}") from None
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, dict):
                try:
                    names = [names[k] for k in sorted(names, key=int)]
                except (TypeError, ValueError, KeyError):
                    names = None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
                raise ValueError(f"{cand}: needs 'names', a list of class names (or a dict id -> name)")
            return names, cand
    raise FileNotFoundError(f"{root}: no data.yaml with the class names (pass names_file=)")


def read_yolo(root: str | os.PathLike, *, names_file: str | os.PathLike | None = None,
              strict: bool = False) -> DetectionDataset:
    """Read a YOLO dataset: ``root/images/**`` with ``root/labels/**.txt`` beside, names in ``data.yaml``.

    A label line is ``class cx cy w h`` (normalised) or ``class x1 y1 x2 y2 ...`` (a normalised
    polygon, YOLO's segmentation format). An image without a label file has no objects.

    Args:
        root: the dataset folder.
        names_file: the YAML file with ``names`` (default: ``root/data.yaml``).
        strict: raise on the first bad record instead of skipping and counting it.

    Raises:
        ValueError: no ``images/`` folder, bad ``data.yaml``, or no usable image.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such YOLO dataset folder")
    names, names_path = _yolo_names(root, os.fspath(names_file) if names_file else None)
    images_dir, labels_dir = os.path.join(root, "images"), os.path.join(root, "labels")
    if not os.path.isdir(images_dir):
        raise ValueError(f"{root}: a YOLO dataset needs an images/ folder (labels in labels/)")
    ds = DetectionDataset("yolo", root, images_dir, names, [],
                          [{"id": i, "name": n} for i, n in enumerate(names)], {"names_file": names_path})
    stems = {}
    for dirpath, _, files in os.walk(images_dir):
        for f in sorted(files):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                rel = os.path.relpath(os.path.join(dirpath, f), images_dir)
                stems[os.path.splitext(rel)[0]] = rel
    if os.path.isdir(labels_dir):  # label files whose image is gone
        for dirpath, _, files in os.walk(labels_dir):
            for f in sorted(files):
                rel = os.path.splitext(os.path.relpath(os.path.join(dirpath, f), labels_dir))[0]
                if f.endswith(".txt") and rel not in stems:
                    _skip(ds, _Skip("missing image", f"{os.path.join(dirpath, f)}: missing image "
                                                     f"{os.path.join(images_dir, rel)}.*"), strict)
    for stem, rel in sorted(stems.items()):
        try:
            ds.records.append(_yolo_record(images_dir, labels_dir, stem, rel, names))
        except _Skip as e:
            _skip(ds, e, strict)
        except OSError as e:
            _skip(ds, _Skip("unreadable image", f"{os.path.join(images_dir, rel)}: {e}"), strict)
    return _finish(ds, root)


def _yolo_record(images_dir: str, labels_dir: str, stem: str, rel: str, names: list[str]) -> ImageRecord:
    file = os.path.join(images_dir, rel)
    w, h = _image_size(file)
    rec = ImageRecord(rel, file, w, h)
    label = os.path.join(labels_dir, stem + ".txt")
    if not os.path.isfile(label):
        return rec
    try:
        with open(label, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise _Skip("malformed", f"{label}: not UTF-8 text") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{label}: line {n}"
        parts = line.split()
        try:
            cls, vals = int(parts[0]), [float(v) for v in parts[1:]]
        except (ValueError, IndexError):
            raise _Skip("malformed", f"{where}: expected 'class cx cy w h', got {line!r}") from None
        if not 0 <= cls < len(names):
            raise _Skip("unknown class", f"{where}: unknown class {cls} (data.yaml names {len(names)} classes)")
        if not all(np.isfinite(vals)):
            raise _Skip("malformed", f"{where}: numbers must be finite, got {line!r}")
        if len(vals) == 4:
            cx, cy, bw, bh = vals
            if bw < 0 or bh < 0:
                raise _Skip("malformed", f"{where}: negative width or height")
            bbox = ((cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h)
            seg = None
        elif len(vals) >= 6 and len(vals) % 2 == 0:
            pts = np.asarray(vals).reshape(-1, 2) * (w, h)
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            bbox, seg = (float(x0), float(y0), float(x1 - x0), float(y1 - y0)), [pts.reshape(-1).tolist()]
        else:
            raise _Skip("malformed", f"{where}: expected 4 box numbers or an even number (>= 6) of polygon "
                                     f"coordinates, got {len(vals)}")
        rec.annotations.append(Annotation(names[cls], bbox, seg, line))
    return rec


def read_dataset(path: str | os.PathLike, format: str | None = None, images: str | os.PathLike | None = None,
                 *, strict: bool = False) -> DetectionDataset:
    """Read COCO (a ``.json`` file) or YOLO (a folder with ``data.yaml``); ``format`` forces one.

    Raises:
        ValueError: unknown format or a dataset that cannot be read (see the readers).
    """
    path = os.fspath(path)
    if format is None:
        format = "yolo" if os.path.isdir(path) else "coco"
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such {'file' if format == 'coco' else 'folder'}")
    if format == "coco":
        if os.path.isdir(path):
            raise ValueError(f"{path}: a COCO dataset is given by its JSON file, not a folder")
        return read_coco(path, images, strict=strict)
    return read_yolo(path, strict=strict)
