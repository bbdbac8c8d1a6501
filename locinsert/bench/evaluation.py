"""Evaluation throughput: the batched TPR/FPR matcher against a per-query Python loop, in one run.

The problem is shaped like OPA's test set: ``num_queries`` queries (OPA test: ~1,800 groups), ``k``
sampled boxes each, and ``labels_per_query`` labelled boxes on average (1 to 18, about a third of
them positive, as in OPA) in 640x480 images. A third of the samples are jittered copies of labels so
that matches, ties and duplicates happen, as they do with a trained model.

Measured:
- ``batched_curve_s``: ``match`` once + counts for every K in ``ks`` (what ``evaluate`` does);
- ``batched_single_s``: ``tpr_fpr`` for K = k alone;
- ``loop_single_s``: ``tpr_fpr_loop`` (one query, one prediction at a time) for K = k;
- ``loop_curve_s``: the loop recomputed for every K, as a naive curve would.
Loop times are measured on ``loop_queries`` queries and scaled to ``num_queries`` (the loop's cost is
linear in queries); ``loop_queries=0`` times the loop on all of them. Both sides are checked to give
identical counts before any time is reported.

With ``device="cuda"`` the batched matcher's IoU and matching run on the GPU (timed with the device
synchronised; the boxes start on the CPU, as sampled boxes do after ``sample``); its counts are
compared with the CPU's and the result is reported as ``device_counts_equal_cpu``.
"""

from __future__ import annotations

import argparse
import time

import torch

from ..evaluation.evaluate import DEFAULT_KS
from ..evaluation.tpr_fpr import match, tpr_fpr, tpr_fpr_loop
from ..validation import check_positive_int
from . import write_json
from .device import describe, machine_line, resolve_device, time_once


def make_problem(num_queries: int = 2000, k: int = 100, labels_per_query: int = 6, seed: int = 0,
                 width: int = 640, height: int = 480):
    """(pred_boxes, positives, negatives): lists of per-query xyxy tensors, deterministic from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)

    def boxes(n):
        xy = torch.rand(n, 2, generator=g) * 0.8
        wh = 0.03 + torch.rand(n, 2, generator=g) * 0.3
        return torch.cat([xy, (xy + wh).clamp(max=1.0)], 1) * scale

    preds, pos, neg = [], [], []
    hi = max(1, min(18, 2 * labels_per_query - 1))
    for _ in range(num_queries):
        n_lab = int(torch.randint(1, hi + 1, (1,), generator=g))
        labels = boxes(n_lab)
        n_pos = int((torch.rand(n_lab, generator=g) < 1 / 3).sum())
        pos.append(labels[:n_pos])
        neg.append(labels[n_pos:])
        p = boxes(k)
        copy = torch.rand(k, generator=g) < 1 / 3
        src = labels[torch.randint(0, n_lab, (k,), generator=g)]
        jitter = (torch.rand(k, 4, generator=g) - 0.5) * 0.1 * (src[:, 2:] - src[:, :2]).repeat(1, 2)
        p[copy] = (src + jitter)[copy]
        preds.append(p)
    return preds, pos, neg


def _best_of(fn, repeats: int, device=None) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        box = []
        best = min(best, time_once(lambda: box.append(fn()), device or torch.device("cpu")))
        out = box[0]
    return best, out


def bench(num_queries: int = 2000, k: int = 100, labels_per_query: int = 6, seed: int = 0,
          loop_queries: int = 200, ks=DEFAULT_KS, repeats: int = 3, device: str = "cpu") -> dict:
    """Time the batched matcher against the per-query loop on one synthetic OPA-sized problem."""
    for name, value in (("num_queries", num_queries), ("k", k), ("labels_per_query", labels_per_query),
                        ("repeats", repeats)):
        check_positive_int(value, name)
    dev = resolve_device(device)
    ks = [kk for kk in ks if kk <= k] or [k]
    preds, pos, neg = make_problem(num_queries, k, labels_per_query, seed)
    n_loop = num_queries if loop_queries <= 0 else min(loop_queries, num_queries)
    scale = num_queries / n_loop

    if dev.type != "cpu":
        tpr_fpr(preds[:8], pos[:8], neg[:8], device=dev)  # warm: context, kernels, allocator
    t_curve, curve = _best_of(lambda: [m.counts(kk) for m in [match(preds, pos, neg, device=dev)] for kk in ks],
                              repeats, dev)
    t_single, single = _best_of(lambda: tpr_fpr(preds, pos, neg, device=dev), repeats, dev)

    sub = (preds[:n_loop], pos[:n_loop], neg[:n_loop])
    t0 = time.perf_counter()
    loop_single = tpr_fpr_loop(*sub)
    t_loop_single = time.perf_counter() - t0
    t0 = time.perf_counter()
    for kk in ks:
        tpr_fpr_loop([p[:kk] for p in sub[0]], sub[1], sub[2])
    t_loop_curve = time.perf_counter() - t0

    check = tpr_fpr(*sub).counts()
    if check != loop_single.counts():
        raise RuntimeError(f"batched and loop counts differ: {check} vs {loop_single.counts()}")
    extra = {}
    if dev.type != "cpu":
        extra["device_counts_equal_cpu"] = single.counts() == tpr_fpr(preds, pos, neg).counts()

    return {
        "num_queries": num_queries, "k": k, "ks": ks, "labels_per_query": labels_per_query,
        "num_labels": sum(len(p) + len(n) for p, n in zip(pos, neg)), "num_predictions": num_queries * k,
        "loop_queries_measured": n_loop,
        "batched_curve_s": t_curve, "batched_single_s": t_single,
        "loop_single_s": t_loop_single * scale, "loop_curve_s": t_loop_curve * scale,
        "speedup_single": t_loop_single * scale / t_single, "speedup_curve": t_loop_curve * scale / t_curve,
        "tpr_at_k": single.tpr, "fpr_at_k": single.fpr, "tpr_at_min_k": curve[0].tpr,
        "queries_per_s_curve": num_queries / t_curve,
        "threads": torch.get_num_threads(), "device": str(dev), "device_info": describe(dev), **extra,
    }


def format_results(r: dict) -> str:
    scaled = "" if r["loop_queries_measured"] == r["num_queries"] else \
        f" (loop timed on {r['loop_queries_measured']} queries, scaled)"
    where = machine_line(r["device_info"]) if "device_info" in r else f"{r['threads']} threads"
    lines = [
        f"TPR/FPR evaluation: {r['num_queries']} queries x {r['k']} samples, {r['num_labels']} labelled boxes, "
        f"batched on {r.get('device', 'cpu')}, {where}{scaled}",
        f"  one K      batched {r['batched_single_s']:8.3f} s   loop {r['loop_single_s']:8.2f} s   "
        f"x{r['speedup_single']:.0f}",
        f"  {len(r['ks'])} K curve  batched {r['batched_curve_s']:8.3f} s   loop {r['loop_curve_s']:8.2f} s   "
        f"x{r['speedup_curve']:.0f}",
        f"  {r['queries_per_s_curve']:,.0f} queries/s for the whole curve (target >= 1,000 at K = 100)",
    ]
    if "device_counts_equal_cpu" in r:
        lines.append("  counts on the device equal the CPU's" if r["device_counts_equal_cpu"]
                     else "  WARNING: counts on the device differ from the CPU's")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``locinsert bench evaluation [options]``."""
    from ..cli import options

    p = options.Parser(prog="locinsert bench evaluation", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-queries", type=options.positive_int, default=2000,
                   help="queries (default: 2000, about OPA test)")
    p.add_argument("-k", type=options.positive_int, default=100, help="samples per query (default: 100)")
    p.add_argument("--labels-per-query", type=options.positive_int, default=6,
                   help="mean labelled boxes per query (default: 6)")
    p.add_argument("--loop-queries", type=options.non_negative_int, default=200,
                   help="queries the slow loop is timed on, scaled up (0: all; default: 200)")
    p.add_argument("--repeats", type=options.positive_int, default=3,
                   help="timed runs of the batched matcher; best kept")
    p.add_argument("--seed", type=options.seed, default=0, help="seed of the generated queries (default: 0)")
    p.add_argument("--device", default="cpu",
                   help="where the batched matcher runs: cpu, cuda, cuda:N, auto (default: cpu)")
    p.add_argument("--threads", type=options.positive_int, default=None,
                   help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    if argv and argv[0] == "--":  # `locinsert bench evaluation -- --num-queries 100` forwards the separator
        argv = argv[1:]
    args = p.parse_args(argv)
    from ..cli.common import check_output_file

    if args.json:  # outputs and options are checked before the benchmark runs
        check_output_file(args.json, "--json")
    if args.threads:
        torch.set_num_threads(args.threads)
    r = bench(args.num_queries, args.k, args.labels_per_query, args.seed, args.loop_queries,
              repeats=args.repeats, device=args.device)
    print(format_results(r))
    if args.json:
        write_json(r, args.json)
    return 0
