"""Builders of real-format data fixtures: PIPE / PIPE_Masks parquet files and an OPA archive folder.

Column names, layouts and encodings are the real ones (see ``locinsert/data/pipe.py`` and
``opa.py``); pixels are synthetic. OPA rows are real labels (``fixtures/opa_labels``, MIT) for
backgrounds whose real size and foreground category are known.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
OPA_LABELS = FIXTURES / "opa_labels"

# Real OPA test backgrounds (bg_id -> (width, height)) and foregrounds (fg_id -> category).
OPA_TEST_BACKGROUNDS = {"442445": (640, 512), "186413": (640, 427), "580029": (640, 427), "348935": (529, 640)}
OPA_TEST_FOREGROUNDS = {"69931": "cow", "64754": "sheep", "160915": "airplane", "2175267": "zebra"}
ARCHIVE_HEADER = ["fg_id", "bg_id", "position", "scale", "label", "img_name", "mask_name"]


def jpeg_bytes(array: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_jpeg(path: Path, width: int, height: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    a = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    Image.fromarray(a).resize((width, height), Image.BILINEAR).save(path, "JPEG", quality=80)


# -- OPA ------------------------------------------------------------------------------------------

def real_archive_rows(pair_csv: Path = OPA_LABELS / "test_data_pair.csv", split: str = "test") -> list[list[str]]:
    """OPA archive rows (real header order) rebuilt from the real pair labels of the known backgrounds.

    All foregrounds pasted on one background share its category folder in the archive.
    """
    rows = []
    with open(pair_csv, newline="") as f:
        for r in csv.DictReader(f):
            if r["scID"] not in OPA_TEST_BACKGROUNDS:
                continue
            w, h, scale = int(r["newWidth"]), int(r["newHeight"]), float(r["scale"])
            for col, label in (("pos_label", 1), ("neg_label", 0)):
                for cx, cy in json.loads(r[col]):
                    x, y = cx - w // 2, cy - h // 2
                    name = f"{r['annID']}_{r['scID']}_{x}_{y}_{w}_{h}_{scale:.4f}_{label}.jpg"
                    rows.append([r["annID"], r["scID"], f"[{x}, {y}, {w}, {h}]", f"{scale:.4f}", str(label),
                                 f"dataset/composite/{split}_set/{name}",
                                 f"dataset/composite/{split}_set/mask_{name}"])
    return rows


# (row, expected skip reason): each malformed on purpose.
MALFORMED_ARCHIVE_ROWS = [
    (["64754", "186413", "[12, 30, abc, 40]", "0.2", "1", "x.jpg", "mask_x.jpg"], "bad_position"),
    (["64754", "186413", "12, 30, 40", "0.2", "1", "x.jpg", "mask_x.jpg"], "bad_position"),
    (["64754", "186413", "[12, 30, 40, 40]", "0.2", "2", "x.jpg", "mask_x.jpg"], "bad_label"),
    (["64754", "186413", "[600, 400, 100, 50]", "0.2", "0", "x.jpg", "mask_x.jpg"], "box_outside_image"),
    (["64754", "186413", "[1, 1, 0, 10]", "0.2", "0", "x.jpg", "mask_x.jpg"], "degenerate_box"),
    (["64754", "999999", "[1, 1, 10, 10]", "0.2", "1", "x.jpg", "mask_x.jpg"], "missing_image"),
    (["64754", "123456", "[1, 1, 10, 10]", "0.2", "1", "x.jpg", "mask_x.jpg"], "unreadable_image"),
    (["64754", "186413", "[1, 1, 10, 10]"], "malformed_row"),
    (["abc", "186413", "[1, 1, 10, 10]", "0.2", "1", "x.jpg", "mask_x.jpg"], "bad_id"),
    (["424242", "777", "[1, 1, 10, 10]", "0.2", "1", "x.jpg", "mask_x.jpg"], "ambiguous_category"),
    (["434343", "888", "[1, 1, 10, 10]", "0.2", "1", "x.jpg", "mask_x.jpg"], "unknown_category"),
]


def build_opa_archive(root: Path, split: str = "test", malformed: bool = True, foregrounds: bool = True) -> dict:
    """Write an OPA archive folder: ``{split}_set.csv`` + ``background/<cat>/<bg>.jpg`` (+ foregrounds).

    Returns ``{"rows": real rows, "malformed": [(row, reason)]}``.
    """
    root = Path(root)
    rows = real_archive_rows(split=split)
    bg_category = {}
    for r in rows:
        if r[0] in OPA_TEST_FOREGROUNDS:
            bg_category.setdefault(r[1], OPA_TEST_FOREGROUNDS[r[0]])
    for i, (bg, cat) in enumerate(sorted(bg_category.items())):
        write_jpeg(root / "background" / cat / f"{bg}.jpg", *OPA_TEST_BACKGROUNDS[bg], seed=i)
    if foregrounds:
        for i, (fg, cat) in enumerate(sorted(OPA_TEST_FOREGROUNDS.items())):
            write_jpeg(root / "foreground" / cat / f"{fg}.jpg", 40, 30, seed=100 + i)
            write_jpeg(root / "foreground" / cat / f"mask_{fg}.jpg", 40, 30, seed=200 + i)
    bad = MALFORMED_ARCHIVE_ROWS if malformed else []
    if malformed:
        (root / "background" / "sheep" / "123456.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
        write_jpeg(root / "background" / "cow" / "777.jpg", 50, 40)
        write_jpeg(root / "background" / "sheep" / "777.jpg", 50, 40)
    lines = list(rows)
    for j, (r, _) in enumerate(reversed(bad)):  # spread out: a bad row must not stop the reading
        lines.insert((len(bad) - j) * len(rows) // (len(bad) + 1), r)
    with open(root / f"{split}_set.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(ARCHIVE_HEADER)
        w.writerows(lines)
    return {"rows": rows, "malformed": bad}


# -- PIPE -----------------------------------------------------------------------------------------

PIPE_SIZE = 64
PIPE_TEXT_COLUMNS = ("Instruction_VLM-LLM", "Instruction_Class", "Instruction_Ref_Dataset", "object_location")


class PipeRow(NamedTuple):
    """One fixture row and what the reader must make of it."""

    dataset: str  # target_img_dataset
    img_id: str
    ann_id: str
    instruction: str  # Instruction_Class
    mask: Any  # object box in image pixels, "empty", "corrupt" (not an image), or None (no mask row)
    object_box: Any  # the object drawn into target_img (None: nothing changes)
    reason: str  # expected skip reason, "" when kept
    category: str | None
    mask_size: tuple[int, int] = (PIPE_SIZE, PIPE_SIZE)  # a mask of another size is a stretched copy
    ref: str = ""  # Instruction_Ref_Dataset
    vlm: str = ""  # Instruction_VLM-LLM
    source: str = "ok"  # source_img: "ok", "missing" (null) or "corrupt" (bytes that are not an image)


# Real ids are strings (COCO decimal, OpenImages hex); masks are L-mode JPEGs, some of another size.
PIPE_ROWS = [
    PipeRow("COCO", "150265", "417517", "add a fire hydrant", (10, 20, 30, 50), (10, 20, 30, 50), "", "fire hydrant"),
    PipeRow("COCO", "1001", "2002", "Add an Apple.", (5, 5, 25, 15), (5, 5, 25, 15), "", "apple"),
    PipeRow("OpenImages", "1001", "2002", "add the red car", (30, 30, 60, 60), (30, 30, 60, 60), "", "red car"),
    PipeRow("OpenImages", "0556a89f", "0556a89f_3", "add a teddy_bear", (8, 16, 40, 48), (8, 16, 40, 48), "",
            "teddy bear", mask_size=(80, 48)),  # 1.25x wider, 0.75x as tall: rescaled
    PipeRow("OpenImages", "00a1b2c3", "00a1b2c3_0", "add a bow_(weapon)", (16, 8, 48, 40), (16, 8, 48, 40), "",
            "bow", mask_size=(32, 128)),
    PipeRow("COCO", "20", "21", "", (12, 12, 44, 52), (12, 12, 44, 52), "", "umbrella",
            ref="add an umbrella", vlm="Add a striped beach umbrella"),
    PipeRow("COCO", "22", "23", "", (20, 4, 60, 30), (20, 4, 60, 30), "", "striped beach umbrella",
            vlm="Add a striped beach umbrella."),
    PipeRow("COCO", "3", "4", "add a cup", "empty", (5, 5, 20, 20), "empty_mask", "cup"),
    PipeRow("COCO", "5", "6", "add a bird", (5, 5, 7, 7), (5, 5, 7, 7), "tiny_box", "bird"),
    PipeRow("COCO", "7", "8", "add a wall", (0, 0, 64, 64), (0, 0, 64, 64), "whole_image_box", "wall"),
    PipeRow("COCO", "9", "10", "", (10, 10, 30, 30), (10, 10, 30, 30), "no_class", None),
    PipeRow("COCO", "11", "12", "add a dog", None, (12, 14, 40, 44), "", "dog"),
    PipeRow("OpenImages", "13", "14", "add a vase", None, None, "empty_difference", "vase"),
    PipeRow("COCO", "15", "", "add a kite", (10, 10, 30, 30), (10, 10, 30, 30), "bad_key", "kite"),
    PipeRow("COCO", "17", "18", "add a boat", (10, 10, 30, 30), (10, 10, 30, 30), "missing_image", "boat",
            source="missing"),
    PipeRow("COCO", "24", "25", "add a lamp", "corrupt", (10, 10, 30, 30), "unreadable_mask", "lamp"),
]
# Streaming decodes every image and drops this row; non-streaming cannot see it without reading them all.
CORRUPT_SOURCE_ROW = PipeRow("COCO", "26", "27", "add a sofa", (10, 10, 30, 30), (10, 10, 30, 30),
                             "unreadable_image", "sofa", source="corrupt")
PIPE_SHARDS = 2  # hub-style names: data/train-00000-of-00002.parquet, ...


def _pipe_images(i: int, obj_box) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:PIPE_SIZE, 0:PIPE_SIZE]
    base = np.stack([xx * 2, yy * 2, np.full_like(xx, 90)], -1).astype(np.float64)
    base += rng.normal(0, 2, base.shape)
    source = np.clip(base, 0, 255).astype(np.uint8)
    target = source.copy()
    if obj_box is not None:
        x1, y1, x2, y2 = obj_box
        target[y1:y2, x1:x2] = (250, 30, 200)
    return jpeg_bytes(source), jpeg_bytes(target)


def pipe_mask_bytes(box, mask_size=(PIPE_SIZE, PIPE_SIZE), image_size=(PIPE_SIZE, PIPE_SIZE)) -> bytes:
    """An L-mode JPEG mask of ``mask_size`` whose object is ``box`` (image pixels) stretched onto it."""
    if box == "corrupt":
        return b"\xff\xd8\xff\xe0 not a JPEG"
    mw, mh = mask_size
    m = np.zeros((mh, mw), np.uint8)
    if box != "empty":
        sx, sy = mw / image_size[0], mh / image_size[1]
        x1, y1, x2, y2 = box
        m[round(y1 * sy):round(y2 * sy), round(x1 * sx):round(x2 * sx)] = 255
    buf = io.BytesIO()
    Image.fromarray(m).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def pipe_features():
    import datasets

    return datasets.Features({
        "source_img": datasets.Image(), "target_img": datasets.Image(),
        **{k: datasets.Value("string") for k in (*PIPE_TEXT_COLUMNS, "target_img_dataset", "img_id", "ann_id")}})


def pipe_mask_features():
    import datasets

    return datasets.Features({"mask": datasets.Image(), "target_img_dataset": datasets.Value("string"),
                              "img_id": datasets.Value("string"), "ann_id": datasets.Value("string")})


def build_pipe(root: Path, split: str = "train", rows=None) -> tuple[Path, Path]:
    """Write PIPE and PIPE_Masks in the hub's layout and real features; return both folders.

    ``pipe/data/{split}-0000k-of-00002.parquet`` and ``masks/data/{split}-00000-of-00001.parquet``,
    with the real columns, string ids and datasets' Image encoding ({"bytes", "path"}). The mask
    table is shuffled and has an extra key, so the join must use keys.
    """
    import datasets

    rows = PIPE_ROWS if rows is None else rows
    root = Path(root)
    pipe_rows = {k: [] for k in pipe_features()}
    mask_rows = {k: [] for k in pipe_mask_features()}
    for i, r in enumerate(rows):
        src, tgt = _pipe_images(i, r.object_box)
        if r.source == "corrupt":
            src = src[:40]  # a truncated JPEG header
        values = {"source_img": None if r.source == "missing" else {"bytes": src, "path": None},
                  "target_img": {"bytes": tgt, "path": None}, "Instruction_VLM-LLM": r.vlm,
                  "Instruction_Class": r.instruction, "Instruction_Ref_Dataset": r.ref, "object_location": "",
                  "target_img_dataset": r.dataset, "img_id": r.img_id, "ann_id": r.ann_id}
        for k, v in values.items():
            pipe_rows[k].append(v)
        if r.mask is not None:
            for k, v in (("mask", {"bytes": pipe_mask_bytes(r.mask, r.mask_size), "path": None}),
                         ("target_img_dataset", r.dataset), ("img_id", r.img_id), ("ann_id", r.ann_id)):
                mask_rows[k].append(v)
    # a mask with no PIPE row
    for k, v in (("mask", {"bytes": pipe_mask_bytes((1, 1, 9, 9)), "path": None}), ("target_img_dataset", "COCO"),
                 ("img_id", "424242"), ("ann_id", "1")):
        mask_rows[k].append(v)
    order = np.random.default_rng(0).permutation(len(mask_rows["mask"]))
    mask_rows = {k: [v[j] for j in order] for k, v in mask_rows.items()}
    pipe_dir, masks_dir = root / "pipe", root / "masks"
    (pipe_dir / "data").mkdir(parents=True, exist_ok=True)
    (masks_dir / "data").mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_dict(pipe_rows, features=pipe_features())
    bounds = np.linspace(0, len(table), PIPE_SHARDS + 1).astype(int)
    for k in range(PIPE_SHARDS):
        table.select(range(bounds[k], bounds[k + 1])).to_parquet(
            str(pipe_dir / "data" / f"{split}-{k:05d}-of-{PIPE_SHARDS:05d}.parquet"))
    datasets.Dataset.from_dict(mask_rows, features=pipe_mask_features()).to_parquet(
        str(masks_dir / "data" / f"{split}-00000-of-00001.parquet"))
    return pipe_dir, masks_dir
