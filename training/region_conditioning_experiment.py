"""Issue 20, item 5: a region-conditioned model against exact conditional sampling, at equal compute.

From one pretrained model (``<demo>/models/pretrain``), fine-tunes and runs DPO with the default
budget once per ``--region-prob`` (0 = today's recipe: no region in the prefix), then scores each
arm on the held-out split: oracle precision without a region and the positional-prompt benchmark
(``--queries`` held-out queries x 8 phrases, one run per ``--seeds`` seed).

    python training/region_conditioning_experiment.py --pretrain runs/demo/models/pretrain --out runs/region
"""

from __future__ import annotations

import argparse
import json
import os


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrain", required=True, help="the pretraining stage's folder (holding final/)")
    p.add_argument("--out", required=True, help="one subfolder per arm is written here")
    p.add_argument("--region-prob", type=float, nargs="+", default=[0.0, 0.5, 0.8],
                   help="the arms: share of fine-tuning boxes and DPO pairs shown a region (0: none)")
    p.add_argument("--queries", type=int, default=150, help="held-out queries asked with every phrase")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="benchmark sampling seeds")
    args = p.parse_args(argv)

    from locinsert.editing.positional import positional_benchmark
    from locinsert.evaluation import curve_row, evaluate
    from locinsert.modeling import LocationModel
    from locinsert.training.synthetic import run_synthetic_stages, synthetic_test_queries

    test = synthetic_test_queries("default", 0, 32)
    keys = ("chosen_plausible", "candidate_precision", "width_ratio_p90", "fit_auc", "kept", "flagged")
    for prob in args.region_prob:
        arm = os.path.join(args.out, f"region_{prob:g}")
        os.makedirs(arm, exist_ok=True)
        if not os.path.exists(os.path.join(arm, "pretrain")):
            os.symlink(os.path.abspath(args.pretrain), os.path.join(arm, "pretrain"))
        on = dict(region_conditioning=True, region_prob=prob) if prob else {}
        overrides = {"finetune": on, "dpo": {"region_prob": prob} if prob else {}}
        report = run_synthetic_stages(arm, budget="default", stages=["finetune", "dpo"], evaluate=False,
                                      progress=False, overrides=overrides)
        model = LocationModel.from_pretrained(os.path.join(arm, "dpo", "final")).eval()
        row = curve_row(evaluate(model, test, seed=0, progress=False, name=f"region {prob:g}", per_category=True))
        runs = [positional_benchmark(model, test[: args.queries], compare=False, seed=s, progress=False)["summary"]
                for s in args.seeds]
        result = {"region_prob": prob, "train_seconds": report.seconds,
                  "oracle_precision@100": row["oracle_precision@100"],
                  "cup": row.get("precision/cup@100"),
                  "positional": [{k: round(r[k], 3) for k in keys} for r in runs]}
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
