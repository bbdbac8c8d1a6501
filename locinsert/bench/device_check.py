"""The device check: every GPU figure and CUDA correctness check of locinsert in one run of a few minutes.

    python3 -m locinsert.bench.device_check --out device-check            # on a GPU (scripts/device_check.sh)
    python3 -m locinsert.bench.device_check --out dry --device cpu --dry-run   # tiny sizes, seconds

Parts, in this order (each is skipped, and says so, when the time budget cannot fit it):

1. ``environment``: device, versions, measured GEMM rates (fp32 / bf16 / fp16) and copy bandwidth;
2. ``tests``: the CUDA correctness tests (``pytest -m cuda tests/test_cuda.py``);
3. ``sampling``: ``bench sampling`` at the ``base`` shapes in bf16 (four approaches at N = 100, the
   floor) and the sweep over N and images per call, eager and with CUDA graphs;
4. ``training``: ``bench training`` at the ``base`` shapes, bf16 autocast, frozen encoders, the largest
   batch that fits, with and without the feature cache, the MFU, and the projected wall time of one
   PIPE epoch and of the ``training/configs`` schedule on 1 and 8 GPUs;
5. ``evaluation``: ``bench evaluation`` with the matcher on the device;
6. ``sampling_compiled``: the sweep's small sizes with Inductor + CUDA graphs (``reduce-overhead``),
   whose compilation costs tens of seconds per shape: in a child process stopped at the budget's end.

Nothing is downloaded: every model has random weights at the real shapes. ``summary.json`` and
``summary.md`` in ``--out`` are rewritten after every part, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
import traceback

from . import write_json

REQUIRED = ("torch", "transformers", "timm", "open_clip", "diffusers", "trl", "datasets", "accelerate", "safetensors")

FULL = dict(preset="base", dtype="bf16", compare_n=100, sweep=(1, 10, 100, 1000), images=(1, 8),
            compile=("none", "cudagraphs"), compiled_sweep=(1, 100), compiled_modes=("reduce-overhead",),
            eval_queries=2000, eval_loop=100, train_batch="auto", train_steps=4, train_workers=8, repeats=5)
DRY = dict(preset="tiny", dtype="bf16", compare_n=8, sweep=(1, 10), images=(1, 2), compile=("none",),
           compiled_sweep=(1,), compiled_modes=("none",), eval_queries=50, eval_loop=10, train_batch=4, train_steps=1,
           train_workers=0, repeats=1)
# Rough seconds each part needs on an H200 (compile and warm-up included); a part starts only if
# this much of the budget is left.
ESTIMATE = dict(environment=15, tests=90, sampling=90, training=150, evaluation=20, sampling_compiled=120)
TESTS_TIMEOUT = 150.0  # the tests may not eat the budget of the figures


def _versions() -> dict:
    out = {}
    for name in REQUIRED:
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError as e:
            out[name] = f"missing ({e.name})"
    return out


def check_dependencies() -> None:
    missing = [f"{k}: {v}" for k, v in _versions().items() if str(v).startswith("missing")]
    if missing:
        raise ValueError(f"packages missing ({'; '.join(missing)}); install them or carry wheels "
                         "(docs/guides/gpu-check.md)")


def part_environment(device, cfg) -> dict:
    import torch

    from .device import DTYPES, copy_bandwidth, datasheet_peak, describe, gemm_rate

    info = describe(device)
    rates = {}
    for name, dtype in DTYPES.items():
        if name == "fp16" and device.type != "cuda":
            continue
        size = None if device.type == "cuda" else 512
        rates[name] = gemm_rate(device, dtype, size=size)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        rates["tf32"] = gemm_rate(device, torch.float32)
        torch.backends.cuda.matmul.allow_tf32 = False
    return dict(info=info, versions=_versions(), gemm_flops_per_s=rates, copy_bytes_per_s=copy_bandwidth(device),
                datasheet_peak_flops_per_s={k: datasheet_peak(device, k) for k in rates if k in DTYPES})


def part_tests(device, cfg, timeout: float) -> dict:
    """Run the CUDA-marked tests in a child process; their outcome and the tail of their output."""
    # -v: one line per test, so a run stopped at the timeout still shows which tests passed;
    # timeout (pytest-timeout, ignored without it): one hung test must not take the others' time.
    cmd = [sys.executable, "-m", "pytest", "-v", "-m", "cuda", "-p", "no:cacheprovider", "-o", "timeout=100",
           "tests/test_cuda.py"]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc, text = 124, f"{out}\ntimed out after {timeout:.0f} s"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return dict(command=" ".join(cmd[2:]), returncode=rc, summary=lines[-1] if lines else "",
                output_tail="\n".join(lines[-40:]), seconds=time.perf_counter() - t)


def part_sampling(device, cfg, modes=None, sweep=None, compare=True) -> dict:
    from .sampling import run_sampling_bench

    return run_sampling_bench(cfg["preset"], cfg["compare_n"], cfg["repeats"], skip_generate=not compare,
                              device=str(device), dtype=cfg["dtype"], sweep=sweep or cfg["sweep"],
                              images_per_call=cfg["images"] if compare else (1,),
                              compile_modes=modes or cfg["compile"], skip_compare=not compare, progress=True)


def part_sampling_compiled(device, cfg, timeout: float) -> dict:
    """The sweep with Inductor-compiled decode steps, in a child process that the budget can stop."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "compiled.json")
        cmd = [sys.executable, "-m", "locinsert.cli.main", "bench", "sampling", "--preset", cfg["preset"],
               "--device", str(device), "--dtype", cfg["dtype"], "--skip-compare", "--repeats", str(cfg["repeats"]),
               "--sweep", ",".join(map(str, cfg["compiled_sweep"])), "--compile", ",".join(cfg["compiled_modes"]),
               "--json", path]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"stopped after {timeout:.0f} s (Inductor compilation); no figures") from None
        if proc.returncode != 0 or not os.path.isfile(path):
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise RuntimeError(f"exit {proc.returncode}: {' / '.join(tail)}")
        with open(path) as f:
            return json.load(f)


def part_evaluation(device, cfg) -> dict:
    from .evaluation import bench

    return bench(cfg["eval_queries"], 100, loop_queries=cfg["eval_loop"], device=str(device))


def part_training(device, cfg) -> dict:
    from .training import projection, run_training_bench

    r = run_training_bench(cfg["preset"], cfg["train_batch"], cfg["train_steps"], 1, device=str(device),
                           dtype=cfg["dtype"], workers=cfg["train_workers"], model_step=True, progress=True,
                           max_batch=4096)
    projection(r, (1, 8), "training/configs")
    return r


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _targets(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows for the design targets this run can speak to."""
    rows = []
    s = results.get("sampling", {})
    compiled = results.get("sampling_compiled", {}).get("sweep", [])
    for row in s.get("sweep", []) + compiled:
        if row.get("images") == 1 and row.get("num_samples") == 100:
            ok = row["seconds"] <= 0.010
            rows.append(("100 samples of one image <= 10 ms", f"{row['seconds'] * 1e3:.2f} ms ({row['compile']})",
                         "met" if ok else "not met"))
    if "ours_over_floor" in s:
        rows.append(("sampling within 1.5x of the floor (N = 100)", f"{s['ours_over_floor']:.1f}x",
                     "met" if s["ours_over_floor"] <= 1.5 else "not met"))
    e = results.get("evaluation", {})
    if "queries_per_s_curve" in e:
        rows.append(("evaluation >= 1,000 queries/s (K = 100)", f"{e['queries_per_s_curve']:,.0f} queries/s",
                     "met" if e["queries_per_s_curve"] >= 1000 else "not met"))
    t = results.get("training", {})
    for key, label in (("trainer_mfu_with_cache", "Trainer loop"), ("model_step_mfu_with_cache", "model step")):
        m = t.get(key, {})
        if "mfu_vs_datasheet_peak" in m:
            rows.append((f"training MFU >= 30 % of the bf16 peak ({label}, cached features)",
                         f"{m['mfu_vs_datasheet_peak']:.1%}",
                         "met" if m["mfu_vs_datasheet_peak"] >= 0.30 else "not met"))
    p = t.get("projection")
    for source, seconds in (p or {}).get("pipe_epoch_s", {}).items():
        sec = seconds[1]
        rows.append((f"one PIPE epoch <= 10 min on one GPU ({source}, cached features)", f"{sec / 60:.1f} min",
                     "met" if sec <= 600 else "not met"))
    return rows


def summary_markdown(results: dict) -> str:
    from .evaluation import format_results as fmt_eval
    from .sampling import format_results as fmt_sampling, format_sweep
    from .training import format_results as fmt_training

    env = results.get("environment", {})
    info = env.get("info", {})
    lines = ["# locinsert device check", "",
             f"Run {results['started']} on {info.get('gpu', info.get('cpu', '?'))}"
             f"{' (dry run, tiny sizes)' if results['dry_run'] else ''}; "
             f"{results.get('elapsed_s', 0):.0f} s of a {results['budget_s']:.0f} s budget.", ""]
    if env:
        lines += ["## Environment", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in {**info, **env.get("versions", {})}.items()]
        rates = env.get("gemm_flops_per_s", {})
        lines += ["", "| dtype | measured GEMM TFLOP/s | datasheet TFLOP/s |", "|---|---|---|"]
        for k, v in rates.items():
            sheet = env.get("datasheet_peak_flops_per_s", {}).get(k)
            lines.append(f"| {k} | {v / 1e12:,.2f} | " + (f"{sheet / 1e12:,.0f} |" if sheet else "- |"))
        lines.append(f"\nmeasured copy bandwidth: {env.get('copy_bytes_per_s', 0) / 1e9:,.0f} GB/s (read + write)")
    targets = _targets(results)
    if targets:
        lines += ["", "## Design targets", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in targets]
    if "tests" in results:
        t = results["tests"]
        lines += ["", "## CUDA correctness tests", "", f"`{t['command']}`: exit {t['returncode']}, {t['summary']}"]
    if "sampling" in results:
        lines += ["", "## Sampling", "", "```", fmt_sampling(results["sampling"]), "```"]
    if "sampling_compiled" in results:
        lines += ["", "## Sampling, Inductor + CUDA graphs", "", format_sweep(results["sampling_compiled"]["sweep"])]
    if "evaluation" in results:
        lines += ["", "## Evaluation", "", "```", fmt_eval(results["evaluation"]), "```"]
    if "training" in results:
        lines += ["", "## Training", "", fmt_training(results["training"])]
    notes = results.get("skipped", []) + results.get("errors", [])
    if notes:
        lines += ["", "## Skipped or failed parts", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def run(out: str, device: str = "auto", dry_run: bool = False, budget_s: float = 420, parts=None,
        tests: bool = True) -> dict:
    import torch

    from .device import resolve_device

    check_dependencies()
    dev = resolve_device(device)
    if dev.type != "cuda" and not dry_run:
        raise ValueError("the device check measures a GPU; on a CPU pass --dry-run (tiny sizes) or use "
                         "`locinsert bench` directly")
    cfg = DRY if dry_run else FULL
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    results: dict = dict(started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), dry_run=dry_run,
                         device=str(dev), budget_s=budget_s, config={k: list(v) if isinstance(v, tuple) else v
                                                                     for k, v in cfg.items()},
                         skipped=[], errors=[], seconds={})

    def save():
        results["elapsed_s"] = time.perf_counter() - start
        write_json(results, os.path.join(out, "summary.json"))
        tmp = os.path.join(out, "summary.md.tmp")
        with open(tmp, "w") as f:
            f.write(summary_markdown(results))
        os.replace(tmp, os.path.join(out, "summary.md"))

    jobs = [("environment", lambda: part_environment(dev, cfg)),
            ("tests", lambda: part_tests(dev, cfg,
                                         timeout=min(TESTS_TIMEOUT, budget_s - (time.perf_counter() - start)))),
            ("sampling", lambda: part_sampling(dev, cfg)),
            ("training", lambda: part_training(dev, cfg)),
            ("evaluation", lambda: part_evaluation(dev, cfg)),
            ("sampling_compiled", lambda: part_sampling_compiled(
                dev, cfg, timeout=budget_s - (time.perf_counter() - start) if not dry_run else 300))]
    wanted = set(parts) if parts else {name for name, _ in jobs}
    if not tests:
        wanted.discard("tests")
    for name, job in jobs:
        if name not in wanted:
            continue
        left = budget_s - (time.perf_counter() - start)
        if not dry_run and left < ESTIMATE[name]:
            results["skipped"].append(f"{name}: {left:.0f} s of the budget left, it needs about {ESTIMATE[name]} s")
            save()
            continue
        print(f"== {name} ({left:.0f} s of the budget left)", flush=True)
        t = time.perf_counter()
        try:
            results[name] = job()
        except Exception as e:  # one failed part must not lose the others' figures
            if isinstance(e, torch.OutOfMemoryError) or not isinstance(e, (ValueError, RuntimeError)):
                traceback.print_exc()
            results["errors"].append(f"{name}: {type(e).__name__}: {e}")
        results["seconds"][name] = time.perf_counter() - t
        _free(dev)
        save()
    print(summary_markdown(results), flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m locinsert.bench.device_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for summary.json and summary.md")
    p.add_argument("--device", default="auto", help="cuda, cuda:N, auto, or cpu with --dry-run (default: auto)")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, any device: checks the script itself")
    p.add_argument("--budget", type=float, default=420,
                   help="seconds for the whole check; a part that would not fit is skipped (default: 420)")
    p.add_argument("--parts", default=None,
                   help="comma-separated subset: environment,tests,sampling,training,evaluation,sampling_compiled")
    p.add_argument("--no-tests", action="store_true", help="skip the CUDA correctness tests")
    args = p.parse_args(argv)
    parts = [x for x in args.parts.split(",") if x] if args.parts else None
    known = set(ESTIMATE)
    if parts and not set(parts) <= known:
        raise ValueError(f"--parts: unknown part(s) {', '.join(sorted(set(parts) - known))}; "
                         f"choose from {', '.join(ESTIMATE)}")
    results = run(args.out, args.device, args.dry_run, args.budget, parts, tests=not args.no_tests)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as e:
        print(f"device_check: error: {e}", file=sys.stderr)
        sys.exit(2)
