"""The command line as a whole: every subcommand has --help, and CI runs the README's test command."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from locinsert.cli.main import COMMANDS, build_parser, main
from locinsert.cli.options import STAGE_CHOICES

ROOT = Path(__file__).resolve().parents[1]


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name, _ in COMMANDS:
        assert name in out, f"'{name}' missing from locinsert --help"


@pytest.mark.parametrize("name", [name for name, _ in COMMANDS])
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) > 5, f"'locinsert {name} --help' explains too little:\n{out}"


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 1
    assert "usage" in capsys.readouterr().out


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "locinsert.cli.main", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "locinsert" in r.stdout


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    # The second set-up command of the README: install, then the test command after '&&'.
    m = re.search(r'pip install -e "\.\[dev\]" && (python3 -m pytest[^\n]*)', readme)
    assert m, "README must start with the install-and-test command"
    assert m.group(1).strip() in ci, f"CI must run the README's test command {m.group(1)!r}"
    assert 'pip install -e ".[dev]"' in ci


def test_bench_passes_options_on(monkeypatch):
    import locinsert.bench.evaluation as bench_eval

    seen = {}
    monkeypatch.setattr(bench_eval, "main", lambda argv: seen.setdefault("argv", argv) and 0)
    assert main(["bench", "evaluation", "--threads", "1", "--num-queries", "5"]) == 0
    assert seen["argv"] == ["--threads", "1", "--num-queries", "5"]


def test_unknown_option_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--no-such-option"])
    assert e.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("stage", STAGE_CHOICES)
def test_train_stage_help(stage, capsys):
    # each stage builds its own parser from config dataclasses; one bad help text breaks the whole page
    with pytest.raises(SystemExit) as e:
        main(["train", stage, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--help" in out and len(out.splitlines()) > 10, out
    if stage == "encoder":
        assert "80 % of the pixels" in " ".join(out.split())   # the text reads as written, unescaped
