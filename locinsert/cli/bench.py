"""Speed benchmarks, each measured in one run on this machine.

subcommands:
  sampling    100 box samples for one image with the "base" shapes (random weights, offline):
              generate() with the prefix repeated per sample, a KV cache copied per sample,
              our shared-prefix decoding, and the arithmetic floor (FLOPs / measured GEMM rate)
  training    training samples/s with and without cached encoder features (locinsert.bench.training)
  evaluation  evaluation throughput (locinsert.bench.evaluation)

examples:
  locinsert bench sampling
  locinsert bench sampling --preset tiny --num-samples 50 --skip-generate --json bench.json
  locinsert bench sampling --device cuda --dtype bf16 --skip-generate --sweep 1,10,100,1000 \
      --images-per-call 1,8 --compile none,cudagraphs
  locinsert bench training --help
"""

from __future__ import annotations

import argparse

from . import options

#: ``locinsert bench training ARGS``: ARGS go to that benchmark's own parser (see cli/main.py).
PASSTHROUGH = "bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="<benchmark>")
    s = sub.add_parser("sampling", help="box sampling: generate() vs copied cache vs shared prefix vs floor")
    s.add_argument("--preset", default="base", help="model preset, random weights (default: base)")
    s.add_argument("--num-samples", type=options.positive_int, default=100, help="boxes per image (default: 100)")
    s.add_argument("--repeats", type=options.positive_int, default=3,
                   help="timed runs per fast approach; best is kept (default: 3)")
    s.add_argument("--skip-generate", action="store_true", help="skip the slow generate() baseline")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    s.add_argument("--dtype", default="float32", type=options.dtype_name, choices=options.DTYPE_NAMES,
                   help="weights and activations: float32, float16 or bfloat16 (fp32, fp16, bf16 also work); the "
                        "floor uses a GEMM rate measured at this dtype (default: float32)")
    s.add_argument("--sweep", default=None, metavar="N,N,...",
                   help="also time LocationModel.sample for each of these N (e.g. 1,10,100,1000)")
    s.add_argument("--images-per-call", default="1", metavar="B,B,...",
                   help="sweep: images per sample() call (default: 1)")
    s.add_argument("--compile", default="none", metavar="MODE,MODE,...",
                   help="sweep: decode-step compile modes to compare: none, default, reduce-overhead, "
                        "max-autotune, cudagraphs (GPU) (default: none)")
    s.add_argument("--skip-compare", action="store_true",
                   help="skip the four-way comparison at --num-samples (sweep and floor only)")
    s.add_argument("--threads", type=options.positive_int, default=None, help="torch threads (default: torch's choice)")
    s.add_argument("--json", default=None, help="also write the figures to this JSON file")
    for name, text in (("training", "training samples/s (locinsert.bench.training)"),
                       ("evaluation", "evaluation throughput (locinsert.bench.evaluation)")):
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to that benchmark")


def _delegate(name: str, argv: list[str]) -> int:
    import importlib

    try:
        module = importlib.import_module(f"locinsert.bench.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"locinsert.bench.{name}":
            raise
        print(f"locinsert bench {name}: not available (locinsert.bench.{name} is not installed in this version)")
        return 1
    if not hasattr(module, "main"):
        print(f"locinsert bench {name}: locinsert.bench.{name} has no main(argv) entry point")
        return 1
    return int(module.main(argv) or 0)


def _csv(text: str, kind, flag: str) -> list:
    try:
        values = [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes a comma-separated list, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty")
    return values


def _counts(text: str, flag: str) -> list[int]:
    try:
        return options.int_list(1)(text)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"{flag} takes a comma-separated list of counts: {e}") from None


def run(args) -> int:
    if args.bench in ("training", "evaluation"):
        return _delegate(args.bench, list(args.rest))
    if args.bench != "sampling":
        print("choose a benchmark: sampling, training or evaluation (see locinsert bench --help)")
        return 1
    import torch

    from locinsert.bench import write_json
    from locinsert.bench.sampling import format_results, run_sampling_bench

    from .common import check_output_file

    if args.threads:
        torch.set_num_threads(args.threads)
    from locinsert.modeling.sampling import DECODE_COMPILE_MODES

    if args.json:
        check_output_file(args.json, "--json")
    modes = _csv(args.compile, str, "--compile")
    bad = [m for m in modes if m not in DECODE_COMPILE_MODES]
    if bad:
        raise ValueError(f"--compile: unknown mode(s) {', '.join(bad)}; choose from {', '.join(DECODE_COMPILE_MODES)}")
    sweep = _counts(args.sweep, "--sweep") if args.sweep else None
    results = run_sampling_bench(args.preset, args.num_samples, args.repeats, args.skip_generate,
                                 device=args.device, dtype=args.dtype, sweep=sweep,
                                 images_per_call=_counts(args.images_per_call, "--images-per-call"),
                                 compile_modes=modes, skip_compare=args.skip_compare)
    print(format_results(results))
    if args.json:
        write_json(results, args.json)
    return 0
