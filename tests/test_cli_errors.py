"""The CLI answers a user's mistake with one line and exit code 2, before doing any work."""

import numpy as np
import pytest
from PIL import Image

import locinsert.evaluation
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
    return d


# (argv with {d} for the files folder, a piece of the expected message)
BAD_INPUTS = [
    # propose
    ("propose {d}/scene.png --object cup --model tiny --out {d}/notes.txt", "--out {d}/notes.txt is a file"),
    ("propose {d}/scene.png --object cup --model {d}/nope", "--model {d}/nope: checkpoint folder not found"),
    ("propose {d}/scene.png --object cup --model {d}/broken", "broken/config.json is not valid JSON"),
    ("propose {d}/scene.png --object cup --model {d}/notes.txt", "notes.txt is a file; give the checkpoint folder"),
    ("propose {d}/scene.png --object cup --model tiny --device bogus", "--device 'bogus' is not a torch device"),
    ("propose {d}/scene.png --object cup --model tiny --temperature inf", "--temperature must be a finite number > 0"),
    ("propose {d}/scene.png --object cup --model tiny --top-p 2", "--top-p must be a finite number > 0 and <= 1"),
    ("propose {d}/scene.png --object cup --model tiny --min-size nan", "--min-size must be a finite number"),
    ("propose {d}/notes.txt --object cup --model tiny", "cannot read {d}/notes.txt as an image"),
    ("propose {d}/scene.png --object cup --model tiny -n 0", "-n must be at least 1"),
    # insert
    ("insert {d}/scene.png 'add a cup' --model tiny --cutout {d}/notes.txt --out {d}/o",
     "cut-out: cannot read {d}/notes.txt as an image"),
    ("insert {d}/scene.png 'add a cup' --model tiny --out {d}/notes.txt", "--out {d}/notes.txt is a file"),
    ("insert {d}/scene.png 'add on the left' --model tiny --out {d}/o", "no object in instruction"),
    ("insert {d}/scene.png 'add a cup' --model {d}/broken --out {d}/o", "config.json is not valid JSON"),
    ("insert {d}/scene.png 'add a cup' --model tiny --temperature -1 --out {d}/o", "--temperature must be"),
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
    ("eval --model random --iou 1.5 --out {d}/e", "--iou must be in [0, 1)"),
    # demo, bench, train
    ("demo --out {d}/notes.txt", "--out {d}/notes.txt is a file"),
    ("bench sampling --preset tiny --json {d}", "--json {d} is a folder"),
    ("bench sampling --preset nope", "unknown preset 'nope'"),
    ("bench sampling --preset tiny --threads -1", "--threads must be at least 1"),
    ("bench evaluation --num-queries 5 --json {d}", "--json {d} is a folder"),
    ("bench training --preset tiny --json {d}/notes.txt/x.json", "cannot be created, {d}/notes.txt is a file"),
    ("insert {d}/scene.png 'add a cup' --model tiny --feather -1 --out {d}/o", "feather must be an integer >= 0"),
    ("propose {d}/scene.png --object cup --model tiny -n 100000000", "exceed the limit of 10,000,000"),
    ("train synthetic --out {d}/notes.txt", "--out {d}/notes.txt is a file"),
    ("train finetune --config {d}/missing.yaml", "config file not found"),
    ("train finetune --config {d}/bad.yaml", "config file is not valid YAML"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[b[0].split(" --")[0][:40] + "|" + b[1][:30]
                                                          for b in BAD_INPUTS])
def test_user_error_is_one_line_exit_2(files, capsys, monkeypatch, argv, message):
    import shlex

    def no_work(*a, **k):
        raise AssertionError("the evaluation ran although its inputs were bad")

    monkeypatch.setattr(locinsert.evaluation, "evaluate", no_work)
    rc = main(shlex.split(argv.format(d=files)))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"locinsert {argv.split()[0]}: error: "), err
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
            "remove": [name, "x", "the cup"], "edit": [name, "x", "remove the cup"],
            "augment": [name, "x.json", "--out", "o"]}.get(name, [name])

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
