"""Every number the CLI reads is checked by one vocabulary, and a flag means the same in every command."""

import argparse

import pytest

from locinsert.cli import options
from locinsert.cli.main import build_parser


def _commands():
    """(name, parser) of every subcommand and sub-subcommand (bench sampling, ...)."""
    todo = [("locinsert", build_parser())]
    while todo:
        name, parser = todo.pop()
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {n}", p) for n, p in action.choices.items()]


def test_no_flag_takes_a_bare_int_or_float():
    """A bare ``type=int`` / ``type=float`` would accept -1, nan or 99999999999 unchecked."""
    bare = [f"{name} {'/'.join(a.option_strings)}" for name, parser in _commands() for a in parser._actions
            if a.type in (int, float)]
    assert bare == []


TYPES = [
    (options.positive_int, "3", 3, ["0", "-1", "2.5", "inf", "x", "nan"]),
    (options.non_negative_int, "0", 0, ["-1", "0.5", "nan"]),
    (options.seed, "7", 7, ["-1", str(2**31), "1.5"]),
    (options.port, "8080", 8080, ["0", "99999", "80.5"]),
    (options.probability, "1", 1.0, ["-0.1", "1.01", "nan", "inf"]),
    (options.open_probability, "0.4", 0.4, ["0", "1", "nan"]),
    (options.positive_float, "0.5", 0.5, ["0", "-1", "inf", "nan"]),
    (options.non_negative_float, "0", 0.0, ["-0.5", "inf", "nan"]),
    (options.int_list(1), "10, 20 30", [10, 20, 30], ["", "10,0", "a,b"]),
    (options.dtype_name, "bf16", "bfloat16", ["int8", "fp64"]),
]


@pytest.mark.parametrize("parse,good,value,bad", TYPES, ids=[t[0].__name__ for t in TYPES])
def test_each_type_accepts_its_range_and_names_it(parse, good, value, bad):
    assert parse(good) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="must be|expected"):
            parse(text)


def test_the_same_flag_means_the_same_in_every_command():
    parser = build_parser()
    image = ["x.png"]
    argv = {"propose": ["propose", *image, "--object", "cup"], "insert": ["insert", *image, "add a cup"],
            "edit": ["edit", *image, "add a cup"], "app": ["app"]}
    for name, base in argv.items():
        dest = "num_samples" if name == "propose" else "num_candidates"
        for flag in ("-n", "--num-samples", "--num-candidates"):   # one meaning: boxes sampled per object
            assert getattr(parser.parse_args([*base, flag, "5"]), dest) == 5, (name, flag)
        if name != "propose":   # one dtype vocabulary: torch's names, short names as aliases
            assert parser.parse_args([*base, "--dtype", "bf16"]).dtype == "bfloat16"
    assert parser.parse_args(["remove", *image, "the cup", "--dtype", "fp16"]).dtype == "float16"
    assert parser.parse_args(["bench", "sampling", "--dtype", "bf16"]).dtype == "bfloat16"
    # --heatmap-samples: boxes per heatmap, 0 = no heatmap, in propose as in app
    assert parser.parse_args([*argv["propose"], "--heatmap-samples", "0"]).heatmap_samples == 0
    assert parser.parse_args(["app", "--heatmap-samples", "0"]).heatmap_samples == 0


def test_a_bad_value_is_one_line_without_the_usage_block(capsys):
    from locinsert.cli.main import main

    assert main(["insert", "x.png", "add a cup", "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["locinsert insert: error: argument --steps: must be an integer >= 1, got 0 "
                   "(see locinsert insert --help)"]
