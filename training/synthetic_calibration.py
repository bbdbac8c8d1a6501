"""Print the calibration figures of the synthetic placement world (the tables in docs/guides/synthetic-world.md).

How hard is the world for a sampler that looks at nothing (``random``), at the training labels only
(``prior``: same-class boxes of other scenes), and at the ground truth (``oracle``: uniform draws
from the dense set of true placements)? Also: how hard the OPA-like negatives are, and how fast
scenes and splits are generated. Optionally redraws ``docs/images/synthetic_scenes.png``.

    python training/synthetic_calibration.py                    # the figures in docs/guides/synthetic-world.md (about a minute)
    python training/synthetic_calibration.py --figure docs/images/synthetic_scenes.png
"""

from __future__ import annotations

import argparse
import platform

import torch


def _table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _figure(args) -> None:
    """Eight OPA-like queries, every class first, with positives (green) and negatives (red)."""
    from locinsert.data import synthetic

    queries = synthetic.opa_like(12, seed=args.seed + 1, size=args.size, num_bins=args.num_bins)
    picked, seen = [], set()
    for q in queries:
        if q.category not in seen:
            picked.append(q)
            seen.add(q.category)
    ids = {q.query_id for q in picked}
    picked += [q for q in queries if q.query_id not in ids][: 8 - len(picked)]
    synthetic.plot_scenes(picked, ncols=4, path=args.figure)
    print(f"\nfigure: {args.figure}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of every split (default 0)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--num-bins", type=int, default=32, help="coordinate bins of the model's grid (default 32)")
    p.add_argument("--train-scenes", type=int, default=4000, help="scenes in the PIPE-like and OPA-like training "
                   "splits the prior baseline draws from (default 4000)")
    p.add_argument("--test-scenes", type=int, default=300, help="held-out test scenes (default 300)")
    p.add_argument("--timing-scenes", type=int, default=10_000, help="scenes for the speed figures (default 10000)")
    p.add_argument("--figure", default=None, help="also write the sample-scenes figure to this PNG path")
    p.add_argument("--figure-only", action="store_true", help="only write --figure, skip the figures' tables")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if args.figure_only:
        if not args.figure:
            p.error("--figure-only needs --figure PATH")
        _figure(args)
        return 0

    from locinsert.data import synthetic
    from locinsert.data.synthetic.calibration import calibrate, timings

    t = timings(args.timing_scenes, args.seed, args.size, args.num_bins)
    n = args.timing_scenes
    print(f"## Speed ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)\n")
    print(_table(["work", "seconds"], [
        [f"generate {n} scenes", round(t["scenes"], 2)], [f"render {n} scenes", round(t["render"], 2)],
        [f"PIPE-like split of {n} scenes", round(t["pipe_like"], 2)],
        [f"OPA-like split of {n} scenes (2 classes each; measured on {n // 10})", round(t["opa_like"], 2)],
        ["dense set of one (scene, class), ms", round(t["dense_per_query_ms"], 2)]]))

    r = calibrate(args.train_scenes, args.test_scenes, args.seed, args.size, args.num_bins)
    print(f"\n## Samplers on the test split ({r['num_test_queries']} queries; prior fitted on "
          f"{r['num_train_queries']} training queries; K = 100 samples per query)\n")
    s = r["samplers"]
    print(_table(["class", "true placements (median, share of grid)", "random precision", "prior precision",
                  "oracle precision", "random coverage", "prior coverage", "oracle coverage"], [
        [c, f"{v['median_dense']:.0f} ({100 * v['dense_share']:.2f} %)", s["random"]["precision"][c],
         s["prior"]["precision"][c], s["oracle"]["precision"][c], s["random"]["coverage"][c],
         s["prior"]["coverage"][c], s["oracle"]["coverage"][c]] for c, v in r["per_class"].items()]
        + [["all", "", s["random"]["precision"]["all"], s["prior"]["precision"]["all"],
            s["oracle"]["precision"]["all"], s["random"]["coverage"]["all"], s["prior"]["coverage"]["all"],
            s["oracle"]["coverage"]["all"]]]))
    print("\n## TPR/FPR on the sparse test labels (IoU > 0.5)\n")
    print(_table(["sampler", "K=10 (FPR, TPR)", "K=100 (FPR, TPR)"], [
        [name, f"({v['fpr@10']:.3f}, {v['tpr@10']:.3f})", f"({v['fpr@100']:.3f}, {v['tpr@100']:.3f})"]
        for name, v in s.items()]))
    print("\n## OPA-like negatives: near misses that fail the oracle\n")
    print(_table(["type", "count", "fail the oracle", "median IoU with nearest true placement",
                  "median IoU with nearest labelled positive", "share with a true placement at IoU > 0.5"], [
        [k, v["count"], v["fail_oracle"], v["median_iou_true"], v["median_iou_labelled"], v["near_true"]]
        for k, v in r["negatives"].items()]))

    if args.figure:
        _figure(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
