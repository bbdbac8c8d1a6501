"""Run the whole method offline on the synthetic world and write a report folder.

Steps: generate the data; pretrain the image encoder, then the location model (PIPE-like), fine-tune
(OPA-like positives), then DPO; evaluate random, class-prior, fine-tuned and DPO models (TPR/FPR
curves, oracle precision and coverage); insert, remove and move objects; train the text-mask
segmenter that `locinsert app` then uses to find objects by name.

Writes into --out: report.md (start here, with each step's wall and CPU seconds), tpr_fpr.png,
samples.png, edits.png, data_scenes.png, metrics.json, curves/*.json, edits/*.png and the trained
models under models/ (models/textmask/final: the segmenter). Afterwards `locinsert app` (no flags)
adds, removes and moves objects with these models, offline.
The default run takes under 10 minutes on 2 CPU cores; --quick about a minute.
"""

from __future__ import annotations

import argparse

from . import options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="locinsert-demo", help="report folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="small budget, about a minute (what the tests run)")
    p.add_argument("--seed", type=options.seed, default=0, help="seed for data, training and sampling (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from ..demo.run import run_demo
    from .common import check_output_dir

    check_output_dir(args.out)
    result = run_demo(args.out, quick=args.quick, seed=args.seed, progress=not args.no_progress)
    print(f"\nDemo finished in {result.seconds['total']:.0f} s. Report: {result.out_dir / 'report.md'}")
    for r in result.table:
        print(f"  {r['method']:<24} oracle precision@100 {r['oracle_precision@100'] or 0:.3f}  "
              f"TPR@100 {r['tpr@100']:.3f}  FPR@100 {r['fpr@100']:.3f}")
    return 0
