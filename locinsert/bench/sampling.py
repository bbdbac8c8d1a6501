"""Sampling speed: N boxes for one image, four ways, measured in one run; and a sweep over N on any device.

1. ``generate``: transformers ``generate()`` on a GPT2LMHeadModel that shares the decoder's
   weights, with the image + class prefix repeated once per sample;
2. ``copied_cache``: the prefix runs once, then its KV cache is copied N times and the N samples
   decode as an ordinary batch;
3. ``shared_prefix``: ``LocationModel.sample`` (prefix once, the cache read by broadcasting, with
   the validity masks on);
4. ``floor``: the arithmetic lower bound, the larger of two times: FLOPs of the ViT + the prefix +
   N x 4 decode tokens over a GEMM rate measured at the run's dtype, and the bytes of weights and
   prefix cache every method must read over a measured copy bandwidth.

The **sweep** times ``LocationModel.sample`` for every N in ``sweep`` and every number of images per
call in ``images_per_call``, once per decode-step compile mode (``LocationModel.compile_decoding``):
on a GPU a call is launch-bound at small N, which the sweep and the CUDA-graph modes make visible.
Every time is end-to-end (image preprocessing included) with the device synchronised; compiled modes
are warmed up on each shape before timing, and the warm-up time is reported separately.

The class feature is memoised (warm) in every approach, so the class tower is not timed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..validation import check_positive_int
from .device import (copy_bandwidth, describe, gemm_rate, machine_line, resolve_device, resolve_dtype, time_best,
                     time_median, time_once)

__all__ = ["gemm_rate", "floor_flops", "run_sampling_bench", "format_results"]

DEFAULT_SWEEP = (1, 10, 100, 1000)


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _decode_flops_per_token(model, length: int) -> int:
    c = model.decoder.config
    d, layers = c.n_embd, c.n_layer
    return layers * (2 * 12 * d * d + 4 * d * (length + 4)) + 2 * d * model.config.num_bins


def floor_flops(model, pixel_values, prefix, num_samples: int) -> dict:
    """FLOPs of the work any method must do: ViT, prefix, and N x 4 decode tokens."""
    from locinsert.modeling.sampling import prefix_forward

    with torch.no_grad():
        vit = _flops(lambda: model.encode_image(pixel_values))
        pre = _flops(lambda: prefix_forward(model.decoder, prefix))
    decode = _decode_flops_per_token(model, prefix.shape[1]) * 4 * num_samples
    return dict(vit=vit, prefix=pre, decode=decode, total=vit + pre + decode)


def _nbytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def floor_bytes(model, prefix_length: int, images: int = 1) -> int:
    """Bytes any method must read: the ViT and projection weights once per call, the decoder and
    head weights once per token position (prefix + 3 steps + the last head), and each image's prefix
    cache once per decode step. A lower bound: activations are not counted."""
    c = model.decoder.config
    blocks = sum(_nbytes(b) for b in model.decoder.h) + _nbytes(model.decoder.ln_f)
    itemsize = next(model.decoder.parameters()).element_size()
    cache = 2 * c.n_layer * prefix_length * c.n_embd * itemsize * images
    return (_nbytes(model.image_encoder) + _nbytes(model.image_proj) + 4 * blocks + 4 * _nbytes(model.lm_head)
            + 3 * cache)


def _generate_fn(model, image, cls: str, num_samples: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    dec = model.decoder
    lm = GPT2LMHeadModel(GPT2Config(**dec.config.to_dict()))
    lm.transformer = dec
    lm.to(model.device, model.dtype)
    with torch.no_grad():
        lm.lm_head.weight.zero_()
        lm.lm_head.weight[: model.config.num_bins] = model.lm_head.weight
    lm.eval()

    def run():
        with torch.no_grad():
            pv = model.preprocess(image)
            prefix = model.prefix_embeddings(model.encode_image(pv), model.encode_class([cls]))
            embeds = prefix.expand(num_samples, -1, -1)
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
            lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=4, min_new_tokens=4,
                        do_sample=True, top_k=0, pad_token_id=model.config.num_bins,
                        bos_token_id=model.config.num_bins, eos_token_id=None)
    return run


def _copied_cache_fn(model, image, cls: str, num_samples: int):
    def run():
        with torch.no_grad():
            pv = model.preprocess(image)
            prefix = model.prefix_embeddings(model.encode_image(pv), model.encode_class([cls]))
            out = model.decoder(inputs_embeds=prefix, use_cache=True)
            cache = out.past_key_values
            cache.batch_repeat_interleave(num_samples)  # the N copies of the prefix keys/values
            hidden = out.last_hidden_state[:, -1:].expand(num_samples, -1, -1)
            length = prefix.shape[1]
            for step in range(4):
                probs = torch.softmax(model.lm_head(hidden)[:, -1].float(), -1)
                tok = torch.multinomial(probs, 1)
                if step == 3:
                    break
                pos = torch.full((num_samples, 1), length + step, device=tok.device)
                hidden = model.decoder(input_ids=tok, past_key_values=cache, position_ids=pos,
                                       use_cache=True).last_hidden_state
    return run


def run_sweep(model, image, cls: str, sweep=DEFAULT_SWEEP, images_per_call=(1,), compile_modes=("none",),
              repeats: int = 3, warmup: int = 2, rate: float | None = None, bandwidth: float | None = None,
              flops_per_image: int | None = None, prefix_length: int | None = None, say=print) -> list[dict]:
    """Median seconds of ``model.sample`` per (compile mode, images per call, N); a list of rows
    (a mode that fails gives one row with its ``error``)."""
    rows = []
    try:
        for mode in compile_modes:
            try:
                rows += _sweep_mode(model, image, cls, mode, sweep, images_per_call, repeats, warmup, rate, bandwidth,
                                    flops_per_image, prefix_length, say)
            except Exception as e:  # noqa: BLE001 - a mode that fails to compile must not lose the others
                say(f"  sweep {mode}: failed: {type(e).__name__}: {e}", flush=True)
                rows.append(dict(compile=mode, error=f"{type(e).__name__}: {e}"))
    finally:
        model.compile_decoding("none")
    return rows


def _sweep_mode(model, image, cls, mode, sweep, images_per_call, repeats, warmup, rate, bandwidth, flops_per_image,
                prefix_length, say) -> list[dict]:
    device, rows = model.device, []
    model.compile_decoding(mode)
    for images in images_per_call:
        batch = [image] * images
        for n in sweep:
            def call():
                with torch.no_grad():
                    model.sample(batch, cls, num_samples=n)
            warm = sum(time_once(call, device) for _ in range(warmup if mode != "none" else 1))
            t = time_median(call, device, repeats)
            row = dict(compile=mode, images=images, num_samples=n, seconds=t, warmup_s=warm,
                       samples_per_s=images * n / t)
            if rate and flops_per_image is not None and prefix_length is not None:
                flops = images * (flops_per_image + _decode_flops_per_token(model, prefix_length) * 4 * n)
                floor = max(flops / rate, floor_bytes(model, prefix_length, images) / bandwidth)
                row.update(floor_s=floor, over_floor=t / floor)
            rows.append(row)
            say(f"  sweep {mode:>15s}: {images} image(s) x {n:5d} samples  {t * 1e3:9.2f} ms", flush=True)
    return rows


def run_sampling_bench(preset: str = "base", num_samples: int = 100, repeats: int = 3,
                       skip_generate: bool = False, image_size: tuple[int, int] = (640, 480),
                       progress: bool = True, device: str = "cpu", dtype: str = "fp32",
                       sweep=None, images_per_call=(1,), compile_modes=("none",),
                       skip_compare: bool = False) -> dict:
    """Measure the four approaches (and the sweep, if ``sweep``); return a dict of seconds, FLOPs and ratios."""
    from locinsert.modeling import LocationModel, LocationModelConfig

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    check_positive_int(num_samples, "num_samples")
    check_positive_int(repeats, "repeats")
    if sweep is not None and (not sweep or not images_per_call):
        raise ValueError("sweep sizes and images per call must not be empty")
    for n in [*(sweep or []), *images_per_call]:
        check_positive_int(n, "sweep sizes and images per call")
    say = print if progress else (lambda *a, **k: None)
    torch.manual_seed(0)
    say(f"building '{preset}' with random weights on {dev} ({dtype}) ...", flush=True)
    model = LocationModel(LocationModelConfig.preset(preset, pretrained=False)).eval().to(dev, torch_dtype)
    image = (np.random.default_rng(0).random((image_size[1], image_size[0], 3)) * 255).astype(np.uint8)
    cls = "dog"
    model.sample(image, cls, num_samples=2)  # warm: memoises the class feature, allocator, threads, kernels

    info = describe(dev)
    results: dict = dict(preset=preset, num_samples=num_samples, repeats=repeats, dtype=dtype, device=str(dev),
                         threads=torch.get_num_threads(), device_info=info,
                         machine=f"{machine_line(info)}, {dtype}", torch=torch.__version__)
    say("measuring the GEMM rate and copy bandwidth ...", flush=True)
    results["gemm_flops_per_s"] = gemm_rate(dev, torch_dtype)
    results["copy_bytes_per_s"] = copy_bandwidth(dev)
    with torch.no_grad():
        pv = model.preprocess(image)
        prefix = model.prefix_embeddings(model.encode_image(pv), model.encode_class([cls]))
    flops = floor_flops(model, pv, prefix, num_samples)
    results["flops"] = flops

    if not skip_compare:
        copied = _copied_cache_fn(model, image, cls, num_samples)
        copied()
        ours_fn = lambda: model.sample(image, cls, num_samples=num_samples)  # noqa: E731
        # Interleave the fast approaches and the GEMM-rate probe, keeping the best of each, so that
        # load from other processes on a shared machine biases none of them more than the others.
        best = dict(shared_prefix_s=float("inf"), copied_cache_s=float("inf"))
        for r in range(repeats):
            say(f"round {r + 1}/{repeats}: shared prefix (ours), copied KV cache, GEMM rate ...", flush=True)
            best["shared_prefix_s"] = min(best["shared_prefix_s"], time_best(ours_fn, dev, 1))
            best["copied_cache_s"] = min(best["copied_cache_s"], time_best(copied, dev, 1))
            results["gemm_flops_per_s"] = max(results["gemm_flops_per_s"], gemm_rate(dev, torch_dtype))
        results.update(best)
        if not skip_generate:
            say("timing generate() with the prefix repeated per sample (slow) ...", flush=True)
            results["generate_s"] = time_best(_generate_fn(model, image, cls, num_samples), dev, 1)
    rate, bandwidth = results["gemm_flops_per_s"], results["copy_bytes_per_s"]
    results["compute_floor_s"] = flops["total"] / rate
    results["memory_floor_s"] = floor_bytes(model, prefix.shape[1]) / bandwidth
    results["floor_s"] = max(results["compute_floor_s"], results["memory_floor_s"])
    if not skip_compare:
        ours = results["shared_prefix_s"]
        results["ours_over_floor"] = ours / results["floor_s"]
        results["copied_over_ours"] = results["copied_cache_s"] / ours
        if "generate_s" in results:
            results["generate_over_ours"] = results["generate_s"] / ours
    if sweep is not None:
        say("sweep over N and images per call ...", flush=True)
        results["sweep"] = run_sweep(model, image, cls, tuple(sweep), tuple(images_per_call), tuple(compile_modes),
                                     repeats, rate=rate, bandwidth=bandwidth,
                                     flops_per_image=flops["vit"] + flops["prefix"], prefix_length=prefix.shape[1],
                                     say=say)
    return results


def format_sweep(rows: list[dict]) -> str:
    lines = ["| decode step | images/call | N per image | ms/call | boxes/s | x floor | warm-up s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['compile']} | failed: {r['error'][:200]} | | | | | |")
            continue
        floor = f"{r['over_floor']:.1f}" if "over_floor" in r else "-"
        lines.append(f"| {r['compile']} | {r['images']} | {r['num_samples']} | {r['seconds'] * 1e3:.2f} | "
                     f"{r['samples_per_s']:,.0f} | {floor} | {r['warmup_s']:.1f} |")
    return "\n".join(lines)


def format_results(r: dict) -> str:
    f = r["flops"]
    lines = []
    if "shared_prefix_s" in r:
        rows = [("generate(), prefix repeated per sample", r.get("generate_s")),
                ("prefix once, KV cache copied per sample", r["copied_cache_s"]),
                ("shared-prefix decoding (ours)", r["shared_prefix_s"]),
                ("arithmetic floor", r["floor_s"])]
        lines += [f"{r['num_samples']} samples, preset '{r['preset']}', {r['machine']}, best of {r['repeats']}",
                  f"{'approach':42s} {'time':>9s} {'x ours':>8s}"]
        for name, t in rows:
            if t is None:
                lines.append(f"{name:42s} {'skipped':>9s}")
            else:
                lines.append(f"{name:42s} {t:8.4f}s {t / r['shared_prefix_s']:8.2f}")
    lines.append(f"floor: {f['total'] / 1e9:.1f} GFLOP (ViT {f['vit'] / 1e9:.1f}, prefix {f['prefix'] / 1e9:.1f}, "
                 f"decode {f['decode'] / 1e9:.1f}) at {r['gemm_flops_per_s'] / 1e9:,.0f} GFLOP/s measured GEMM "
                 f"({r['dtype']}) = {r['compute_floor_s'] * 1e3:.3f} ms; weights and cache read at "
                 f"{r['copy_bytes_per_s'] / 1e9:,.0f} GB/s measured copy = {r['memory_floor_s'] * 1e3:.3f} ms")
    if "ours_over_floor" in r:
        lines.append(f"ours / floor = {r['ours_over_floor']:.2f} (target <= 1.5)"
                     + (f"; generate / ours = {r['generate_over_ours']:.1f} (target >= 25)"
                        if "generate_over_ours" in r else ""))
    if r.get("sweep"):
        lines += ["", f"sweep: LocationModel.sample end to end, median of {r['repeats']}, {r['machine']}",
                  format_sweep(r["sweep"])]
    return "\n".join(lines)
