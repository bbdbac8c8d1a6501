"""The CLI answers a user's mistake with one line and exit code 2, before doing any work."""

import re

import numpy as np
import pytest
from PIL import Image

import locinsert.evaluation
import locinsert.modeling
from locinsert.cli.main import COMMANDS, build_parser, main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_errors")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(d / "scene.png")
    (d / "notes.txt").write_text("hello")
    (d / "broken").mkdir()
    (d / "broken" / "config.json").write_text("{")
    (d / "bad.yaml").write_text("a: [1, 2")
    (d / "deep.csv").write_text("name,bbox\n" + "x" * 200_000 + ",1\n")
    _checkpoints(d)
    return d


def _checkpoints(d):
    """A LocationModel folder (the wrong type for a segmenter) and damaged TextMaskModel folders."""
    import safetensors.torch
    import torch

    from locinsert.modeling import LocationModel, LocationModelConfig
    from locinsert.segmentation import TextMaskConfig, TextMaskModel

    torch.manual_seed(0)
    LocationModel(LocationModelConfig.preset("tiny")).save_pretrained(d / "loc")
    TextMaskModel(TextMaskConfig.preset("tiny")).save_pretrained(d / "tm_cut")
    (d / "tm_cut" / "model.safetensors").write_bytes((d / "tm_cut" / "model.safetensors").read_bytes()[:3000])
    TextMaskModel(TextMaskConfig.preset("tiny")).save_pretrained(d / "tm_nan")
    state = safetensors.torch.load_file(d / "tm_nan" / "model.safetensors")
    state["head.2.weight"] = torch.full_like(state["head.2.weight"], float("nan"))
    safetensors.torch.save_file(state, d / "tm_nan" / "model.safetensors")


# (argv with {d} for the files folder, a piece of the expected message)
BAD_INPUTS = [
    # propose
    ("propose {d}/scene.png --object cup --model tiny --out {d}/notes.txt", "--out {d}/notes.txt is a file"),
    ("propose {d}/scene.png --object cup --model {d}/nope", "--model {d}/nope: checkpoint folder not found"),
    ("propose {d}/scene.png --object cup --model {d}/broken", "broken/config.json is not valid JSON"),
    ("propose {d}/scene.png --object cup --model {d}/notes.txt", "notes.txt is a file; give the checkpoint folder"),
    ("propose {d}/scene.png --object cup --model tiny --device bogus", "--device 'bogus' is not a torch device"),
    ("propose {d}/scene.png --object cup --model tiny --temperature inf", "argument --temperature: must be a finite number > 0, got inf"),
    ("propose {d}/scene.png --object cup --model tiny --top-p 2", "argument --top-p: must be a finite number > 0 and <= 1, got 2"),
    ("propose {d}/scene.png --object cup --model tiny --min-size nan", "argument --min-size: must be a finite number >= 0, got nan"),
    ("propose {d}/notes.txt --object cup --model tiny", "cannot read {d}/notes.txt as an image"),
    ("propose {d}/scene.png --object cup --model tiny -n 0",
     "argument -n/--num-samples/--num-candidates: must be an integer >= 1, got 0"),
    # insert
    ("insert {d}/scene.png 'add a cup' --model tiny --cutout {d}/notes.txt --out {d}/o",
     "cut-out: cannot read {d}/notes.txt as an image"),
    ("insert {d}/scene.png 'add a cup' --model tiny --out {d}/notes.txt", "--out {d}/notes.txt is a file"),
    ("insert {d}/scene.png 'add on the left' --model tiny --out {d}/o", "no object in instruction"),
    ("insert {d}/scene.png 'add a cup' --model {d}/broken --out {d}/o", "config.json is not valid JSON"),
    ("insert {d}/scene.png 'add a cup' --model tiny --temperature -1 --out {d}/o", "argument --temperature: must be a finite number > 0, got -1"),
    ("insert {d}/scene.png 'add this' --model tiny --reference {d}/notes.txt --out {d}/o", "notes.txt"),
    ("insert {d}/scene.png 'add this' --model tiny --reference {d}/scene.png --inpainter gligen --out {d}/o",
     "cannot use a --reference image"),
    # eval: every output and option is checked before the (long) evaluation
    ("eval --model random --out {d}/notes.txt", "--out {d}/notes.txt is a file"),
    ("eval --model random --out {d}/e --plot {d}", "--plot {d} is a folder"),
    ("eval --model random --out {d}/notes.txt/sub", "cannot be created, {d}/notes.txt is a file"),
    ("eval --model {d}/nope --out {d}/e", "--model {d}/nope: checkpoint folder not found"),
    ("eval --model {d}/broken --out {d}/e", "config.json is not valid JSON"),
    ("eval --model {d}/broken --device bogus --out {d}/e", "--device 'bogus' is not a torch device"),
    ("eval --model random --dataset {d}/no-opa --out {d}/e", "{d}/no-opa"),
    ("eval --model random --compare {d}/notes.txt --out {d}/e", "curve file {d}/notes.txt is malformed JSON"),
    ("eval --model random --iou 1.5 --out {d}/e", "argument --iou: must be a finite number >= 0 and < 1, got 1.5"),
    # demo, bench, train
    ("demo --out {d}/notes.txt", "--out {d}/notes.txt is a file"),
    ("bench sampling --preset tiny --json {d}", "--json {d} is a folder"),
    ("bench sampling --preset nope", "unknown preset 'nope'"),
    ("bench sampling --preset tiny --threads -1", "argument --threads: must be an integer >= 1, got -1"),
    ("bench evaluation --num-queries 5 --json {d}", "--json {d} is a folder"),
    ("bench training --preset tiny --json {d}/notes.txt/x.json", "cannot be created, {d}/notes.txt is a file"),
    ("insert {d}/scene.png 'add a cup' --model tiny --feather -1 --out {d}/o", "argument --feather: must be an integer >= 0, got -1"),
    ("propose {d}/scene.png --object cup --model tiny -n 100000000", "exceed the limit of 10,000,000"),
    ("train synthetic --out {d}/notes.txt", "--out {d}/notes.txt is a file"),
    ("train finetune --config {d}/missing.yaml", "config file not found"),
    ("train finetune --config {d}/bad.yaml", "config file is not valid YAML"),
]

# Every number is checked while the command line is read, whether or not the chosen backend uses it:
# the error names the flag and the range, and nothing loads first.
BAD_NUMBERS = [
    ("insert {d}/scene.png 'add a cup' --model tiny --guidance-scale nan",
     "argument --guidance-scale: must be a finite number >= 0, got nan"),
    ("insert {d}/scene.png 'add a cup' --model tiny --steps 0", "argument --steps: must be an integer >= 1, got 0"),
    ("insert {d}/scene.png 'add a cup' --model tiny --jump-length 2.5",
     "argument --jump-length: must be a whole number, got 2.5"),
    ("insert {d}/scene.png 'add a cup' --model tiny --dtype int8", "argument --dtype: must be one of float32"),
    ("insert {d}/scene.png 'add a cup' --model tiny --seed -1", "argument --seed: must be an integer >= 0 and <="),
    ("insert {d}/scene.png 'add a cup' --model tiny --top-k x", "argument --top-k: must be a number, got 'x'"),
    ("remove {d}/scene.png 'the cup' --box 1,1,5,5 --remover-guidance inf",
     "argument --remover-guidance: must be a finite number >= 0, got inf"),
    ("remove {d}/scene.png 'the cup' --box 1,1,5,5 --remover-steps -1",
     "argument --remover-steps: must be an integer >= 1, got -1"),
    ("remove {d}/scene.png 'the cup' --box 1,1,5,5 --threshold 0",
     "argument --threshold: must be a finite number > 0 and < 1, got 0"),
    ("edit {d}/scene.png 'add a cup' --model tiny --feather -1", "argument --feather: must be an integer >= 0, got -1"),
    ("edit {d}/scene.png 'remove the cup' --box 1,1,5,5 --dilate -1", "argument --dilate: must be an integer >= 0"),
    ("eval --model random --num-bins 0", "argument --num-bins: must be an integer >= 2 and <= 65536, got 0"),
    ("eval --model random --image-size 99999999999",
     "argument --image-size: must be an integer >= 32 and <= 4096, got 99999999999"),
    ("eval --model random -k 10,0", "argument -k/--ks: every value must be an integer >= 1, got 0"),
    ("eval --model random --num-scenes 0", "argument --num-scenes: must be an integer >= 1, got 0"),
    ("app --model {d}/nope --heatmap-samples -1", "argument --heatmap-samples: must be an integer >= 0, got -1"),
    ("app --model {d}/nope --dilate -1", "argument --dilate: must be an integer >= 0, got -1"),
    ("app --model {d}/nope --port 99999", "argument --port: must be an integer >= 1 and <= 65535, got 99999"),
    ("propose {d}/scene.png --object cup --model tiny --heatmap {d}/h.png --heatmap-samples 0",
     "--heatmap asks for a heatmap, but --heatmap-samples 0 turns it off"),
    ("demo --seed 2.5", "argument --seed: must be a whole number, got 2.5"),
    ("bench sampling --preset tiny --repeats 0", "argument --repeats: must be an integer >= 1, got 0"),
    ("bench sampling --preset tiny --sweep 1,0", "--sweep takes a comma-separated list of counts"),
    ("bench training --preset tiny --steps 0", "argument --steps: must be an integer >= 1, got 0"),
    ("bench evaluation --num-queries 0", "argument --num-queries: must be an integer >= 1, got 0"),
    ("train synthetic --seed -3", "argument --seed: must be an integer >= 0"),
]

# A checkpoint that cannot be loaded is one line naming the file and the problem.
BAD_CHECKPOINTS = [
    ("remove {d}/scene.png 'the cup' --segmenter textmask --segmenter-model {d}/loc",
     "--segmenter-model {d}/loc: {d}/loc/config.json is a 'locinsert' model config, not a 'locinsert_textmask' one"),
    ("edit {d}/scene.png 'remove the cup' --segmenter textmask --segmenter-model {d}/tm_cut",
     "tm_cut/model.safetensors is not a readable safetensors file (truncated or corrupt?)"),
    ("remove {d}/scene.png 'the cup' --segmenter textmask --segmenter-model {d}/tm_nan",
     "tm_nan/model.safetensors holds NaN or infinite values in 1 tensors (head.2.weight)"),
    ("remove {d}/scene.png 'the cup' --segmenter textmask --segmenter-model {d}/nope",
     "--segmenter-model {d}/nope: checkpoint folder not found"),
    ("remove {d}/scene.png 'the cup' --segmenter clipseg --segmenter-model {d}/loc",
     "is a 'locinsert' model config, not a 'clipseg' one"),
    ("propose {d}/scene.png --object cup --model {d}/tm_cut", "is a 'locinsert_textmask' model config, not a 'locinsert'"),
    ("train textmask --model_name_or_path {d}/loc --output_dir {d}/tm_out",
     "{d}/loc/config.json is a 'locinsert' model config, not a 'locinsert_textmask' one"),
]

# remove and edit read the same sentences; one step where one is taken; locations must be understood.
BAD_INSTRUCTIONS = [
    ("remove {d}/scene.png 'remove the cup, then remove the plant' --box 1,1,5,5",
     "'remove the cup, then remove the plant' is a sequence of 2 steps (remove 'cup', then remove 'plant'), "
     "but one step is expected; use locinsert edit"),
    ("remove {d}/scene.png 'the cup and the plant' --box 1,1,5,5", "is a sequence of 2 steps"),
    ("remove {d}/scene.png 'remove the cup on the moon' --box 1,1,5,5",
     "location in 'remove the cup on the moon' is not understood"),
    ("edit {d}/scene.png 'remove the cup on the moon' --box 1,1,5,5",
     "location in 'remove the cup on the moon' is not understood"),
    ("edit {d}/scene.png 'move the cup on the moon to the left' --box 1,1,5,5 --model tiny",
     "location in 'move the cup on the moon to the left' is not understood"),
]

BAD_INPUTS += BAD_NUMBERS + BAD_CHECKPOINTS + BAD_INSTRUCTIONS


def no_load(cls, *a, **k):
    raise AssertionError("the model loaded although an option was bad")


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[b[0].split(" --")[0][:40] + "|" + b[1][:30]
                                                          for b in BAD_INPUTS])
def test_user_error_is_one_line_exit_2(files, capsys, monkeypatch, argv, message):
    import shlex

    def no_work(*a, **k):
        raise AssertionError("the evaluation ran although its inputs were bad")

    monkeypatch.setattr(locinsert.evaluation, "evaluate", no_work)
    monkeypatch.setattr(locinsert.modeling.LocationModel, "from_pretrained", classmethod(no_load)
                        if argv.startswith("app ") else locinsert.modeling.LocationModel.from_pretrained)
    try:
        rc = main(shlex.split(argv.format(d=files)))
    except SystemExit as e:   # sub-parsers of train and bench exit as argparse does, after the one line
        rc = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert rc == 2, err
    assert "Traceback" not in err
    # "locinsert bench sampling: error: ..." when the sub-subcommand's parser refuses an option value
    assert len(lines) == 1 and re.match(rf"locinsert {argv.split()[0]}( \w+)?: error: ", lines[0]), err
    assert message.format(d=files) in lines[0]


def test_cuda_without_a_gpu_is_a_user_error(files, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the check is for machines without one")
    assert main(["propose", str(files / "scene.png"), "--object", "cup", "--model", "tiny", "--device", "cuda"]) == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err


def test_csv_error_is_a_user_error(files, capsys, monkeypatch):
    """A data file the csv module refuses (field over its limit) is the user's file, not a bug."""
    import csv

    import locinsert.cli.eval as cli_eval

    def load(args):
        with open(files / "deep.csv", newline="") as f:
            list(csv.reader(f))
        raise AssertionError("csv accepted the field")

    monkeypatch.setattr(cli_eval, "_load_queries", load)
    assert main(["eval", "--model", "random", "--dataset", str(files / "deep.csv"), "--out", str(files / "e")]) == 2
    assert "field larger than field limit" in capsys.readouterr().err


@pytest.mark.parametrize("name", [name for name, _ in COMMANDS])
def test_policy_holds_for_every_command(name, monkeypatch, capsys):
    """New commands get the policy by being listed: user errors are one line, bugs keep their traceback."""
    module = build_parser()._subparsers._group_actions[0].choices[name].get_default("_module")
    argv = {"train": [name, "synthetic"], "bench": [name, "sampling"], "propose": [name, "x", "--object", "o"],
            "insert": [name, "x", "add a cup"], "eval": [name, "--model", "random"],
            "remove": [name, "x", "the cup"], "edit": [name, "x", "remove the cup"]}.get(name, [name])

    def user_error(args):
        raise FileNotFoundError("no such file: x.png")

    monkeypatch.setattr(module, "run", user_error)
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"locinsert {name}: error: no such file: x.png"
    # --debug shows the traceback of the same error, before or after the command name
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith(f"locinsert {name}: error: no such file: x.png")
    if name not in ("train", "bench"):  # those hand everything after their sub-command on, untouched
        assert main([*argv, "--debug"]) == 2
        assert "Traceback" in capsys.readouterr().err

    def bug(args):
        raise KeyError("internal")

    monkeypatch.setattr(module, "run", bug)
    with pytest.raises(KeyError):
        main(argv)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err


def test_out_of_memory_is_one_line(monkeypatch, capsys):
    import torch

    import locinsert.cli.demo as demo

    def oom(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(demo, "run", oom)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "out of memory (CUDA out of memory)" in err and "--batch-size" in err
