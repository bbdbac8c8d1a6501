"""Several boxes per training example (one image, several labelled objects): split, dataset, collate, stage."""

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from locinsert.boxes import boxes_to_tokens
from locinsert.cli.main import main as cli
from locinsert.data.augment import hflip_boxes
from locinsert.data.synthetic import splits
from locinsert.modeling import LocationModel, LocationModelConfig
from locinsert.training.datasets import BoxDataset, collate

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def test_pipe_like_labels_several_classes_per_scene():
    one = splits.pipe_like(30, seed=4)
    assert Counter(Counter(q.image_id for q in one).values()) == {1: 30}
    assert [q.query_id for q in one] == [q.query_id for q in splits.pipe_like(30, seed=4, boxes_per_scene=1)]
    four = splits.pipe_like(30, seed=4, boxes_per_scene=4)
    per_scene = Counter(q.image_id for q in four)
    assert len(per_scene) == 30 and max(per_scene.values()) == 4 and sum(per_scene.values()) >= 4 * 28
    for scene in per_scene:
        classes = [q.category for q in four if q.image_id == scene]
        assert len(set(classes)) == len(classes)  # different objects of one scene
    counts = Counter(q.category for q in four)
    assert max(counts.values()) - min(counts.values()) <= 4  # classes stay balanced
    assert all(len(q.positives) == 1 and len(q.negatives) == 0 for q in four)
    with pytest.raises(ValueError, match="boxes_per_scene"):
        splits.pipe_like(3, boxes_per_scene=6)
    with pytest.raises(ValueError, match="boxes_per_scene"):
        splits.pipe_like(3, boxes_per_scene=0)


def test_pipe_like_extra_boxes_add_a_class_without_moving_the_balanced_boxes():
    balanced = splits.pipe_like(40, seed=4, boxes_per_scene=5)
    extra = splits.pipe_like(40, seed=4, boxes_per_scene=5, extra_boxes=("cup",))
    key = lambda q: (q.query_id, q.category, q.positives.tolist())  # noqa: E731
    extra_keys = [key(q) for q in extra]
    assert all(key(q) in extra_keys for q in balanced)   # the balanced split is untouched
    added = [q for q in extra if key(q) not in [key(b) for b in balanced]]
    assert len(added) > 30 and {q.category for q in added} == {"cup"}
    assert all(Counter(q.category for q in extra if q.image_id == a.image_id)["cup"] == 2 for a in added)
    assert len({q.query_id for q in extra}) == len(extra)   # a second cup is a query of its own
    # a comma-separated string is the same request; unknown or repeated classes are refused
    assert [key(q) for q in splits.pipe_like(40, seed=4, boxes_per_scene=5, extra_boxes="cup")] == extra_keys
    with pytest.raises(ValueError, match="unknown classes.*lamp"):
        splits.pipe_like(3, extra_boxes=("lamp",))
    with pytest.raises(ValueError, match="twice"):
        splits.pipe_like(3, extra_boxes="cup,cup")


def test_extra_boxes_count_in_boxes_per_image():
    from locinsert.training.config import DataArguments

    args = DataArguments(dataset="synthetic", boxes_per_image=6, synthetic_extra_boxes="cup, bird")
    assert args.pipe_like_boxes() == {"boxes_per_scene": 4, "extra_boxes": ("cup", "bird")}
    assert DataArguments(dataset="synthetic", boxes_per_image=5).pipe_like_boxes() == \
        {"boxes_per_scene": 5, "extra_boxes": ()}
    with pytest.raises(ValueError, match="boxes_per_image=1 leaves no balanced box"):
        DataArguments(dataset="synthetic", boxes_per_image=1, synthetic_extra_boxes="cup")
    with pytest.raises(ValueError, match="unknown classes.*lamp"):   # at the config, before any data is made
        DataArguments(dataset="synthetic", boxes_per_image=6, synthetic_extra_boxes="lamp")


def _preprocess(images):
    return torch.zeros(len(images), 3, 8, 8)


def test_dataset_groups_an_images_boxes_and_collate_stacks_blocks():
    queries = splits.opa_like(6, seed=2, num_bins=16)
    per_image = Counter()
    for q in queries:
        per_image[q.image_id] += len(q.positives)
    ds = BoxDataset(queries, 16, preprocess=_preprocess, boxes_per_image=3)
    assert len(ds) == sum(-(-n // 3) for n in per_image.values())
    seen = Counter()
    for i in range(len(ds)):
        item = ds[i]
        assert item["box_tokens"].shape == (3, 4) and len(item["classes"]) == 3
        seen[item["classes"][0]] += 1
    # every positive of the split appears, with its class, in some group of its image
    expected = {(q.image_id, q.category, tuple(boxes_to_tokens(q.positives[j:j + 1], q.width, q.height, 16)[0].tolist()))
                for q in queries for j in range(len(q.positives))}
    got = set()
    for group, _ in ds.index:
        assert len({queries[qi].image_id for qi, _ in group}) == 1
        for qi, j in group:
            q = queries[qi]
            got.add((q.image_id, q.category,
                     tuple(boxes_to_tokens(q.positives[j:j + 1], q.width, q.height, 16)[0].tolist())))
    assert got == expected
    batch = collate([ds[0], ds[1]])
    assert batch["box_tokens"].shape == (6, 4) and batch["pixel_values"].shape[0] == 2
    # block layout: row j * B + b is box j of example b
    torch.testing.assert_close(batch["box_tokens"][1], ds[1]["box_tokens"][0])
    torch.testing.assert_close(batch["box_tokens"][2], ds[0]["box_tokens"][1])
    assert batch["classes"][3] == ds[1]["classes"][1]
    flipped = BoxDataset(queries, 16, preprocess=_preprocess, boxes_per_image=3, hflip=True)
    assert len(flipped) == 2 * len(ds)
    for i in range(len(flipped)):   # row j of an item: box j of its group, mirrored in the mirrored items
        group, mirrored = flipped.index[i]
        for j, (qi, k) in enumerate(group):
            q = queries[qi]
            box = hflip_boxes(q.positives[k:k + 1], q.width) if mirrored else q.positives[k:k + 1]
            assert flipped[i]["box_tokens"][j].tolist() == boxes_to_tokens(box, q.width, q.height, 16)[0].tolist()
    with pytest.raises(ValueError, match="boxes_per_image"):
        BoxDataset(queries, 16, preprocess=_preprocess, boxes_per_image=0)
    with pytest.raises(ValueError, match="class names each"):
        bad = ds[0]
        bad["classes"] = bad["classes"][:2]
        collate([bad, ds[1]])


def test_short_group_cycles_through_the_images_boxes():
    q = splits.pipe_like(1, seed=0, boxes_per_scene=2)
    ds = BoxDataset(q, 32, preprocess=_preprocess, boxes_per_image=3)
    assert len(ds) == 1
    item = ds[0]
    assert item["classes"] == [q[0].category, q[1].category, q[0].category]
    torch.testing.assert_close(item["box_tokens"][2], item["box_tokens"][0])


@pytest.mark.slow
def test_pretrain_with_several_boxes_per_image(tmp_path):
    """The stage end to end: k boxes per scene reach the model in one forward (and the cache path)."""
    out = tmp_path / "pre"
    args = ["train", "pretrain", "--config", str(CONFIGS / "synthetic_pretrain.yaml"), "--output_dir", str(out),
            "--preset", "tiny", "--preset_overrides", json.dumps({"freeze_image_encoder": True}),
            "--image_encoder_checkpoint", "", "--synthetic_scenes", "6", "--boxes_per_image", "3",
            "--per_device_train_batch_size", "2", "--max_steps", "3", "--save_steps", "3", "--logging_steps", "1",
            "--disable_tqdm", "true", "--feature_cache", str(tmp_path / "cache")]
    assert cli(args) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["num_examples"] == 6 and summary["global_step"] == 3  # one example per scene, 3 boxes each
    assert LocationModel.from_pretrained(out / "final").config.num_bins == 16
    assert cli([*args[:-2], "--boxes_per_image", "0"]) == 2


def test_pipe_refuses_several_boxes_per_image(tmp_path):
    from helpers_data import build_pipe

    from locinsert.data.pipe import PipeQueries, load_pipe

    pipe_dir, masks_dir = build_pipe(tmp_path / "data")
    queries = PipeQueries(load_pipe(str(pipe_dir), masks=str(masks_dir)).dataset)
    model = LocationModel(LocationModelConfig.preset("tiny"))
    with pytest.raises(ValueError, match="PIPE has one per image"):
        BoxDataset(queries, 16, preprocess=model.preprocessor, boxes_per_image=2)
