"""`locinsert` entry point.

Each subcommand lives in its own module ``locinsert/cli/<name>.py`` with two functions:
``add_arguments(parser)`` (cheap: no torch import) and ``run(args) -> int``.

Error policy, the same for every command (new ones get it by being listed in ``COMMANDS``):

- an option value out of its range (``--steps 0``) is refused while the command line is read, by the
  types of ``cli/options.py``: one line naming the flag and the range, exit code 2;
- a user's mistake (bad option value, missing or unreadable file, broken checkpoint, unusable
  device, an output path that cannot be written) is one line ``locinsert X: error: ...`` on stderr
  and exit code 2, never a traceback. The library raises ``ValueError``/``TypeError`` for bad input
  and ``OSError`` (``FileNotFoundError``, ``PermissionError``...) for files; ``csv.Error`` comes from
  data files. Commands check outputs and options *before* the work (``cli/common.py``);
- running out of memory is one line with a hint, exit code 2;
- Ctrl-C is ``locinsert X: interrupted``, exit code 130;
- anything else is a bug and shows its traceback (exit code 1);
- ``--debug`` prints the traceback of user errors too (``locinsert --debug X ...``; after the
  command name it works too, except for commands that pass their options on: train, bench).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import sys
import traceback

# (name, one-line help). Order is the order shown by --help.
COMMANDS = [
    ("demo", "run the whole method offline on the synthetic world and write a report"),
    ("propose", "sample plausible boxes for an object in an image (JSON + overlay PNG)"),
    ("insert", "insert an object into an image from an instruction such as 'add a dog on the left'"),
    ("remove", "remove an object from an image: 'remove the cup' with its mask or box"),
    ("edit", "add, remove and move objects: 'remove the cup, then move the chair to the left'"),
    ("app", "web app: upload, instruct (add, remove, move), see candidates and a heatmap, click, download (needs [app])"),
    ("train", "train a location model: pretrain, finetune or dpo, from a YAML config"),
    ("augment", "augment a COCO/YOLO detection dataset: paste objects at learned or random places, labelled"),
    ("eval", "TPR/FPR curves of a model or a baseline on synthetic or OPA data"),
    ("bench", "speed benchmarks: sampling, training, evaluation"),
]


def build_parser() -> argparse.ArgumentParser:
    from .options import Parser

    parser = Parser(
        prog="locinsert",
        description="Spatially aware object insertion: sample where an object could go, then draw it there.",
        epilog="Run 'locinsert <command> --help' for the options of each command.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, help_text in COMMANDS:
        try:
            module = importlib.import_module(f"locinsert.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"locinsert.cli.{name}":
                raise
            continue
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        # SUPPRESS: the subcommand's default must not overwrite a --debug given before the command
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of any error")
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..progress import quiet_progress_bars
    from ..threads import configure_threads, set_wait_policy

    # Before anything imports torch or tqdm: both read these settings from the environment once.
    set_wait_policy()
    quiet_progress_bars()
    parser = build_parser()
    # Subcommands that hand their options on to another entry point (``locinsert bench training
    # --threads 1``) declare ``PASSTHROUGH``, the destination of their sub-subcommand; everything
    # after that word goes on untouched (argparse's REMAINDER alone would split leading options off).
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as e:  # a bad option value: one line already printed (options.Parser); --help is 0
        if e.code == 2:
            return 2
        raise
    dest = getattr(getattr(args, "_module", None), "PASSTHROUGH", None)
    if dest and isinstance(getattr(args, "rest", None), list):
        tail = argv[argv.index(getattr(args, dest)) + 1:]
        args.rest = tail[1:] if tail[:1] == ["--"] else tail
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    configure_threads()
    return run_command(args)


#: Exceptions that mean "the input was wrong", answered with one line and exit code 2.
USER_ERRORS = (ValueError, TypeError, OSError, csv.Error)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 2000 else text[:2000] + " ..."


def _user_message(e: BaseException) -> str | None:
    """The one-line message for a user-facing error, or None for a bug (which keeps its traceback)."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":  # torch's is a RuntimeError
        return (f"out of memory ({_one_line(e).split('. ')[0]}); use fewer samples, a smaller --batch-size, "
                "or another --device")
    if isinstance(e, USER_ERRORS):
        return _one_line(e)
    return None


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command under the error policy of the module docstring."""
    prefix = f"locinsert {args.command}"
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = _user_message(e)
        if message is None:
            raise
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
