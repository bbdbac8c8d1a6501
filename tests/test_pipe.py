"""PIPE reader on parquet fixtures in PIPE's real schema (string ids, L-mode JPEG masks, hub file names):
join, boxes in the image frame (rescaled masks), erosion, class fallbacks, masks, skips, streaming."""

from collections import Counter

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from helpers_data import (CORRUPT_SOURCE_ROW, PIPE_ROWS, PIPE_SHARDS, PIPE_SIZE, build_pipe, pipe_mask_bytes)
from locinsert.boxes import box_iou
from locinsert.data import load_pipe
from locinsert.data import pipe as pipe_module
from locinsert.data.pipe import (OUTPUT_COLUMNS, as_queries, box_from_difference, box_from_mask,
                                 class_from_instruction, class_of_row)


@pytest.fixture(scope="module")
def pipe_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    pipe, masks = build_pipe(root, split="train")
    return pipe, masks, root / "cache"


def _key(e):
    return (e["target_img_dataset"], e["img_id"], e["ann_id"])


def _expected(rows=PIPE_ROWS):
    kept = [r for r in rows if not r.reason]
    return kept, dict(Counter(r.reason for r in rows if r.reason))


def _expected_notes():
    kept, _ = _expected()
    notes = Counter()
    for r in kept:
        if r.mask not in (None, "empty") and r.mask_size != (PIPE_SIZE, PIPE_SIZE):
            notes["rescaled_mask"] += 1
        if not r.instruction:
            notes["class_from_ref_dataset" if r.ref else "class_from_vlm_llm"] += 1
    return dict(notes)


def _check_examples(examples):
    kept, _ = _expected()
    assert len(examples) == len(kept)
    by_key = {_key(e): e for e in examples}
    for r in kept:
        e = by_key[(r.dataset, r.img_id, r.ann_id)]
        assert e["category"] == r.category
        assert isinstance(e["image"], Image.Image) and e["image"].size == (PIPE_SIZE, PIPE_SIZE)
        assert (e["width"], e["height"]) == (PIPE_SIZE, PIPE_SIZE)
        box = torch.tensor(e["box"])
        if r.mask is not None:  # from the mask, mapped onto the image: exact up to JPEG/resize edges
            assert e["box_source"] == "mask"
            assert torch.allclose(box, torch.tensor(r.mask, dtype=torch.float32), atol=1.0), (r, box)
        else:  # from the source/target difference: close to the drawn object
            assert e["box_source"] == "difference"
            assert box_iou(box[None], torch.tensor([r.object_box], dtype=torch.float32))[0, 0] > 0.8


def test_fixture_is_in_the_real_schema(pipe_dirs):
    pipe, masks, _ = pipe_dirs
    names = sorted(p.name for p in (pipe / "data").iterdir())
    assert names == [f"train-{k:05d}-of-{PIPE_SHARDS:05d}.parquet" for k in range(PIPE_SHARDS)]
    m = datasets.load_dataset("parquet", data_files=str(masks / "data" / "*.parquet"), split="train")
    assert m.features["img_id"] == m.features["ann_id"] == datasets.Value("string")
    assert any(len(i) == 8 and not i.isdigit() for i in m["img_id"])  # hex OpenImages ids
    assert Image.open(io.BytesIO(m.cast_column("mask", datasets.Image(decode=False))[0]["mask"]
                                               ["bytes"])).format == "JPEG"
    assert m[0]["mask"].mode == "L"


def test_load_local_parquet_joins_masks_by_key_and_counts_skips(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    ds, report = load_pipe(pipe, masks, split="train", cache_dir=cache)
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == list(OUTPUT_COLUMNS)
    kept, skipped = _expected()
    assert dict(report.counts) == skipped
    assert dict(report.notes) == _expected_notes() == {"rescaled_mask": 2, "class_from_ref_dataset": 1,
                                                       "class_from_vlm_llm": 1}
    assert report.seen == len(PIPE_ROWS) and report.kept == len(kept) == len(ds)
    _check_examples(list(ds))
    # the same (img_id, ann_id) exists in COCO and OpenImages with different masks: the join uses all 3 keys
    cars = ds.filter(lambda e: e["img_id"] == "1001")
    assert sorted(cars["category"]) == ["apple", "red car"]
    assert "COCO/3/4" in report.examples["empty_mask"][0]
    assert "kept with rescaled_mask: 2" in report.summary() and report.as_dict()["notes"]["rescaled_mask"] == 2


def test_streaming_and_materialised_agree_on_every_row(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    ds, report = load_pipe(pipe, masks, split="train", cache_dir=cache, with_mask=True)
    st, st_report = load_pipe(pipe, masks, split="train", streaming=True, cache_dir=cache, with_mask=True)
    assert isinstance(st, datasets.IterableDataset)
    assert st_report.seen == 0  # nothing read yet: the report fills while iterating
    streamed = list(st)
    _check_examples(streamed)
    assert [_key(e) for e in streamed] == [_key(e) for e in ds]
    for a, b in zip(ds, streamed):
        for c in ("category", "box", "width", "height", "box_source"):
            assert a[c] == b[c], (c, a[c], b[c])
        assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
        assert np.array_equal(np.asarray(a["mask"]), np.asarray(b["mask"]))
    assert dict(st_report.counts) == dict(report.counts) and dict(st_report.notes) == dict(report.notes)
    assert st_report.seen == report.seen and st_report.kept == report.kept


def test_mask_column_is_the_region_of_the_box_in_the_image_frame(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    for erode in (0, 2):
        ds, _ = load_pipe(pipe, masks, split="train", cache_dir=cache, with_mask=True, mask_erode=erode)
        assert ds.column_names == [*OUTPUT_COLUMNS, "mask"]
        for e in ds:
            m = e["mask"]
            assert isinstance(m, Image.Image) and m.mode == "L" and m.size == e["image"].size
            a = np.asarray(m)
            assert set(np.unique(a)) <= {0, 255}
            ys, xs = np.nonzero(a)
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == e["box"]  # the box is the mask's bbox


def test_difference_only_rows_get_their_changed_region_as_mask(pipe_dirs):
    pipe, _, cache = pipe_dirs
    ds, _ = load_pipe(pipe, None, split="train", cache_dir=cache, with_mask=True)
    st, _ = load_pipe(pipe, None, split="train", cache_dir=cache, with_mask=True, streaming=True)
    streamed = list(st)
    assert len(ds) == len(streamed) > 0
    for e, f in zip(ds, streamed):
        ys, xs = np.nonzero(np.asarray(e["mask"]))
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == e["box"] == f["box"]
        assert np.array_equal(np.asarray(e["mask"]), np.asarray(f["mask"]))


def test_erosion_equals_repeated_3x3_erosion():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for _ in range(30):
        m = rng.random((30, 40)) > 0.3
        n = int(rng.integers(1, 4))
        expected = ndimage.binary_erosion(m, structure=np.ones((3, 3), bool), iterations=n, border_value=1)
        assert np.array_equal(pipe_module._erode(m, n), expected)


def test_a_mask_of_another_size_is_stretched_onto_the_image():
    # a 640x480 mask beside a 512x512 image: the object at [80, 60, 400, 300] of the mask frame
    mask = Image.open(io.BytesIO(pipe_mask_bytes((64, 64, 320, 320), (640, 480), (512, 512))))
    assert mask.size == (640, 480)
    box, size = box_from_mask(mask, image_size=(512, 512))
    assert size == (512, 512)
    assert np.allclose(box, [64, 64, 320, 320], atol=1)
    own, own_size = box_from_mask(mask)  # in the mask's own frame, as before: 25 % off in x
    assert own_size == (640, 480) and np.allclose(own, [80, 60, 400, 300], atol=1)


def test_image_size_is_read_once_not_per_row(pipe_dirs, tmp_path, monkeypatch):
    pipe, masks, _ = pipe_dirs
    opened = []
    real_open = pipe_module._open

    def spy(x):
        img = real_open(x)
        opened.append(img.mode)
        return img

    monkeypatch.setattr(pipe_module, "_open", spy)
    ds, _ = load_pipe(pipe, masks, split="train", cache_dir=tmp_path / "fresh")  # nothing cached: all maps run
    n_masks = sum(1 for r in PIPE_ROWS if r.mask not in (None, "corrupt")) + 1  # + the mask without a row
    n_difference = sum(1 for r in PIPE_ROWS if r.mask is None)
    # RGB opens: one probe for the image size, then only the difference rows' source and target
    assert opened.count("RGB") == 1 + 2 * n_difference
    assert opened.count("L") == n_masks


def test_explicit_image_size_rescales_every_mask(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    ds, report = load_pipe(pipe, masks, split="train", cache_dir=cache, image_size=(128, 128), fallback=False)
    by_key = {_key(e): e for e in ds}
    fire = by_key[("COCO", "150265", "417517")]
    assert (fire["width"], fire["height"]) == (128, 128) and np.allclose(fire["box"], [20, 40, 60, 100], atol=2)
    assert report.notes["rescaled_mask"] == report.kept  # no mask is 128x128
    # streaming sees each image: a 64x64 image is not of the split's stated size
    st, st_report = load_pipe(pipe, masks, split="train", streaming=True, cache_dir=cache, image_size=(128, 128),
                              fallback=False)
    assert list(st) == [] and st_report.counts["size_mismatch"] == len(ds)
    with pytest.raises(ValueError, match="image_size"):
        load_pipe(pipe, masks, cache_dir=cache, image_size=(0, 64))


def test_mask_erode_tightens_boxes_away_from_the_border(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    base, _ = load_pipe(pipe, masks, split="train", cache_dir=cache, fallback=False)
    eroded, report = load_pipe(pipe, masks, split="train", cache_dir=cache, fallback=False, mask_erode=3)
    a = {_key(e): e["box"] for e in base}
    b = {_key(e): e["box"] for e in eroded}
    assert set(b) == set(a)
    for k in a:
        expected = [a[k][0] + 3, a[k][1] + 3, a[k][2] - 3, a[k][3] - 3]
        assert np.allclose(b[k], expected, atol=1), (k, a[k], b[k])
    _, report = load_pipe(pipe, masks, split="train", cache_dir=cache, fallback=False, mask_erode=12)
    assert report.counts["eroded_away"] >= 1  # the 20x10 apple mask is gone
    # an object touching the border keeps its border edge
    edge = np.zeros((32, 32), np.uint8)
    edge[0:10, 0:20] = 255
    assert box_from_mask(Image.fromarray(edge), erode=2)[0] == [0.0, 0.0, 18.0, 8.0]
    with pytest.raises(ValueError, match="mask_erode"):
        load_pipe(pipe, masks, cache_dir=cache, mask_erode=-1)


def test_no_masks_uses_difference_for_every_row(pipe_dirs):
    pipe, _, cache = pipe_dirs
    ds, report = load_pipe(pipe, None, split="train", cache_dir=cache)
    assert set(ds["box_source"]) == {"difference"}
    by_img = {e["img_id"]: e for e in ds.select_columns(["img_id", "box"])}
    assert box_iou(torch.tensor([by_img["150265"]["box"]]), torch.tensor([[10.0, 20.0, 30.0, 50.0]]))[0, 0] > 0.8
    # the 2x2 "bird" is removed by the opening, the vase row has no change at all
    assert dict(report.counts) == {"empty_difference": 2, "no_class": 1, "whole_image_box": 1, "bad_key": 1,
                                   "missing_image": 1}


def test_without_fallback_rows_lacking_a_mask_are_dropped(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    ds, report = load_pipe(pipe, masks, split="train", fallback=False, cache_dir=cache)
    assert report.counts["missing_mask"] == 2
    assert "difference" not in set(ds["box_source"])


def test_a_corrupt_image_is_a_counted_skip_while_streaming(tmp_path):
    rows = [*PIPE_ROWS[:3], CORRUPT_SOURCE_ROW, *PIPE_ROWS[3:]]
    pipe, masks = build_pipe(tmp_path, rows=rows)
    st, report = load_pipe(pipe, masks, streaming=True, cache_dir=tmp_path / "cache")
    streamed = list(st)  # the bad row does not stop the stream
    assert len(streamed) == len(_expected()[0])
    assert dict(report.counts) == _expected(rows)[1] and report.counts["unreadable_image"] == 1
    assert "COCO/26/27" in report.examples["unreadable_image"][0]


def test_mask_ids_of_another_type_still_join(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    m = datasets.load_dataset(str(masks), split="train", cache_dir=str(cache))
    m = m.filter(lambda i, a: i.isdigit() and a.isdigit(), input_columns=["img_id", "ann_id"])
    m = m.cast_column("img_id", datasets.Value("int64")).cast_column("ann_id", datasets.Value("int64"))
    ds, report = load_pipe(pipe, m, split="train", cache_dir=cache, fallback=False)
    fire = next(e for e in ds if e["img_id"] == "150265")
    assert fire["box"] == pytest.approx([10, 20, 30, 50], abs=1)
    assert report.counts["missing_mask"] == 2 + 2  # the two hex-id rows lost their masks in the filter


def test_already_loaded_dataset_and_single_parquet_file(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    loaded = datasets.load_dataset(str(pipe), split="train", cache_dir=str(cache))
    ds, report = load_pipe(loaded, masks / "data" / "train-00000-of-00001.parquet", split="train", cache_dir=cache)
    assert len(ds) == len(_expected()[0]) and report.skipped == len(PIPE_ROWS) - len(ds)
    # a selection of rows (an index mapping): image presence is read through the mapping
    sub, sub_report = load_pipe(loaded.select([14, 0, 1]), masks, split="train", cache_dir=cache)
    assert sub["img_id"] == ["150265", "1001"] and dict(sub_report.counts) == {"missing_image": 1}


def test_keep_columns_carry_pipe_columns_through(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    ds, _ = load_pipe(pipe, masks, split="train", cache_dir=cache, keep_columns=["object_location"],
                      keep_target=True)
    assert ds.column_names == [*OUTPUT_COLUMNS, "object_location", "target_img"]
    assert isinstance(ds[0]["target_img"], Image.Image)
    st, _ = load_pipe(pipe, masks, split="train", streaming=True, cache_dir=cache, keep_columns=["object_location"],
                      keep_target=True)
    first = next(iter(st))
    assert list(first) == ds.column_names and isinstance(first["target_img"], Image.Image)


def test_as_queries_for_training(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    ds, _ = load_pipe(pipe, masks, split="train", cache_dir=cache)
    qs = as_queries(ds)
    assert len(qs) == len(ds)
    q = qs[0]
    assert q.positives.shape == (1, 4) and q.negatives.shape == (0, 4)
    assert q.category == ds[0]["category"] and q.size == (PIPE_SIZE, PIPE_SIZE)
    assert q._image is None and q.image.size == (PIPE_SIZE, PIPE_SIZE)
    with pytest.raises(IndexError):
        qs[len(qs)]
    head = qs[1:3]
    assert len(head) == 2 and head[0].query_id == qs[1].query_id
    assert [q.category for q in qs] == ds["category"]  # iterable like a list


def test_bad_arguments_are_clear(pipe_dirs, tmp_path):
    pipe, masks, cache = pipe_dirs
    with pytest.raises(ValueError, match="lacks the column"):
        load_pipe(masks, masks, split="train", cache_dir=cache)
    with pytest.raises(ValueError, match="does not exist"):
        load_pipe(tmp_path / "missing", masks, cache_dir=cache)
    with pytest.raises(ValueError, match="fallback"):
        load_pipe(pipe, None, fallback=False, cache_dir=cache)
    with pytest.raises(ValueError, match="max_box_fraction"):
        load_pipe(pipe, masks, max_box_fraction=0, cache_dir=cache)


@pytest.mark.parametrize("text,expected", [
    ("add a fire hydrant", "fire hydrant"), ("Add an Apple.", "apple"), ("add the  red car", "red car"),
    ("Insert a cup", "cup"), ("dog", "dog"), ("an umbrella", "umbrella"), ("", None), ("add a", None), (None, None),
    ("add a teddy_bear", "teddy bear"), ("teddy_bear", "teddy bear"), ("add a bow_(weapon)", "bow"),
    ("Add a bow_(weapon).", "bow"), ("add a Band_Aid", "band aid"), ("add a (thing)", None),
])
def test_class_from_instruction(text, expected):
    assert class_from_instruction(text) == expected


def test_class_falls_back_to_the_other_instruction_columns():
    row = {"Instruction_Class": "", "Instruction_Ref_Dataset": "add a teddy_bear", "Instruction_VLM-LLM": "Add a toy"}
    assert class_of_row(row) == ("teddy bear", "Instruction_Ref_Dataset")
    row["Instruction_Ref_Dataset"] = " "
    assert class_of_row(row) == ("toy", "Instruction_VLM-LLM")
    assert class_of_row({"Instruction_Class": "add a cat", "Instruction_VLM-LLM": "Add a dog"}) == ("cat",
                                                                                                 "Instruction_Class")
    assert class_of_row({"Instruction_Class": None}) == (None, "")


def test_box_helpers_on_arrays():
    m = np.zeros((20, 30), np.uint8)
    m[4:9, 10:25] = 200
    m[0, 0] = 100  # below the threshold
    box, size = box_from_mask(Image.fromarray(m))
    assert box == [10.0, 4.0, 25.0, 9.0] and size == (30, 20)
    assert box_from_mask(Image.fromarray(np.zeros((8, 8), np.uint8)))[0] is None
    a = np.full((40, 40, 3), 100, np.uint8)
    b = a.copy()
    b[10:20, 5:30] = 250
    b[35, 35] = 250  # an isolated speckle: removed by the opening, not the largest component anyway
    box, _ = box_from_difference(Image.fromarray(a), Image.fromarray(b))
    assert box == [5.0, 10.0, 30.0, 20.0]
    with pytest.raises(ValueError, match="target_img"):
        box_from_difference(Image.fromarray(a), Image.fromarray(a[:30]))


def test_hub_ids_go_to_load_dataset(pipe_dirs, monkeypatch):
    pipe, masks, cache = pipe_dirs
    calls = []
    real = datasets.load_dataset

    def fake(path, *args, **kwargs):  # the hub is offline here: serve the local fixture under the hub ids
        calls.append((path, kwargs.get("split"), kwargs.get("streaming")))
        local = {"paint-by-inpaint/PIPE": pipe, "paint-by-inpaint/PIPE_Masks": masks}[path]
        return real(str(local), *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    ds, report = load_pipe(split="train", streaming=True, cache_dir=cache)
    assert len(list(ds)) == report.kept == len(_expected()[0])
    assert ("paint-by-inpaint/PIPE", "train", True) in calls
    assert ("paint-by-inpaint/PIPE_Masks", "train", False) in calls  # the join index is materialised


def test_a_mask_that_cannot_be_read_costs_only_its_row(monkeypatch):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((200, 200), np.uint8)).save(buf, "PNG")
    big = buf.getvalue()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 40,000 pixels is over twice the limit: a "bomb"
    good = pipe_mask_bytes((2, 2, 30, 30))
    out = pipe_module._mask_boxes([big, b"not an image", None, good], (PIPE_SIZE, PIPE_SIZE), 127, 0, False)
    assert [bool(e) for e in out["mask_error"]] == [True, True, True, False]
    assert out["mask_box"][3] == pytest.approx([2, 2, 30, 30], abs=1)
