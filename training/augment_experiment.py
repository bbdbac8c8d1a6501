#!/usr/bin/env python3
"""The four-arm augmentation table: none / random copy-paste / learned placement / oracle placement.

    python training/augment_experiment.py --model runs/demo/models/dpo/final --out runs/augment_experiment

On the synthetic world with look-alike distractors at implausible places (unlabelled), a small
CenterNet is trained on a few labelled images plus each arm's augmentations, with the same steps
and seeds for every arm, and scored with pycocotools on a shared test set (mean ± sd over seeds).
Writes ``<out>/augment_experiment.json``, ``<out>/table.md`` and ``<out>/augment_arms.png``.
Design and results: docs/experiments/augmentation.md. About 12 minutes on one CPU thread.
"""

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the location model for the learned arm (a checkpoint folder)")
    p.add_argument("--out", default="runs/augment_experiment", help="output folder")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-train", type=int, default=40, help="labelled images per seed")
    p.add_argument("--copies", type=int, default=4, help="augmented versions of each labelled image")
    p.add_argument("--n-test", type=int, default=400, help="test images (shared by all arms and seeds)")
    p.add_argument("--steps", type=int, default=200, help="detector training steps (every arm)")
    p.add_argument("--selection", choices=["best", "sample"], default="best",
                   help="learned arm: most likely of 16 candidates, or a plain draw")
    p.add_argument("--arms", default="none,random,learned,oracle")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from locinsert.copypaste.experiment import format_table, run_experiment
    from locinsert.io import write_json_atomic, write_text_atomic

    os.makedirs(args.out, exist_ok=True)
    result = run_experiment(args.model, seeds=args.seeds, n_train=args.n_train, copies=args.copies,
                            n_test=args.n_test, steps=args.steps, arms=tuple(args.arms.split(",")),
                            selection=args.selection, figure=os.path.join(args.out, "augment_arms.png"),
                            log=lambda m: print(m, flush=True))
    table = format_table(result)
    print(table)
    print(f"seconds={result['seconds']}")
    write_json_atomic(os.path.join(args.out, "augment_experiment.json"), result)
    write_text_atomic(os.path.join(args.out, "table.md"), table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
