"""`locinsert` entry point.

Each subcommand lives in its own module ``locinsert/cli/<name>.py`` with two functions:
``add_arguments(parser)`` (cheap: no torch import) and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (name, one-line help). Order is the order shown by --help.
COMMANDS = [
    ("demo", "run the whole method offline on the synthetic world and write a report"),
    ("propose", "sample plausible boxes for an object in an image (JSON + overlay PNG)"),
    ("insert", "insert an object into an image from an instruction such as 'add a dog on the left'"),
    ("app", "web app: upload, instruct, see candidates and a heatmap, click, insert, download (needs [app])"),
    ("train", "train a location model: pretrain, finetune or dpo, from a YAML config"),
    ("eval", "TPR/FPR curves of a model or a baseline on synthetic or OPA data"),
    ("bench", "speed benchmarks: sampling, training, evaluation"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="locinsert",
        description="Spatially aware object insertion: sample where an object could go, then draw it there.",
        epilog="Run 'locinsert <command> --help' for the options of each command.",
    )
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
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Subcommands that hand their options on to another entry point (``locinsert bench training
    # --threads 1``) declare ``PASSTHROUGH``, the destination of their sub-subcommand; everything
    # after that word goes on untouched (argparse's REMAINDER alone would split leading options off).
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    dest = getattr(getattr(args, "_module", None), "PASSTHROUGH", None)
    if dest and isinstance(getattr(args, "rest", None), list):
        tail = argv[argv.index(getattr(args, dest)) + 1:]
        args.rest = tail[1:] if tail[:1] == ["--"] else tail
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    try:
        return int(args._module.run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as e:
        # Bad input: one clear line, not a traceback.
        print(f"locinsert {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
