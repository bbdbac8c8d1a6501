"""PIPE reader on a parquet fixture with PIPE's real columns and JPEG bytes: join, boxes, classes, skips, streaming."""

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from helpers_data import PIPE_ROWS, PIPE_SIZE, build_pipe
from locinsert.boxes import box_iou
from locinsert.data import load_pipe
from locinsert.data.pipe import (OUTPUT_COLUMNS, as_queries, box_from_difference, box_from_mask,
                                 class_from_instruction)


@pytest.fixture(scope="module")
def pipe_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    pipe, masks = build_pipe(root, split="train")
    return pipe, masks, root / "cache"


def _expected():
    kept = [r for r in PIPE_ROWS if not r[6]]
    skipped = {}
    for r in PIPE_ROWS:
        if r[6]:
            skipped[r[6]] = skipped.get(r[6], 0) + 1
    return kept, skipped


def _check_examples(examples):
    kept, _ = _expected()
    assert len(examples) == len(kept)
    by_key = {(e["target_img_dataset"], e["img_id"], e["ann_id"]): e for e in examples}
    for d, img, ann, _, mbox, obox, _, category in kept:
        e = by_key[(d, img, ann)]
        assert e["category"] == category
        assert isinstance(e["image"], Image.Image) and e["image"].size == (PIPE_SIZE, PIPE_SIZE)
        assert (e["width"], e["height"]) == (PIPE_SIZE, PIPE_SIZE)
        box = torch.tensor(e["box"])
        if mbox is not None:  # from the mask: exact up to JPEG edge softness
            assert e["box_source"] == "mask"
            assert torch.allclose(box, torch.tensor(mbox, dtype=torch.float32), atol=1.0), (box, mbox)
        else:  # from the source/target difference: close to the drawn object
            assert e["box_source"] == "difference"
            assert box_iou(box[None], torch.tensor([obox], dtype=torch.float32))[0, 0] > 0.8


def test_load_local_parquet_joins_masks_by_key_and_counts_skips(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    ds, report = load_pipe(pipe, masks, split="train", cache_dir=cache)
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == list(OUTPUT_COLUMNS)
    kept, skipped = _expected()
    assert dict(report.counts) == skipped
    assert report.seen == len(PIPE_ROWS) and report.kept == len(kept) == len(ds)
    _check_examples(list(ds))
    # the same (img_id, ann_id) exists in COCO and OpenImages with different masks: the join uses all 3 keys
    cars = ds.filter(lambda e: e["img_id"] == "1001")
    assert sorted(cars["category"]) == ["apple", "red car"]
    assert "COCO/3/4" in report.examples["empty_mask"][0]


def test_streaming_gives_the_same_examples(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    ds, report = load_pipe(pipe, masks, split="train", streaming=True, cache_dir=cache)
    assert isinstance(ds, datasets.IterableDataset)
    assert report.seen == 0  # nothing read yet: the report fills while iterating
    examples = list(ds)
    _check_examples(examples)
    _, skipped = _expected()
    assert dict(report.counts) == skipped and report.seen == len(PIPE_ROWS)


def test_no_masks_uses_difference_for_every_row(pipe_dirs):
    pipe, _, cache = pipe_dirs
    ds, report = load_pipe(pipe, None, split="train", cache_dir=cache)
    assert set(ds["box_source"]) == {"difference"}
    by_img = {e["img_id"]: e for e in ds.select_columns(["img_id", "box"])}
    assert box_iou(torch.tensor([by_img["150265"]["box"]]), torch.tensor([[10.0, 20.0, 30.0, 50.0]]))[0, 0] > 0.8
    # the 2x2 "bird" is removed by the opening, the vase row has no change at all
    assert dict(report.counts) == {"empty_difference": 2, "no_class": 1, "whole_image_box": 1}


def test_without_fallback_rows_lacking_a_mask_are_dropped(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    ds, report = load_pipe(pipe, masks, split="train", fallback=False, cache_dir=cache)
    assert report.counts["missing_mask"] == 2
    assert "difference" not in set(ds["box_source"])


def test_already_loaded_dataset_and_single_parquet_file(pipe_dirs):
    pipe, masks, cache = pipe_dirs
    loaded = datasets.load_dataset(str(pipe), split="train", cache_dir=str(cache))
    ds, report = load_pipe(loaded, masks / "data" / "train-00000-of-00001.parquet", split="train", cache_dir=cache)
    assert len(ds) == len(_expected()[0]) and report.skipped == len(PIPE_ROWS) - len(ds)


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
])
def test_class_from_instruction(text, expected):
    assert class_from_instruction(text) == expected


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
