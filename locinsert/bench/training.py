"""Training throughput: samples/s of the supervised stage with and without cached encoder features,
and DPO pairs/s with the encoders run once per pair or once per box.

    locinsert bench training                       # "base" shapes, random weights, frozen ViT (as the preset)
    locinsert bench training --preset tiny --steps 5 --batch-size 8
    locinsert bench training --device cuda --dtype bf16 --batch-size auto --workers 8 --projection

Two measurements, each with and without the feature cache:

- **Trainer loop**: the real ``BoxSFTTrainer`` (data loading, forward, backward, AdamW step) on
  synthetic-world queries, with ``--dtype bf16``/``fp16`` as the Trainer's mixed precision (autocast).
  "with cache" first fills a ``FeatureCache`` of the frozen image encoder's features (a one-time
  cost, reported separately), then trains from it, skipping the ViT. Only the timed steps count
  (the first ``--warmup`` steps are excluded).
- **Model step** (``--model-step``, on by default on a GPU): forward + backward + AdamW step on one
  batch already on the device, under the same autocast, synchronised. No data loading, so this is
  what the GPU itself sustains; with the FLOPs of a step (counted by torch's FlopCounterMode) it gives
  the **MFU** against the GEMM rate measured at that dtype and against the datasheet peak.
  ``--batch-size auto`` doubles the batch until the GPU runs out of memory and keeps the largest
  that fits.

The class encoder is frozen in every preset and the model memoises its features, so it costs nothing
in either run. ``--projection`` turns samples/s into the wall time of one PIPE epoch and of the
schedule in ``training/configs`` on 1 and N GPUs (N x one GPU's rate: linear scaling, an assumption).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

from . import write_json
from .device import datasheet_peak, describe, gemm_rate, machine_line, resolve_device, resolve_dtype, synchronize

# Dataset sizes behind the projection (the datasets' cards and the paper).
PIPE_TRAIN_ROWS = 888_230        # PIPE train split (HF dataset card), one positive box per row
OPA_TRAIN_POSITIVES = 21_376     # OPA train positives (OPA README, re-counted from the FOPA label files)
# (background, category) groups with a positive are at most the 5,905 (fg, bg) pairs with a positive,
# so DPO's pairs per epoch are at most pairs_per_query x 5,905: an upper bound, not a count.
OPA_TRAIN_POSITIVE_GROUPS_MAX = 5_905


class _StepTimer:
    def __init__(self, warmup: int, device):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    synchronize(device)
                    timer.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                synchronize(device)
                timer.end = time.perf_counter()

        self.callback = Callback()
        self.start = self.end = None


def _random_batch(model, batch_size: int, cached: bool, device) -> dict:
    """One supervised batch on ``device``: random pixels (or their image features) and box tokens."""
    import torch

    g = torch.Generator().manual_seed(batch_size)
    size = model.config.image_size
    pixels = torch.rand(batch_size, 3, size, size, generator=g).to(device)
    batch = {"classes": ["dog", "cup", "chair", "bird"] * (batch_size // 4) + ["dog"] * (batch_size % 4),
             "box_tokens": torch.randint(0, model.config.num_bins, (batch_size, 4), generator=g).to(device)}
    if cached:
        with torch.no_grad():
            batch["image_features"] = model.encode_image(pixels)
    else:
        batch["pixel_values"] = pixels
    return batch


def _autocast(device, dtype):
    import torch

    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def step_flops(model, batch_size: int, cached: bool, device, dtype) -> dict:
    """FLOPs per example of a training step (forward + backward) and of a forward pass alone."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    batch = _random_batch(model, batch_size, cached, device)
    with FlopCounterMode(display=False) as counter, _autocast(device, dtype):
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fwd, torch.no_grad(), _autocast(device, dtype):
        model(**batch)
    return {"train": counter.get_total_flops() / batch_size, "forward": fwd.get_total_flops() / batch_size}


def model_step_rate(model, batch_size: int, cached: bool, device, dtype, steps: int = 5, warmup: int = 2) -> float:
    """Samples/s of forward + backward + AdamW step on one on-device batch under autocast (synchronised)."""
    import torch

    batch = _random_batch(model, batch_size, cached, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    model.train()

    def step():
        with _autocast(device, dtype):
            loss = model(**batch).loss
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    try:
        for _ in range(warmup):
            step()
        synchronize(device)
        t = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        return steps * batch_size / (time.perf_counter() - t)
    finally:
        del opt, batch
        model.zero_grad(set_to_none=True)


def largest_batch(model, cached: bool, device, dtype, start: int, limit: int, say=print) -> tuple[int, list]:
    """Double the batch from ``start`` until the GPU runs out of memory or ``limit``; (largest, [(bs, rate)])."""
    import torch

    tried, best, bs = [], None, start
    while bs <= limit:
        try:
            rate = model_step_rate(model, bs, cached, device, dtype, steps=3, warmup=1)
        except torch.OutOfMemoryError:
            say(f"  batch {bs}: out of memory", flush=True)
            break
        finally:
            torch.cuda.empty_cache()
        tried.append((bs, rate))
        say(f"  batch {bs}: {rate:,.0f} samples/s (model step)", flush=True)
        best, bs = bs, bs * 2
    if best is None:
        raise ValueError(f"batch {start} does not fit on {device}; give a smaller --batch-size")
    return best, tried


def run_training_bench(preset: str = "base", batch_size: int | str = 8, steps: int = 4, warmup: int = 1,
                       scenes: int | None = None, threads: int | None = None, progress: bool = False,
                       device: str = "auto", dtype: str = "fp32", workers: int = 0, model_step: bool | None = None,
                       max_batch: int = 4096, trainer_loop: bool = True, boxes_per_image: int = 1,
                       say=None) -> dict:
    """Measure samples/s without and with the image-feature cache; returns a dict of figures."""
    import torch

    from ..data.synthetic import splits
    from ..modeling import LocationModel, LocationModelConfig
    from ..training.config import load_stage_config
    from ..training.datasets import BoxDataset, CachedImageFeatures, collate
    from ..training.sft import BoxSFTTrainer

    say = say or (print if progress else (lambda *a, **k: None))
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    auto = batch_size == "auto"
    if auto and dev.type != "cuda":
        raise ValueError("--batch-size auto searches the largest batch that fits in GPU memory; give a number on a CPU")
    if steps < 1 or warmup < 0 or (not auto and int(batch_size) < 1) or workers < 0 or boxes_per_image < 1:
        raise ValueError("need steps >= 1, warmup >= 0, batch_size >= 1 (or auto), workers >= 0, "
                         "boxes_per_image >= 1")
    model_step = dev.type == "cuda" if model_step is None else model_step
    torch.manual_seed(0)
    cfg = LocationModelConfig.preset(preset, pretrained=False, freeze_image_encoder=True)
    model = LocationModel(cfg).to(dev)
    info = describe(dev)
    results: dict = {"preset": preset, "dtype": dtype, "device": str(dev), "device_info": info,
                     "timed_steps": steps, "warmup_steps": warmup, "workers": workers,
                     "threads": torch.get_num_threads(), "machine": machine_line(info),
                     "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}

    if auto:
        say("searching the largest batch that fits (model step, with and without cache) ...", flush=True)
        bs_cached, tried_cached = largest_batch(model, True, dev, torch_dtype, 64, max_batch, say)
        bs_plain, tried_plain = largest_batch(model, False, dev, torch_dtype, 64, max_batch, say)
        results["batch_search"] = {"with_cache": tried_cached, "without_cache": tried_plain}
        batch_size = min(bs_cached, bs_plain)  # one batch for both runs, so they compare
    batch_size = int(batch_size)
    results["batch_size"] = batch_size

    say("counting FLOPs of a step ...", flush=True)
    flops = {name: step_flops(model, 2, cached, dev, torch_dtype) for name, cached in
             (("with_cache", True), ("without_cache", False))}
    results["flops_per_sample"] = flops
    results["gemm_flops_per_s"] = gemm_rate(dev, torch_dtype)
    peak = datasheet_peak(dev, dtype)
    if peak:
        results["datasheet_peak_flops_per_s"] = peak

    def mfu(rate: float, cached: bool) -> dict:
        achieved = rate * flops["with_cache" if cached else "without_cache"]["train"]
        out = {"achieved_flops_per_s": achieved, "mfu_vs_measured_gemm": achieved / results["gemm_flops_per_s"]}
        if peak:
            out["mfu_vs_datasheet_peak"] = achieved / peak
        return out

    if model_step:
        for name, cached in (("with_cache", True), ("without_cache", False)):
            say(f"model step, {name.replace('_', ' ')}, batch {batch_size} ...", flush=True)
            rate = model_step_rate(model, batch_size, cached, dev, torch_dtype, steps=max(steps, 3), warmup=2)
            results[f"model_step_samples_per_s_{name}"] = rate
            results[f"model_step_mfu_{name}"] = mfu(rate, cached)

    if trainer_loop:
        needed = (warmup + steps) * batch_size
        # About 6 positives per synthetic scene; a smaller dataset repeats (the Trainer runs epochs).
        scenes = scenes or min(2000, max(8, math.ceil(needed / 5)))
        queries = splits.opa_like(scenes, seed=0, num_bins=cfg.num_bins)

        def measure(dataset, out_dir) -> float:
            timer = _StepTimer(warmup, dev)
            args = load_stage_config(
                "pretrain", None, output_dir=out_dir, max_steps=warmup + steps, per_device_train_batch_size=batch_size,
                save_strategy="no", logging_steps=10 ** 6, disable_tqdm=not progress, report_to="none",
                dataloader_num_workers=workers, dataloader_persistent_workers=workers > 0,
                bf16=torch_dtype == torch.bfloat16, fp16=torch_dtype == torch.float16, use_cpu=dev.type == "cpu")[2]
            BoxSFTTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                          callbacks=[timer.callback]).train()
            return steps * batch_size / (timer.end - timer.start)

        with tempfile.TemporaryDirectory() as tmp:
            from ..data.feature_cache import FeatureCache

            plain = BoxDataset(queries, cfg.num_bins, preprocess=model.preprocessor)
            if len(plain) < batch_size:
                raise ValueError(f"{len(plain)} examples are fewer than one batch of {batch_size}: raise --scenes")
            results["examples"] = len(plain)
            while True:
                say(f"Trainer loop without cache, batch {batch_size} ...", flush=True)
                try:
                    results["samples_per_s_without_cache"] = measure(plain, os.path.join(tmp, "a"))
                    break
                except torch.OutOfMemoryError:
                    # The Trainer holds a little more than the bare step; halve the largest batch once.
                    if not auto or batch_size < 2 or results.get("trainer_batch_halved"):
                        raise
                    torch.cuda.empty_cache()
                    batch_size, results["trainer_batch_halved"] = batch_size // 2, True
            results["trainer_batch_size"] = batch_size
            # Size-checked shards: a few timed steps cannot amortise hashing every shard in every worker.
            features = CachedImageFeatures(FeatureCache.for_model(model, os.path.join(tmp, "cache"), verify="size"),
                                           "bench/")
            say("filling the feature cache ...", flush=True)
            t0 = time.perf_counter()
            filled = features.fill(queries, progress=progress)
            results["cache_fill_s"] = time.perf_counter() - t0
            results["cache_images"] = filled["computed"]
            cached = BoxDataset(queries, cfg.num_bins, features=features)
            say(f"Trainer loop with cache, batch {batch_size} ...", flush=True)
            results["samples_per_s_with_cache"] = measure(cached, os.path.join(tmp, "b"))
        results["speedup"] = results["samples_per_s_with_cache"] / results["samples_per_s_without_cache"]
        results["trainer_mfu_with_cache"] = mfu(results["samples_per_s_with_cache"], True)
        results["trainer_mfu_without_cache"] = mfu(results["samples_per_s_without_cache"], False)
        results.update(_dpo_bench(model, queries, batch_size, steps, warmup))
    if boxes_per_image > 1:
        say(f"model step, {boxes_per_image} boxes per image vs 1 ...", flush=True)
        results.update(_grouped_bench(model, batch_size, boxes_per_image, steps, warmup))
    return results


def _dpo_bench(model, queries, batch_size: int, steps: int, warmup: int) -> dict:
    """DPO pairs/s: one step = policy forward + backward and reference forward on a (chosen, rejected)
    batch, with the encoders run once per pair (``pair_logps``, what ``BoxDPOTrainer`` does) or once per
    box (the prefix inputs repeated, as before)."""
    import copy

    import torch

    from ..training.datasets import PairDataset, collate, expand_pairs
    from ..training.dpo import pair_logps, prefix_inputs

    pairs = PairDataset(queries, expand_pairs(queries, 4), model.config.num_bins, preprocess=model.preprocessor)
    if len(pairs) < batch_size:
        raise ValueError(f"{len(pairs)} preference pairs are fewer than a batch of {batch_size}: raise --scenes")
    device = next(model.parameters()).device
    batches = [{k: v.to(device) if torch.is_tensor(v) else v
                for k, v in collate([pairs[(i * batch_size + j) % len(pairs)] for j in range(batch_size)]).items()}
               for i in range(warmup + steps)]
    ref = copy.deepcopy(model).eval()

    def per_box(m, b):
        tokens = torch.cat([b["chosen_tokens"], b["rejected_tokens"]])
        logps = m(**prefix_inputs(b, repeat=2), box_tokens=tokens).box_logps
        return logps[: len(b["chosen_tokens"])], logps[len(b["chosen_tokens"]):], None

    def dpo_loss(fn):
        def loss(m, i):
            c, r, _ = fn(m, batches[i])
            with torch.no_grad():
                rc, rr, _ = fn(ref, batches[i])
            return _dpo_loss(c, r, rc, rr)
        return loss

    out = {name: _steps_rate(model, dpo_loss(fn), steps, warmup, batch_size)
           for name, fn in (("dpo_pairs_per_s_encode_once", pair_logps), ("dpo_pairs_per_s_encode_per_box", per_box))}
    out["dpo_speedup"] = out["dpo_pairs_per_s_encode_once"] / out["dpo_pairs_per_s_encode_per_box"]
    return out


def _dpo_loss(c, r, rc, rr):
    """The sigmoid DPO loss (beta 0.1) the benchmarked steps optimise."""
    import torch.nn.functional as F

    return -F.logsigmoid(0.1 * ((c - rc) - (r - rr))).mean()


def _steps_rate(model, loss_fn, steps: int, warmup: int, items_per_step: int) -> float:
    """Items/s of ``steps`` timed optimizer steps (after ``warmup`` untimed ones) on a copy of ``model``;
    ``loss_fn(model_copy, step_index)`` gives each step's loss."""
    import copy

    import torch

    m = copy.deepcopy(model).train()
    device = next(m.parameters()).device
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5)
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            start = time.perf_counter()
        loss = loss_fn(m, i)
        opt.zero_grad()
        loss.backward()
        opt.step()
    synchronize(device)
    return steps * items_per_step / (time.perf_counter() - start)


def _grouped_bench(model, batch_size: int, k: int, steps: int, warmup: int) -> dict:
    """Boxes/s of a supervised model step (forward + backward + AdamW, cached image features) with a
    batch of ``batch_size`` boxes from as many images, or k boxes from each of ``batch_size / k``
    images (``boxes_per_image``: the image tokens run through the decoder once per image); and DPO
    pairs/s (policy + reference) with one pair or k pairs per image (``pairs_per_image``)."""
    import copy

    import torch

    device = next(model.parameters()).device
    images = max(1, batch_size // k)
    boxes = images * k
    full = _random_batch(model, boxes, True, device)
    layouts = {1: full, k: {**full, "image_features": full["image_features"][:images]}}
    ref = copy.deepcopy(model).eval()

    def dpo(batch):
        prefix = {"image_features": batch["image_features"], "classes": batch["classes"]}
        tokens = torch.cat([batch["box_tokens"], batch["box_tokens"].flip(0)])

        def loss(m, i):
            c, r = m(**prefix, box_tokens=tokens).box_logps.chunk(2)
            with torch.no_grad():
                rc, rr = ref(**prefix, box_tokens=tokens).box_logps.chunk(2)
            return _dpo_loss(c, r, rc, rr)
        return loss

    out = {"grouped_k": k, "grouped_boxes_per_step": boxes}
    for g, batch in layouts.items():
        out[f"sft_boxes_per_s_{g}_per_image"] = _steps_rate(model, lambda m, i, b=batch: m(**b).loss, steps, warmup,
                                                            boxes)
        out[f"dpo_pairs_per_s_{g}_per_image"] = _steps_rate(model, dpo(batch), steps, warmup, boxes)
    out["sft_grouped_speedup"] = out[f"sft_boxes_per_s_{k}_per_image"] / out["sft_boxes_per_s_1_per_image"]
    out["dpo_grouped_speedup"] = out[f"dpo_pairs_per_s_{k}_per_image"] / out["dpo_pairs_per_s_1_per_image"]
    return out


def _schedule(configs_dir: str | None) -> list[dict]:
    """The stages of ``training/configs`` (pretrain on PIPE, finetune and DPO on OPA): examples per epoch, epochs."""
    import yaml

    def read(name):
        path = os.path.join(configs_dir, name) if configs_dir else None
        if path and os.path.isfile(path):
            with open(path) as f:
                return yaml.safe_load(f) or {}, name
        return {}, None

    pre, pre_src = read("pretrain_pipe.yaml")
    fin, fin_src = read("finetune_opa.yaml")
    dpo, dpo_src = read("dpo_opa.yaml")
    flips = lambda c: 2 if c.get("hflip", False) else 1  # noqa: E731  hflip doubles an epoch's examples
    pairs = int(dpo.get("pairs_per_query") or 16) * OPA_TRAIN_POSITIVE_GROUPS_MAX
    flip_note = lambda c: ", x2 hflip" if flips(c) == 2 else ""  # noqa: E731
    return [
        {"stage": f"pretrain (PIPE{flip_note(pre)})", "examples_per_epoch": PIPE_TRAIN_ROWS * flips(pre),
         "epochs": float(pre.get("num_train_epochs", 3)), "kind": "sft", "config": pre_src},
        {"stage": f"finetune (OPA positives{flip_note(fin)})", "examples_per_epoch": OPA_TRAIN_POSITIVES * flips(fin),
         "epochs": float(fin.get("num_train_epochs", 10)), "kind": "sft", "config": fin_src},
        {"stage": f"DPO (OPA pairs, upper bound{flip_note(dpo)})", "examples_per_epoch": pairs * flips(dpo),
         "epochs": float(dpo.get("num_train_epochs", 3)), "kind": "dpo", "config": dpo_src,
         "reference": "precomputed" if dpo.get("precompute_ref_log_probs") else "model"},
    ]


def projection(r: dict, gpus: tuple[int, ...] = (1, 8), configs_dir: str | None = "training/configs") -> dict:
    """Wall-time projections from measured samples/s (see the module docstring); added to ``r``.

    One projection per rate measured with cached features: the Trainer loop (what a PIPE run with
    ``feature_cache`` does today, data loading included) and the bare model step (what the GPU
    sustains when data loading keeps up). A DPO pair costs two policy forward + backward passes and,
    with a reference model, two forward passes: its rate is estimated from FLOPs at the SFT step's
    efficiency.
    """
    sources = [(name, r[key]) for name, key in (("Trainer loop", "samples_per_s_with_cache"),
                                                ("model step", "model_step_samples_per_s_with_cache")) if r.get(key)]
    if not sources:
        raise ValueError("no with-cache throughput measured to project from")
    f = r["flops_per_sample"]["with_cache"]
    out = {"pipe_epoch_rows": PIPE_TRAIN_ROWS, "gpus": list(gpus), "scaling": "linear in GPUs (assumed, not measured)",
           "sources": {name: rate for name, rate in sources}, "pipe_epoch_s": {}, "stages": [], "schedule_s": {}}
    stages = _schedule(configs_dir)
    for st in stages:
        cost = 1.0
        if st["kind"] == "dpo":
            cost = (2 * f["train"] + (0 if st["reference"] == "precomputed" else 2 * f["forward"])) / f["train"]
        st.update(cost_in_sft_samples=cost, seconds={})
        out["stages"].append(st)
    for name, rate in sources:
        out["pipe_epoch_s"][name] = {g: PIPE_TRAIN_ROWS / (rate * g) for g in gpus}
        out["schedule_s"][name] = {g: 0.0 for g in gpus}
        for st in stages:
            examples = st["examples_per_epoch"] * st["epochs"]
            st["seconds"][name] = {g: examples * st["cost_in_sft_samples"] / (rate * g) for g in gpus}
            for g in gpus:
                out["schedule_s"][name][g] += st["seconds"][name][g]
    r["projection"] = out
    return out


def _hms(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def format_results(r: dict) -> str:
    lines = [f"training throughput, preset {r['preset']} (random weights, frozen image encoder), {r['dtype']}, "
             f"batch {r['batch_size']}, {r['timed_steps']} timed steps, {r['machine']}"]
    lines += ["| run | samples/s | MFU (measured GEMM) | MFU (datasheet) |", "|---|---|---|---|"]

    def row(label, rate_key, mfu_key):
        if rate_key not in r:
            return
        m = r.get(mfu_key, {})
        sheet = f"{m['mfu_vs_datasheet_peak']:.1%}" if "mfu_vs_datasheet_peak" in m else "-"
        gemm = f"{m['mfu_vs_measured_gemm']:.1%}" if m else "-"
        lines.append(f"| {label} | {r[rate_key]:,.1f} | {gemm} | {sheet} |")

    row("Trainer loop, encoders in the loop", "samples_per_s_without_cache", "trainer_mfu_without_cache")
    row("Trainer loop, cached image features", "samples_per_s_with_cache", "trainer_mfu_with_cache")
    row("model step only, encoders in the loop", "model_step_samples_per_s_without_cache",
        "model_step_mfu_without_cache")
    row("model step only, cached image features", "model_step_samples_per_s_with_cache", "model_step_mfu_with_cache")
    if "speedup" in r:
        lines.append(f"| speed-up from the cache (Trainer loop) | {r['speedup']:.2f}x | | |")
    f = r["flops_per_sample"]
    lines.append(f"FLOPs per example (forward + backward): {f['with_cache']['train'] / 1e9:.1f} G with cache, "
                 f"{f['without_cache']['train'] / 1e9:.1f} G without; measured {r['dtype']} GEMM "
                 f"{r['gemm_flops_per_s'] / 1e12:,.2f} TFLOP/s"
                 + (f", datasheet peak {r['datasheet_peak_flops_per_s'] / 1e12:,.0f}" if "datasheet_peak_flops_per_s"
                    in r else ""))
    if "cache_fill_s" in r:
        lines.append(f"one-time cache fill: {r['cache_images']} images in {r['cache_fill_s']:.1f} s")
    if "dpo_speedup" in r:
        lines += ["", "| DPO step (policy + reference) | pairs/s |", "|---|---|",
                  f"| encoders once per pair | {r['dpo_pairs_per_s_encode_once']:.1f} |",
                  f"| encoders once per box | {r['dpo_pairs_per_s_encode_per_box']:.1f} |",
                  f"| speed-up | {r['dpo_speedup']:.2f}x |"]
    if "grouped_k" in r:
        k = r["grouped_k"]
        lines += ["", f"| model step, {r['grouped_boxes_per_step']} boxes per step, cached features | 1 box per image "
                  f"| {k} boxes per image | speed-up |", "|---|---|---|---|",
                  f"| supervised (boxes/s) | {r['sft_boxes_per_s_1_per_image']:.1f} | "
                  f"{r[f'sft_boxes_per_s_{k}_per_image']:.1f} | {r['sft_grouped_speedup']:.2f}x |",
                  f"| DPO, policy + reference (pairs/s) | {r['dpo_pairs_per_s_1_per_image']:.1f} | "
                  f"{r[f'dpo_pairs_per_s_{k}_per_image']:.1f} | {r['dpo_grouped_speedup']:.2f}x |"]
    p = r.get("projection")
    if p:
        cols = [(name, g) for name in p["sources"] for g in p["gpus"]]
        lines += ["", "projected wall time at the measured samples/s per GPU with cached features ("
                  + "; ".join(f"{name}: {rate:,.1f}" for name, rate in p["sources"].items())
                  + f"); {p['scaling']}",
                  "| stage | examples per epoch | epochs | " + " | ".join(f"{g} GPU, {n}" for n, g in cols) + " |",
                  "|---|---|---|" + "---|" * len(cols),
                  f"| one PIPE epoch | {p['pipe_epoch_rows']:,} | 1 | "
                  + " | ".join(_hms(p["pipe_epoch_s"][n][g]) for n, g in cols) + " |"]
        for st in p["stages"]:
            lines.append(f"| {st['stage']} | {st['examples_per_epoch']:,} | {st['epochs']:g} | "
                         + " | ".join(_hms(st["seconds"][n][g]) for n, g in cols) + " |")
        lines.append("| whole schedule | | | " + " | ".join(_hms(p["schedule_s"][n][g]) for n, g in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from ..cli import options

    p = options.Parser(prog="locinsert bench training", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="base", help="model preset, random weights (default: base)")
    p.add_argument("--batch-size", default="8",
                   help="examples per step, or 'auto': the largest that fits in GPU memory (default: 8)")
    p.add_argument("--max-batch", type=options.positive_int, default=4096,
                   help="upper limit of the 'auto' search (default: 4096)")
    p.add_argument("--steps", type=options.positive_int, default=4, help="timed optimizer steps per run (default: 4)")
    p.add_argument("--warmup", type=options.non_negative_int, default=1, help="untimed first steps (default: 1)")
    p.add_argument("--scenes", type=options.positive_int, default=None,
                   help="synthetic scenes to draw examples from (default: enough for the timed steps, at most 2000)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto, a GPU if present)")
    p.add_argument("--dtype", default="float32", type=options.dtype_name, choices=options.DTYPE_NAMES,
                   help="mixed precision (autocast) of the steps: float32, float16 or bfloat16 (fp32, fp16, bf16 "
                        "also work); weights stay float32 (default: float32)")
    p.add_argument("--workers", type=options.non_negative_int, default=0,
                   help="DataLoader worker processes (default: 0)")
    p.add_argument("--model-step", dest="model_step", action="store_true", default=None,
                   help="also time the bare model step (default: on a GPU)")
    p.add_argument("--no-model-step", dest="model_step", action="store_false")
    p.add_argument("--no-trainer", action="store_true", help="skip the Trainer-loop runs (model step only)")
    p.add_argument("--projection", action="store_true",
                   help="project one PIPE epoch and the training/configs schedule on 1 and --gpus GPUs")
    p.add_argument("--gpus", type=options.positive_int, default=8,
                   help="GPU count of the multi-GPU projection (default: 8)")
    p.add_argument("--configs", default="training/configs",
                   help="folder of the stage configs (default: training/configs)")
    p.add_argument("--boxes-per-image", type=options.positive_int, default=4,
                   help="also time the model step with this many boxes (DPO: pairs) per image against one "
                        "(boxes_per_image / pairs_per_image; 1: skip; default: 4)")
    p.add_argument("--threads", type=options.positive_int, default=None,
                   help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    from ..cli.common import check_output_file

    if args.json:  # outputs and options are checked before the benchmark runs
        check_output_file(args.json, "--json")
    batch = args.batch_size if args.batch_size == "auto" else _positive_int(args.batch_size, "--batch-size")
    if args.no_trainer and args.model_step is False:
        raise ValueError("--no-trainer with --no-model-step leaves nothing to measure")
    results = run_training_bench(args.preset, batch, args.steps, args.warmup, args.scenes, args.threads,
                                 progress=True, device=args.device, dtype=args.dtype, workers=args.workers,
                                 model_step=True if args.no_trainer else args.model_step, max_batch=args.max_batch,
                                 trainer_loop=not args.no_trainer, boxes_per_image=args.boxes_per_image)
    if args.projection:
        projection(results, (1, args.gpus) if args.gpus > 1 else (1,), args.configs)
    print(format_results(results))
    if args.json:
        write_json(results, args.json)
    return 0


def _positive_int(text: str, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{flag} takes a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise ValueError(f"{flag} must be at least 1, got {value}")
    return value
