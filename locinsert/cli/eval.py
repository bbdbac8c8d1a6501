"""TPR/FPR curves (the paper's Fig. 6 protocol) of a location model or a baseline.

For every query (image, category, labelled positive and negative boxes) the model samples K boxes,
K = 10, 20, ..., 100 (one run of max K samples; smaller K use its first K). Each sample matches the
labelled box with the highest IoU if that IoU > --iou; samples matching nothing are ignored.
TPR = positives hit / positives, FPR = negatives hit / negatives, pooled over queries.

Writes to --out: curve.json (every point with its counts, plus per-category curves),
per_category.csv, and curves.png (this curve, any --compare curves, and with --paper the paper's
reference curves). On the synthetic world it also reports oracle precision and coverage.

examples:
  locinsert eval --model random --dataset synthetic --out eval/random
  locinsert eval --model prior --dataset synthetic --out eval/prior --compare eval/random/curve.json --paper
  locinsert eval --model path/to/checkpoint --dataset path/to/OPA --out eval/opa
  locinsert eval --model random --dataset path/to/fopa_labels --images path/to/backgrounds
  locinsert eval --model runs/dpo --dataset synthetic --positional --max-queries 40 --out eval/positional

--positional runs the positional-prompt benchmark instead (synthetic world, a trained model): every
query asked with 8 phrases ("on the left", ..., "in the center"); it reports the share of chosen boxes
the oracle finds plausible, candidate precision at K (-n), the chosen box's size relative to true
placements, and fit detection (ROC AUC; requests kept / flagged at --fit-threshold), and writes
positional.json and positional.png (prompts, old and new chosen boxes, verdicts) to --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options
from .options import BASELINE_CHOICES as BASELINE_NAMES


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to evaluate")
    g.add_argument("--model", required=True,
                   help="a LocationModel checkpoint folder or hub id, or a baseline: 'random' (uniform valid "
                        "boxes) or 'prior' (training boxes of the same class, image ignored)")
    g.add_argument("--dataset", default="synthetic",
                   help="'synthetic' (the synthetic world's held-out test split; default), an OPA archive "
                        "root (train_set.csv/test_set.csv + background/), or a folder/CSV of FOPA pair labels "
                        "(then give --images)")
    g.add_argument("--images", default=None, help="image root for FOPA pair labels (backgrounds)")
    g.add_argument("--categories", default=None,
                   help="OPA: fg_id -> category name (.json or two-column .csv); else folder names are used")
    g.add_argument("--split", default="test", help="OPA split to evaluate (default: test)")
    g.add_argument("--max-queries", type=options.positive_int, default=None, help="evaluate only the first N queries")
    g.add_argument("--prior-train", default=None, metavar="PATH",
                   help="OPA: the training labels the 'prior' baseline draws from (a folder or CSV; default: the "
                        "train split beside --dataset)")

    s = p.add_argument_group("synthetic world")
    s.add_argument("--num-scenes", type=options.positive_int, default=200,
                   help="scenes in the test split (default: 200)")
    s.add_argument("--train-scenes", type=options.positive_int, default=1000,
                   help="scenes of the OPA-like training split the 'prior' baseline is fitted on (default: 1000)")
    s.add_argument("--world-seed", type=options.seed, default=0, help="seed of the synthetic world (default: 0)")
    s.add_argument("--image-size", type=options.int_in(32, 4096), default=64,
                   help="scene size in pixels, 32-4096 (default: 64)")

    m = p.add_argument_group("protocol")
    m.add_argument("-k", "--ks", type=options.int_list(1), default=list(range(10, 101, 10)),
                   help="numbers of samples per query, e.g. '10,20,50' (default: 10,20,...,100)")
    m.add_argument("--iou", type=options.float_in(0, 1, high_open=True), default=0.5,
                   help="IoU a sample must exceed to match a label, in [0, 1) (default: 0.5)")
    m.add_argument("--count", choices=("labels", "predictions"), default="labels",
                   help="'labels': labelled boxes hit at least once (paper; default); 'predictions': "
                        "matched samples / labelled boxes")
    m.add_argument("--seed", type=options.seed, default=0, help="sampling seed; same seed, same curve (default: 0)")
    m.add_argument("--batch-size", type=options.positive_int, default=16, help="queries per sample() call (default: 16)")
    m.add_argument("--num-bins", type=options.int_in(2, 65536), default=None,
                   help="'random' baseline grid, 2-65536 (default: 32 on the synthetic world, 1024 on OPA)")
    m.add_argument("--device", default="cpu", help="device for a model (default: cpu)")

    q = p.add_argument_group("positional prompts (synthetic world)")
    q.add_argument("--positional", action="store_true",
                   help="run the positional-prompt benchmark instead of the TPR/FPR curves")
    q.add_argument("-n", "--num-candidates", type=options.positive_int, default=None,
                   help="candidates per positional request (default: ObjectInserter's)")
    q.add_argument("--fit-threshold", type=options.probability, default=None,
                   help="fit threshold for kept/flagged (default: the model's calibrated threshold, else the library's "
                        "DEFAULT_FIT_THRESHOLD)")
    q.add_argument("--no-refine", dest="refine", action="store_false",
                   help="choose the most likely sampled box as it is, without moving it to its local maximum of "
                        "log p (the inserter's refine=False; for comparison)")
    q.add_argument("--calibrate", action="store_true",
                   help="also report the largest threshold that keeps 92%% of the fitting requests "
                        "(calibrate on scenes other than the test split: another --world-seed)")
    q.add_argument("--save-threshold", action="store_true",
                   help="with --calibrate: write the calibrated threshold into the model folder's config.json "
                        "(fit_threshold); ObjectInserter, the CLI and the app then use it for this model")

    o = p.add_argument_group("output")
    o.add_argument("--out", default="locinsert-eval", help="output folder (default: locinsert-eval)")
    o.add_argument("--name", default=None, help="curve label in plots (default: the model name)")
    o.add_argument("--compare", nargs="+", default=[], metavar="JSON",
                   help="curve.json files of other runs to draw on the same plot")
    o.add_argument("--paper", nargs="?", const="main", default=None, choices=("main", "all"),
                   help="overlay the paper's OPA curves (arXiv 2410.13564 Fig. 6): 'main' (with/without DPO, "
                        "random; default when given) or 'all'")
    o.add_argument("--title", default=None, help="plot title")
    o.add_argument("--plot", default=None, metavar="PNG", help="also write the figure to this path")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_queries(args):
    """(test queries, a thunk giving training queries for the prior, a description)."""
    from pathlib import Path

    if args.dataset == "synthetic":
        from locinsert.data import synthetic

        def kw(n):
            return dict(num_scenes=n, seed=args.world_seed, size=args.image_size)

        queries = synthetic.test_split(**kw(args.num_scenes))
        desc = f"synthetic test split ({args.num_scenes} scenes, world seed {args.world_seed})"
        return queries, (lambda: synthetic.opa_like(**kw(args.train_scenes))), desc

    from locinsert.data import load_opa

    queries = load_opa(args.dataset, split=args.split, images=args.images, categories=args.categories)
    report = getattr(queries, "report", None)
    if report is not None and str(report).strip():
        print(str(report))
    def train():
        source = args.prior_train or args.dataset
        if args.prior_train is None and Path(source).is_file():
            # A CSV path names one split; reading "train" from it would fit the prior on the test labels.
            raise ValueError("--dataset is a single CSV; give the prior's training labels with --prior-train")
        return load_opa(source, split="train", images=args.images, categories=args.categories)

    return queries, train, f"OPA {args.split} ({args.dataset})"


def _load_model(args, train_queries):
    from locinsert.boxes import DEFAULT_NUM_BINS
    from locinsert.evaluation import make_baseline

    if args.model in BASELINE_NAMES:
        num_bins = args.num_bins or (32 if args.dataset == "synthetic" else DEFAULT_NUM_BINS)
        train = train_queries() if args.model == "prior" else None
        return make_baseline(args.model, train, num_bins=num_bins)

    from .common import load_location_model

    return load_location_model(args.model, args.device)


def _write_per_category(curve, path) -> None:
    import csv

    fields = ["category", "num_queries", "k", "fpr", "tpr", "matched_positives", "num_positives",
              "matched_negatives", "num_negatives", "ignored", "num_predictions"]
    from locinsert.io import write_file_atomic

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            for cat, c in sorted(curve.per_category.items()):
                for p in c.points:
                    w.writerow({"category": cat, "num_queries": c.meta.get("num_queries"), **vars(p)})

    write_file_atomic(path, write, suffix=".csv")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from locinsert.evaluation import Curve, evaluate, save_figure
    from locinsert.evaluation.evaluate import check_ks

    from .common import check_device, check_output_dir, check_output_file

    ks = check_ks(args.ks)
    # outputs and options are checked before the evaluation, which can take hours
    out = check_output_dir(args.out)
    if args.plot:
        check_output_file(args.plot, "--plot")
    if args.model not in BASELINE_NAMES:
        check_device(args.device)
    compare = [Curve.from_json(p) for p in args.compare]  # fail early on a bad file

    if args.positional:
        return _run_positional(args, out)
    queries, train_queries, desc = _load_queries(args)
    queries = list(queries)[: args.max_queries] if args.max_queries else list(queries)
    if not queries:
        raise ValueError(f"{desc}: no queries to evaluate")
    model = _load_model(args, train_queries)
    name = args.name or (args.model if args.model in BASELINE_NAMES else Path(args.model).name or args.model)
    print(f"evaluating {name} on {len(queries)} queries of the {desc}; K = {ks}, IoU > {args.iou:g}")

    curve = evaluate(model, queries, ks=ks, iou_threshold=args.iou, seed=args.seed, batch_size=args.batch_size,
                     progress=not args.no_progress, count=args.count, name=name)
    curve.meta.update({"dataset": desc, "model": args.model})

    out.mkdir(parents=True, exist_ok=True)
    curve.to_json(out / "curve.json")
    _write_per_category(curve, out / "per_category.csv")
    written = [out / "curve.json", out / "per_category.csv",
               save_figure([curve, *compare], out / "curves.png", paper=args.paper, title=args.title)]
    if args.plot:
        written.append(save_figure([curve, *compare], args.plot, paper=args.paper, title=args.title))
    print(curve.table())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _check_saveable(args) -> None:
    if not args.calibrate:
        raise ValueError("--save-threshold saves the calibrated threshold: add --calibrate")
    if not (Path(args.model) / "config.json").is_file():
        raise ValueError(f"--save-threshold writes into a local model folder with a config.json; "
                         f"{args.model!r} is not one")


def _run_positional(args, out) -> int:
    """``--positional``: the positional-prompt benchmark on the synthetic world."""
    import inspect

    from locinsert.editing.positional import (calibrate_threshold, format_positional, positional_benchmark,
                                                 positional_figure)
    from locinsert.editing.inserter import ObjectInserter
    from locinsert.io import write_json_atomic

    if args.dataset != "synthetic":
        raise ValueError("--positional needs the synthetic world (--dataset synthetic): its oracle says which "
                         "boxes are plausible")
    if args.model in BASELINE_NAMES:
        raise ValueError(f"--positional evaluates a trained LocationModel, not the {args.model!r} baseline")
    default_n = inspect.signature(ObjectInserter).parameters["num_candidates"].default
    n = default_n if args.num_candidates is None else args.num_candidates
    if n < 1:
        raise ValueError(f"-n must be at least 1, got {n}")
    if args.save_threshold:
        _check_saveable(args)
    queries, _, desc = _load_queries(args)
    queries = list(queries)[: args.max_queries] if args.max_queries else list(queries)
    model = _load_model(args, None)
    if getattr(model.config, "num_bins", None) is None or not hasattr(model, "region_mass"):
        raise ValueError(f"--positional needs a LocationModel checkpoint, got {args.model!r}")
    print(f"positional prompts: {len(queries)} queries of the {desc} x 8 phrases, K = {n}")
    result = positional_benchmark(model, queries, num_candidates=n, threshold=args.fit_threshold, seed=args.seed,
                                  progress=not args.no_progress, refine=args.refine)
    if args.calibrate:
        result["calibration"] = calibrate_threshold([r["mass"] for r in result["requests"]],
                                                    [r["fits"] for r in result["requests"]])
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "positional.json", {"dataset": desc, "model": args.model, **result})
    positional_figure(queries, result, out / "positional.png")
    print(format_positional(result["summary"]))
    if args.calibrate:
        c = result["calibration"]
        print(f"calibrated threshold on these requests: {c['threshold']:.4g} (keeps {c['kept']:.3f} of those "
              f"that fit, flags {c['flagged']:.3f} of the hopeless; balanced accuracy {c['balanced_accuracy']:.3f})")
        if args.save_threshold:
            from locinsert.fit import save_fit_threshold

            print(f"wrote fit_threshold = {save_fit_threshold(args.model, c['threshold'])} into "
                  f"{Path(args.model) / 'config.json'}")
    print(f"wrote {out / 'positional.json'}, {out / 'positional.png'}")
    return 0
