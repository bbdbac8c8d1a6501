"""OPA (Object Placement Assessment, arXiv 2107.01889) as placement queries.

Two on-disk formats are read, and :func:`load_opa` tells them apart by their CSV header:

``archive``
    The original release: ``train_set.csv`` / ``test_set.csv`` with the header
    ``fg_id,bg_id,position,scale,label,img_name,mask_name``, ``position`` = ``"[x, y, w, h]"`` in
    background pixels, ``label`` 1 (plausible) or 0; backgrounds under
    ``background/<category>/<bg_id>.jpg``. There is no category column: the category is the folder
    name. It is taken from ``categories`` (fg_id -> name) if given, else from the folder of
    ``foreground/<category>/<fg_id>.jpg``, else from the one background folder holding ``bg_id``.
    One CSV row is one box.
``pair``
    FOPA's label files (``test_data_pair.csv`` ...; MIT): ``imgID,annID,scID,scale,newWidth,
    newHeight,pos_label,neg_label`` where the labels are JSON lists of box **centres**, so
    ``x = cx - w // 2``, ``y = cy - h // 2`` with ``w, h = newWidth, newHeight`` (exact against the
    archive). One row holds several boxes of one (foreground, background, scale). Images are
    optional (``images=``: COCO names ``%012d.jpg`` / ``<id>.jpg``, or the archive's
    ``background/<category>/`` layout).

Boxes are grouped into one :class:`PlacementQuery` per (background, category). Without any
category information (pair labels alone) the category is unknown: such queries get the label
``default_category`` ("object") and are grouped per (background, foreground) instead, so the
labels of different objects never mix in one query. ``query.meta["category_known"]`` says which.

Every row is validated (ids, a parseable position, a label in {0, 1}, a box inside the image when
the image size is known, an existing and readable image when images are expected). Bad rows are
skipped and counted in ``queries.report`` (a :class:`SkipReport`) with file and line; nothing raises
on bad rows. That includes damage to the CSV itself (bytes that are not UTF-8, broken quoting,
over-long fields, a wrong field count, a duplicated column whose copies disagree): each line is
parsed on its own (:mod:`locinsert.data.csvrows`), so one bad line never costs another. Image
sizes come from the JPEG header (no decoding), the way :func:`locinsert.images.load_image` will see
the image (EXIF rotations that swap the sides are honoured).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from .query import PlacementQuery
from .csvrows import parsed_lines, read_header, records
from .report import SkipReport

ARCHIVE_COLUMNS = ("fg_id", "bg_id", "position", "scale", "label", "img_name", "mask_name")
PAIR_COLUMNS = ("imgID", "annID", "scID", "scale", "newWidth", "newHeight", "pos_label", "neg_label")
DEFAULT_CATEGORY = "object"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class OPAQueries(list):
    """A list of :class:`PlacementQuery` with the reader's :class:`SkipReport` attached.

    ``report`` (alias ``skipped``) counts what was dropped and why; ``format`` is ``"archive"`` or
    ``"pair"``; ``source`` the CSV that was read.
    """

    def __init__(self, queries=(), report: SkipReport | None = None, format: str = "", source: str = ""):
        super().__init__(queries)
        self.report = report if report is not None else SkipReport()
        self.format = format
        self.source = source

    @property
    def skipped(self) -> SkipReport:
        return self.report

    @property
    def num_positives(self) -> int:
        return sum(len(q.positives) for q in self)

    @property
    def num_negatives(self) -> int:
        return sum(len(q.negatives) for q in self)

    @property
    def categories(self) -> list[str]:
        return sorted({q.category for q in self})


# -- helpers -------------------------------------------------------------------------------------

def _int_id(value: str) -> str | None:
    """Canonical string form of an integer id, or None. '00042' and '42.0' both give '42'."""
    s = (value or "").strip()
    try:
        f = float(s)
    except ValueError:
        return None
    if not math.isfinite(f) or f != int(f) or f < 0:
        return None
    return str(int(f))


def _parse_label(value: str) -> int | None:
    try:
        f = float((value or "").strip())
    except ValueError:
        return None
    return int(f) if f in (0.0, 1.0) else None


def _parse_numbers(value: str, n: int) -> list[float] | None:
    """A JSON list of exactly ``n`` finite numbers, or None."""
    try:
        v = json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(v, list) or len(v) != n:
        return None
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
        return None
    return [float(x) for x in v]


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header only, after EXIF rotation; ValueError if unreadable."""
    try:
        with Image.open(path) as im:  # PIL reads the header here; pixels are decoded only on load()
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block: load_image ignores it too
                orientation = 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read {path} as an image ({e})") from e
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _load_categories(categories, report: SkipReport) -> dict[str, str] | None:
    """fg_id -> category from a mapping, or a .json ({id: name}) / .csv (id,category) file.

    A mapping given in code must be valid (ValueError otherwise). In a file, a bad entry is skipped
    and counted in ``report`` as ``bad_category_row`` (a line of that file, not a box), and a
    second, different name for an id as ``conflicting_category`` (the first name is kept).
    """
    if categories is None:
        return None
    if isinstance(categories, Mapping):
        out = {}
        for k, v in categories.items():
            key, name = _int_id(str(k)), str(v).strip()
            if key is None or not name:
                raise ValueError(f"categories: bad entry {k!r} -> {v!r} (need an integer id and a non-empty name)")
            out[key] = name
        return out
    path = Path(categories)
    if not path.is_file():
        raise ValueError(f"categories: file not found: {path}")
    entries: list[tuple[str, Any, Any]] = []  # (where, id, name)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"categories: {path} is not a readable JSON file ({e})") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"categories: {path} must hold a JSON object {{fg_id: category}}")
        entries = [(f"{path.name}: key {k!r}", k, v) for k, v in data.items()]
    else:
        first = True
        for lineno, fields, problem in parsed_lines(path):
            where = f"{path.name}:{lineno}"
            if problem:
                report.skip("bad_category_row", f"{where}: {problem.split(': ', 1)[1]}")
            elif first and _int_id(fields[0]) is None:
                pass  # a header line
            else:
                entries.append((where, fields[0], fields[1] if len(fields) > 1 else ""))
            first = False
    out = {}
    for where, k, v in entries:
        key, name = _int_id(str(k)), str(v).strip() if isinstance(v, (str, int)) else ""
        if key is None or not name:
            report.skip("bad_category_row", f"{where}: {k!r} -> {v!r} (need an integer id and a non-empty name)")
        elif key in out and out[key] != name:
            report.skip("conflicting_category", f"{where}: fg_id {key} is {out[key]!r} earlier, {name!r} here")
        else:
            out[key] = name
    return out


class _ImageIndex:
    """What lies under an images root: the archive's per-category folders and/or flat COCO files."""

    def __init__(self, root: Path | None):
        self.root = root
        self.backgrounds: dict[str, dict[str, Path]] = {}  # bg_id -> {category: path}
        self.foregrounds: dict[str, str] = {}  # fg_id -> category
        self._sizes: dict[Path, tuple[int, int] | str] = {}
        if root is None:
            return
        if not root.is_dir():
            raise ValueError(f"images root {root} is not a folder")
        for kind in ("background", "foreground"):
            base = root / kind
            if not base.is_dir():
                continue
            for cat_dir in sorted(p for p in base.iterdir() if p.is_dir()):
                for entry in os.scandir(cat_dir):
                    stem, ext = os.path.splitext(entry.name)
                    if ext.lower() not in IMAGE_EXTENSIONS or stem.startswith("mask_"):
                        continue
                    key = _int_id(stem)
                    if key is None:
                        continue
                    if kind == "background":
                        self.backgrounds.setdefault(key, {})[cat_dir.name] = Path(entry.path)
                    else:
                        self.foregrounds.setdefault(key, cat_dir.name)

    def category_of(self, fg_id: str, bg_id: str) -> tuple[str | None, str]:
        """(category, reason-if-None) from the folder layout."""
        if fg_id in self.foregrounds:
            return self.foregrounds[fg_id], ""
        cats = self.backgrounds.get(bg_id, {})
        if len(cats) == 1:
            return next(iter(cats)), ""
        if len(cats) > 1:
            return None, "ambiguous_category"
        return None, "unknown_category"

    def find_background(self, bg_id: str, category: str | None) -> Path | None:
        if self.root is None:
            return None
        by_cat = self.backgrounds.get(bg_id, {})
        if category is not None and category in by_cat:
            return by_cat[category]
        if category is None and len(by_cat) == 1:
            return next(iter(by_cat.values()))
        for name in (f"{int(bg_id):012d}", bg_id):
            for ext in IMAGE_EXTENSIONS:
                p = self.root / f"{name}{ext}"
                if p.is_file():
                    return p
        return None

    def size(self, path: Path) -> tuple[int, int]:
        if path not in self._sizes:
            try:
                self._sizes[path] = _header_size(path)
            except ValueError as e:
                self._sizes[path] = str(e)
        s = self._sizes[path]
        if isinstance(s, str):
            raise ValueError(s)
        return s


def _inside(box: list[float], size: tuple[int, int] | None) -> bool:
    x1, y1, x2, y2 = box
    if x1 < 0 or y1 < 0:
        return False
    return size is None or (x2 <= size[0] and y2 <= size[1])


class _Grouper:
    """Collects labelled boxes per (background, category) and builds the queries in first-seen order."""

    def __init__(self, split: str, fmt: str):
        self.split, self.fmt = split, fmt
        self.groups: dict[tuple, dict[str, Any]] = {}

    def add(self, bg_id: str, fg_id: str, category: str | None, default_category: str, box: list[float],
            label: int, scale: float | None, image: Path | None, size: tuple[int, int] | None) -> None:
        known = category is not None
        key = (bg_id, category) if known else (bg_id, f"fg{fg_id}")
        g = self.groups.get(key)
        if g is None:
            qid = f"{bg_id}:{category}" if known else f"{bg_id}:fg{fg_id}"
            g = self.groups[key] = {
                "category": category if known else default_category, "image": image, "size": size, "qid": qid,
                "bg_id": bg_id, "known": known, "boxes": ([], []), "fg": ([], []), "scale": ([], [])}
        side = 0 if label == 1 else 1
        g["boxes"][side].append(box)
        g["fg"][side].append(fg_id)
        g["scale"][side].append(scale)

    def queries(self) -> list[PlacementQuery]:
        out = []
        for g in self.groups.values():
            pos, neg = g["boxes"]
            w, h = g["size"] if g["size"] is not None else (None, None)
            out.append(PlacementQuery(
                category=g["category"],
                positives=torch.tensor(pos, dtype=torch.float32).reshape(-1, 4),
                negatives=torch.tensor(neg, dtype=torch.float32).reshape(-1, 4),
                image_source=g["image"], image_id=g["bg_id"], query_id=g["qid"], width=w, height=h,
                meta={"dataset": "opa", "split": self.split, "format": self.fmt, "bg_id": g["bg_id"],
                      "category_known": g["known"],
                      "fg_ids": sorted(set(g["fg"][0]) | set(g["fg"][1]), key=int),
                      "positive_fg_ids": g["fg"][0], "negative_fg_ids": g["fg"][1],
                      "positive_scales": g["scale"][0], "negative_scales": g["scale"][1]}))
        return out


# -- the two readers -----------------------------------------------------------------------------

def _rows(path: Path, required: tuple[str, ...], report: SkipReport):
    """(line number, row) for the usable CSV rows; see :mod:`locinsert.data.csvrows` for what is skipped."""
    return records(path, required, report)


def _resolve_image(index: _ImageIndex, bg_id: str, category: str | None, report: SkipReport, where: str,
                   n: int = 1) -> tuple[bool, Path | None, tuple[int, int] | None]:
    """(ok, path, size) of a background when an images root is given; counts the failure otherwise."""
    if index.root is None:
        return True, None, None
    path = index.find_background(bg_id, category)
    if path is None:
        report.skip("missing_image", f"{where}: no image for background {bg_id}"
                    + (f" under background/{category}/" if category else ""), n)
        return False, None, None
    try:
        size = index.size(path)
    except ValueError as e:
        report.skip("unreadable_image", f"{where}: {e}", n)
        return False, None, None
    return True, path, size


def _read_archive(path: Path, index: _ImageIndex, categories: dict[str, str] | None, split: str,
                  default_category: str, report: SkipReport) -> list[PlacementQuery]:
    grouper = _Grouper(split, "archive")
    for line, row in _rows(path, ARCHIVE_COLUMNS, report):
        where = f"{path.name}:{line}"
        fg_id, bg_id = _int_id(row["fg_id"]), _int_id(row["bg_id"])
        if fg_id is None or bg_id is None:
            report.skip("bad_id", f"{where}: fg_id={row['fg_id']!r} bg_id={row['bg_id']!r}")
            continue
        xywh = _parse_numbers(row["position"], 4)
        if xywh is None:
            report.skip("bad_position", f"{where}: position={row['position']!r} (need \"[x, y, w, h]\")")
            continue
        x, y, w, h = xywh
        if w <= 0 or h <= 0:
            report.skip("degenerate_box", f"{where}: position={row['position']!r}")
            continue
        label = _parse_label(row["label"])
        if label is None:
            report.skip("bad_label", f"{where}: label={row['label']!r} (need 0 or 1)")
            continue
        if categories is not None and fg_id in categories:
            category, why = categories[fg_id], ""
        elif index.root is not None:
            category, why = index.category_of(fg_id, bg_id)
        else:
            category, why = None, ""
        if why:
            report.skip(why, f"{where}: fg {fg_id} / bg {bg_id}")
            continue
        ok, image, size = _resolve_image(index, bg_id, category, report, where)
        if not ok:
            continue
        box = [x, y, x + w, y + h]
        if not _inside(box, size):
            report.skip("box_outside_image", f"{where}: box xyxy {box} vs image {size}")
            continue
        scale = _parse_numbers(f"[{row['scale']}]", 1) if row["scale"].strip() else None
        grouper.add(bg_id, fg_id, category, default_category, box, label, scale[0] if scale else None, image, size)
        report.keep()
    return grouper.queries()


def _read_pairs(path: Path, index: _ImageIndex, categories: dict[str, str] | None, split: str,
                default_category: str, report: SkipReport) -> list[PlacementQuery]:
    """The unit counted is a box; a row whose box lists cannot be parsed counts as one item."""
    grouper = _Grouper(split, "pair")
    for line, row in _rows(path, PAIR_COLUMNS, report):
        where = f"{path.name}:{line}"
        labels = []
        for col, label in (("pos_label", 1), ("neg_label", 0)):
            try:
                centres = json.loads(row[col])
            except json.JSONDecodeError:
                centres = None
            if not isinstance(centres, list):
                labels = None
                report.skip("bad_label_list", f"{where}: {col}={row[col][:60]!r} (need a JSON list of [cx, cy])")
                break
            labels.extend((c, label) for c in centres)
        if labels is None:
            continue
        n = len(labels)
        report.seen += n - 1  # _rows counted the row as one item
        fg_id, bg_id = _int_id(row["annID"]), _int_id(row["scID"])
        if fg_id is None or bg_id is None:
            report.skip("bad_id", f"{where}: annID={row['annID']!r} scID={row['scID']!r}", n)
            continue
        wh = [_int_id(row["newWidth"]), _int_id(row["newHeight"])]
        if None in wh or int(wh[0]) <= 0 or int(wh[1]) <= 0:
            report.skip("bad_size", f"{where}: newWidth={row['newWidth']!r} newHeight={row['newHeight']!r}", n)
            continue
        w, h = int(wh[0]), int(wh[1])
        if categories is not None and fg_id in categories:
            category = categories[fg_id]
        elif index.root is not None:
            category, _ = index.category_of(fg_id, bg_id)  # unknown is allowed here: default label
        else:
            category = None
        ok, image, size = _resolve_image(index, bg_id, category, report, where, n)
        if not ok:
            continue
        scale = _parse_numbers(f"[{row['scale']}]", 1) if row["scale"].strip() else None
        for centre, label in labels:
            if not (isinstance(centre, list) and len(centre) == 2 and all(
                    isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in centre)):
                report.skip("bad_centre", f"{where}: centre {centre!r}")
                continue
            # Integer halving is how the labels were written: x = cx - w // 2 reproduces OPA exactly.
            x, y = centre[0] - w // 2, centre[1] - h // 2
            box = [float(x), float(y), float(x + w), float(y + h)]
            if not _inside(box, size):
                report.skip("box_outside_image", f"{where}: box xyxy {box} vs image {size}")
                continue
            grouper.add(bg_id, fg_id, category, default_category, box, label, scale[0] if scale else None,
                        image, size)
            report.keep()
    return grouper.queries()


def _detect(root: Path, split: str) -> tuple[Path, str]:
    if root.is_file():
        header = read_header(root)
        if "position" in header:
            return root, "archive"
        if "pos_label" in header:
            return root, "pair"
        raise ValueError(f"{root}: not an OPA CSV (header {header}; expected {','.join(ARCHIVE_COLUMNS)} "
                         f"or {','.join(PAIR_COLUMNS)})")
    if not root.is_dir():
        raise ValueError(f"OPA root not found: {root}")
    for name, fmt in ((f"{split}_set.csv", "archive"), (f"{split}_data_pair.csv", "pair")):
        for candidate in (root / name, root / "data" / name):
            if candidate.is_file():
                return candidate, fmt
    raise ValueError(f"{root} holds neither {split}_set.csv (OPA archive) nor {split}_data_pair.csv "
                     "(FOPA pair labels)")


def load_opa(root: str | os.PathLike, split: str = "test", *, images: str | os.PathLike | None = None,
             categories: Mapping | str | os.PathLike | None = None, format: str = "auto",
             default_category: str = DEFAULT_CATEGORY) -> OPAQueries:
    """Read OPA into placement queries, one per (background, category).

    Args:
        root: the extracted archive folder (holding ``{split}_set.csv`` and ``background/``), a
            folder with FOPA's ``{split}_data_pair.csv``, or the path of either CSV.
        split: ``"train"`` or ``"test"``; picks the file name when ``root`` is a folder.
        images: where the backgrounds are. Defaults to ``root`` (or the CSV's folder) for the
            archive; for pair labels, ``None`` means labels only (``query.image`` then raises and
            width/height are unknown, so boxes are only checked to be non-negative).
        categories: fg_id (= FOPA ``annID``) -> category name, as a mapping or a ``.json`` /
            two-column ``.csv`` file. Takes precedence over the folder names.
        format: ``"auto"`` (from the CSV header), ``"archive"`` or ``"pair"``.
        default_category: the label of queries whose category cannot be known (pair labels alone).

    Returns:
        :class:`OPAQueries`, a list of :class:`PlacementQuery` (positives/negatives float xyxy
        pixels; ``image`` loaded lazily) with ``.report`` counting skipped rows per reason.
    """
    if format not in ("auto", "archive", "pair"):
        raise ValueError(f"format must be 'auto', 'archive' or 'pair', got {format!r}")
    if not isinstance(default_category, str) or not default_category.strip():
        raise ValueError("default_category must be a non-empty string")
    root = Path(root)
    csv_path, detected = _detect(root, split)
    fmt = detected if format == "auto" else format
    report = SkipReport(name=f"opa/{split} ({fmt}: {csv_path.name})")
    cats = _load_categories(categories, report)
    if images is None and fmt == "archive":
        candidates = (csv_path.parent, csv_path.parent.parent)
        images = next((c for c in candidates if (c / "background").is_dir()), None)
        if images is None and cats is None:
            raise ValueError(f"{csv_path}: no background/ folder beside it; pass images= (the archive root)")
    index = _ImageIndex(Path(images) if images is not None else None)
    reader = _read_archive if fmt == "archive" else _read_pairs
    queries = reader(csv_path, index, cats, split, default_category.strip(), report)
    return OPAQueries(queries, report=report, format=fmt, source=str(csv_path))
