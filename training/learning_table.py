#!/usr/bin/env python3
"""Print each stage's figures on the synthetic world's held-out test split, next to the baselines.

    python training/learning_table.py --out runs/synthetic [--budget default] [--train]

Reads the stage models from `<out>/{pretrain,finetune,dpo}/final` (trains them first with --train or
when they are missing) and prints oracle precision and coverage (K=100) and TPR/FPR at K=10 and 100
for: random boxes, the class prior, and the model after each stage. Writes `<out>/learning_table.json`.
"""

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/synthetic", help="folder of the synthetic stages")
    p.add_argument("--budget", default="default", help="quick | default (the training budget and test size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", action="store_true", help="(re)run the three stages first")
    args = p.parse_args(argv)

    from locinsert.evaluation import format_class_table, format_learning_table
    from locinsert.training.synthetic import learning_table, run_synthetic_stages

    t0 = time.time()
    missing = not all(os.path.isdir(os.path.join(args.out, s, "final")) for s in ("pretrain", "finetune", "dpo"))
    seconds = {}
    if args.train or missing:
        seconds = run_synthetic_stages(args.out, budget=args.budget, seed=args.seed, evaluate=False).seconds
    rows = learning_table(args.out, budget=args.budget, seed=args.seed)
    seconds["total"] = round(time.time() - t0, 1)
    print(format_learning_table(rows))
    print("\noracle precision per class (K=100):\n" + format_class_table(rows))
    print(f"\nbudget={args.budget} seed={args.seed} seconds={seconds}")
    with open(os.path.join(args.out, "learning_table.json"), "w") as f:
        json.dump({"budget": args.budget, "seed": args.seed, "rows": rows, "seconds": seconds}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
