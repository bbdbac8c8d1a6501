"""Mask data (synthetic world, PIPE rows), the IoU/Dice measurement and its baselines, and the Trainer stage."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import TrainerCallback

from locinsert.data.synthetic import make_scene, object_masks
from locinsert.regions import phrase_to_box
from locinsert.segmentation.base import Segmenter
from locinsert.segmentation.data import (LOCATION_PHRASES, MaskDataset, mirror_text, parse_target,
                                         pipe_mask_examples, synthetic_mask_examples)
from locinsert.segmentation.evaluate import (ClassPriorBaseline, RegionBaseline, evaluate_segmenter,
                                             format_mask_table, mask_iou_dice, plot_mask_examples)
from locinsert.segmentation.training import parse_textmask_args, run_textmask
from locinsert.training.checkpoints import is_complete_checkpoint, last_checkpoint, pickled_files

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "training", "configs")


# -- data ----------------------------------------------------------------------------------------------

def test_location_phrases_are_region_phrases():
    halves = {"left": (0.0, 0.0, 0.5, 1.0), "right": (0.5, 0.0, 1.0, 1.0),
              "top": (0.0, 0.0, 1.0, 0.5), "bottom": (0.0, 0.5, 1.0, 1.0)}
    for direction, phrases in LOCATION_PHRASES.items():
        for p in phrases:
            assert phrase_to_box(p) == halves[direction], p
    assert parse_target("the table on the left") == ("table", halves["left"])
    assert parse_target("the upper window") == ("window", halves["top"])
    assert parse_target("plants") == ("plant", None)
    assert parse_target("the giraffe") == (None, None)
    assert mirror_text("the cup on the left, not the right one") == "the cup on the right, not the left one"


def test_synthetic_examples_tell_two_things_apart_and_include_nothing_found():
    examples = synthetic_mask_examples(60, seed=0)
    by_scene = {}
    for e in examples:
        by_scene.setdefault((e.meta["scene_id"], e.kind), []).append(e)
    pairs = [v for v in by_scene.values() if len(v) == 2]
    assert pairs
    for a, b in pairs:
        assert a.location and b.location and a.location != b.location and not (a.mask & b.mask).any()
        ca = np.argwhere(a.mask).mean(0)
        cb = np.argwhere(b.mask).mean(0)
        axis, sign = {"left": (1, -1), "right": (1, 1), "top": (0, -1), "bottom": (0, 1)}[a.location]
        assert sign * (ca[axis] - cb[axis]) > 0, (a.text, b.text)   # "the table on the left" is the left one
    negatives = [e for e in examples if e.meta.get("negative")]
    assert negatives and all(not e.mask.any() for e in negatives)
    inserted = [e for e in examples if e.kind in ("cup", "chair", "plant", "painting", "bird")]
    assert inserted
    # a pasted sprite is drawn where its mask is: those pixels differ from the empty scene's render
    e = inserted[0]
    assert e.image[e.mask].std() > 0 or e.mask.sum() < 4


def test_existing_object_masks_match_the_labels():
    examples = synthetic_mask_examples(1, seed=5, max_inserted=0, negatives=0.0, min_pixels=1)
    from locinsert.data.synthetic.scenes import scene_rng

    scene = make_scene(scene_rng(5, "textmask"), size=64)
    objects = object_masks(scene)
    assert np.array_equal(examples[0].image, scene.render())
    for e in examples:
        matches = [o for o in objects if o.kind == e.kind and np.array_equal(o.mask, e.mask)]
        assert len(matches) == 1, e.text


def test_pipe_rows_become_examples():
    img = Image.new("RGB", (16, 12), (10, 20, 30))
    mask = np.zeros((12, 16), np.uint8)
    mask[2:6, 3:9] = 255
    rows = [dict(target_img=img, mask=Image.fromarray(mask), category="fire hydrant",
                 object_location="the left", img_id="1", ann_id="2"),
            dict(target_img=img, mask=None, category="cup", object_location=""),
            dict(target_img=img, mask=Image.fromarray(mask), category="cup")]
    ex = pipe_mask_examples(rows)
    assert [e.text for e in ex] == ["the fire hydrant at the left", "the cup"]
    assert ex[0].mask.sum() == 24 and ex[0].mask.dtype == bool and ex[0].location == "the left"
    assert [e.text for e in pipe_mask_examples(rows, location_words=False)] == ["the fire hydrant", "the cup"]


def test_mask_dataset_mirrors_image_mask_and_words(tiny_model):
    examples = synthetic_mask_examples(5, seed=1)
    ds = MaskDataset(examples, tiny_model, hflip=True)
    assert len(ds) == 2 * len(examples)
    n = len(examples)
    i = next(k for k, e in enumerate(examples) if "left" in e.text or "right" in e.text)
    a, b = ds[i], ds[i + n]
    assert torch.equal(a["labels"].flip(-1), b["labels"])
    assert torch.allclose(a["pixel_values"].flip(-1), b["pixel_values"], atol=1e-6)
    assert torch.equal(b["input_ids"], tiny_model.tokenize([mirror_text(examples[i].text)])[0])
    with pytest.raises(ValueError, match="no mask examples"):
        MaskDataset([], tiny_model)


@pytest.fixture(scope="module")
def tiny_model():
    from locinsert.segmentation import TextMaskConfig, TextMaskModel

    torch.manual_seed(0)
    return TextMaskModel(TextMaskConfig.preset("tiny"))


# -- measurement ---------------------------------------------------------------------------------------

class Oracle(Segmenter):
    """Knows the truth of every example text (test stand-in for a perfect model)."""

    def __init__(self, examples):
        self.truth = {(id(e.image), e.text): e.mask for e in examples}
        self.image_ids = {}
        self.threshold = 0.5

    def segment_many(self, image, texts):
        return np.stack([self.truth[(id(image), t)].astype(np.float32) for t in texts])


def test_iou_dice():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert mask_iou_dice(a, b) == (1.0, 1.0)
    a[0, :2] = True
    b[0, 1:3] = True
    assert mask_iou_dice(a, b) == pytest.approx((1 / 3, 0.5))
    with pytest.raises(ValueError, match="shape"):
        mask_iou_dice(a, np.zeros((3, 4), bool))


def test_evaluation_ranks_oracle_above_the_no_image_baselines(tmp_path):
    train = synthetic_mask_examples(40, seed=0)
    test = synthetic_mask_examples(15, seed=0, stream="textmask-test")
    perfect = evaluate_segmenter(Oracle(test), test)
    assert perfect["all"]["iou"] == 1.0 and perfect["nothing_found"]["accuracy"] == 1.0
    prior = evaluate_segmenter(ClassPriorBaseline().fit(train), test)
    region = evaluate_segmenter(RegionBaseline(), test)
    assert 0 < region["all"]["iou"] < prior["all"]["iou"] < 1.0
    assert set(perfect["classes"]) <= {"window", "table", "crate", "vase", "cup", "chair", "plant", "painting", "bird"}
    assert sum(c["n"] for c in perfect["classes"].values()) == perfect["all"]["n"]
    table = format_mask_table({"oracle": perfect, "region": region})
    assert "| **all** |" in table and "oracle IoU" in table
    fig = plot_mask_examples(test[:2], {"oracle": Oracle(test), "region": RegionBaseline()}, path=tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 0 and len(fig.axes) == 2 * 3
    left = RegionBaseline().segment(np.zeros((4, 6, 3), np.uint8), "the cup on the left")
    assert left[:, :3].all() and not left[:, 3:].any()
    with pytest.raises(ValueError, match="not fitted"):
        ClassPriorBaseline().segment(np.zeros((4, 6, 3), np.uint8), "the cup")


# -- training ------------------------------------------------------------------------------------------

def test_configs_parse():
    m, d, t = parse_textmask_args(["--config", os.path.join(CONFIGS, "synthetic_textmask.yaml")])
    assert m.preset == "synthetic" and d.dataset == "synthetic" and d.hflip and t.per_device_train_batch_size == 16
    # the synthetic config is the defaults, so synthetic_textmask_args() trains the same model
    import yaml

    from locinsert.segmentation.training import synthetic_textmask_args

    defaults = synthetic_textmask_args("runs/textmask")
    for key, value in yaml.safe_load(open(os.path.join(CONFIGS, "synthetic_textmask.yaml"))).items():
        got = [getattr(a, key) for a in defaults if hasattr(a, key)]
        assert got and got[0] == value, (key, got, value)
    m, d, t = parse_textmask_args(["--config", os.path.join(CONFIGS, "textmask_pipe.yaml"), "--learning_rate", "1e-4"])
    assert m.preset == "base" and d.masks_dataset and t.learning_rate == 1e-4
    with pytest.raises(FileNotFoundError):
        parse_textmask_args(["--config", "no/such.yaml"])
    with pytest.raises(ValueError, match="synthetic_scenes"):
        parse_textmask_args(["--synthetic_scenes", "0"])


class Crash(TrainerCallback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated crash")


def _args(out, **kw):
    argv = ["--preset", "tiny", "--synthetic_scenes", "6", "--eval_scenes", "0", "--max_steps", "6",
            "--save_steps", "2", "--per_device_train_batch_size", "4", "--learning_rate", "3e-3",
            "--logging_steps", "1", "--disable_tqdm", "true", "--output_dir", str(out), "--seed", "0"]
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    return parse_textmask_args(argv)


@pytest.mark.slow
def test_training_resumes_to_the_same_weights_without_pickles(tmp_path):
    clean = run_textmask(*_args(tmp_path / "clean", eval_scenes=3))
    assert clean.global_step == 6 and clean.resumed_from is None
    losses = [h["loss"] for h in json.loads(
        open(os.path.join(last_checkpoint(str(tmp_path / "clean")), "trainer_state.json")).read())["log_history"]
        if "loss" in h]
    assert losses[-1] < losses[0]
    quality = json.loads((tmp_path / "clean" / "mask_quality.json").read_text())
    assert set(quality) == {"text mask model", "class prior (no image)", "region (no image)"}

    out = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        run_textmask(*_args(out), callbacks=[Crash(at=5)])
    assert last_checkpoint(str(out)).endswith("checkpoint-4") and not (out / "final").exists()
    partial = out / "checkpoint-5"
    partial.mkdir()
    assert not is_complete_checkpoint(str(partial))
    resumed = run_textmask(*_args(out))
    assert resumed.resumed_from.endswith("checkpoint-4") and resumed.global_step == 6
    a, b = load_file(os.path.join(clean.model_path, "model.safetensors")), \
        load_file(os.path.join(resumed.model_path, "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    for root, _, files in os.walk(tmp_path):
        assert not pickled_files(root), root
    from locinsert.segmentation import TextMaskSegmenter

    seg = TextMaskSegmenter.from_pretrained(resumed.model_path)
    assert seg.segment(np.zeros((20, 30, 3), np.uint8), "the vase").shape == (20, 30)


def test_cli_train_textmask(tmp_path, capsys):
    from locinsert.cli.main import main

    assert main(["train", "textmask", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "locinsert train: error: config file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_pipe_masks_through_the_pipe_reader_and_a_training_run(tmp_path):
    from helpers_data import PIPE_ROWS, build_pipe

    from locinsert.segmentation.training import load_mask_examples

    pipe_dir, masks_dir = build_pipe(tmp_path / "data")
    model_args, data_args, training_args = _args(tmp_path / "run", dataset=str(pipe_dir), masks_dataset=str(masks_dir),
                                                 max_steps=2)
    examples = load_mask_examples(data_args)
    kept = {r.category: r for r in PIPE_ROWS if not r.reason and r.mask is not None}  # real masks only
    assert sorted(e.kind for e in examples) == sorted(kept)
    for e in examples:
        row = kept[e.kind]
        assert e.text == f"the {e.kind}"
        x1, y1, x2, y2 = row.object_box
        ys, xs = np.nonzero(e.mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2), e.kind
        # the image is the photo *with* the object, drawn where the mask is
        img = np.asarray(e.image.convert("RGB"), dtype=int)
        assert np.abs(img[e.mask] - (250, 30, 200)).max(axis=1).mean() < 40
    result = run_textmask(model_args, data_args, training_args)
    assert result.global_step == 2 and result.evaluation is None and os.path.isdir(result.model_path)


@pytest.mark.slow
def test_demo_segmenter_in_a_second_process_reports_its_errors(tmp_path):
    """The demo's background training: a bad budget fails at once, here; a failure in the other
    process comes back from result(), and the process is gone afterwards."""
    from locinsert.demo.textmask import start_demo_textmask

    with pytest.raises(ValueError, match="unknown budget"):
        start_demo_textmask(tmp_path, budget="huge")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    job = start_demo_textmask(blocker, budget="quick")     # models/textmask cannot be made under a file
    with pytest.raises(ValueError, match="is a file"):   # the other process's own clear error
        job.result()
    assert not job.running()
    job.close()   # closing twice is harmless
