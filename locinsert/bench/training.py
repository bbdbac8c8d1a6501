"""Training throughput: samples/s of the supervised stage with and without cached encoder features,
and DPO pairs/s with the encoders run once per pair or once per box.

    locinsert bench training                       # "base" shapes, random weights, frozen ViT (as the preset)
    locinsert bench training --preset tiny --steps 5 --batch-size 8

Both runs use the real ``BoxSFTTrainer`` loop (data loading, forward, backward, AdamW step) on
synthetic-world queries. "with cache" first fills a ``FeatureCache`` of the frozen image encoder's
features (a one-time cost, reported separately), then trains from it, skipping the ViT. The class
encoder is frozen in every preset and the model memoises its features, so it costs nothing in either
run. Only the timed steps count (the first ``--warmup`` steps are excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time


class _StepTimer:
    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    timer.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.end = time.perf_counter()

        self.callback = Callback()
        self.start = self.end = None


def run_training_bench(preset: str = "base", batch_size: int = 8, steps: int = 4, warmup: int = 1,
                       scenes: int = 64, threads: int | None = None, progress: bool = False) -> dict:
    """Measure samples/s without and with the image-feature cache; returns a dict of figures."""
    import torch

    from ..data.synthetic import splits
    from ..modeling import LocationModel, LocationModelConfig
    from ..training.config import load_stage_config
    from ..training.datasets import BoxDataset, CachedImageFeatures, collate
    from ..training.sft import BoxSFTTrainer

    if threads:
        torch.set_num_threads(threads)
    if steps < 1 or warmup < 0 or batch_size < 1:
        raise ValueError("need steps >= 1, warmup >= 0, batch_size >= 1")
    torch.manual_seed(0)
    cfg = LocationModelConfig.preset(preset, pretrained=False, freeze_image_encoder=True)
    model = LocationModel(cfg)
    queries = splits.opa_like(scenes, seed=0, num_bins=cfg.num_bins)
    results: dict = {"preset": preset, "batch_size": batch_size, "timed_steps": steps, "warmup_steps": warmup,
                     "threads": torch.get_num_threads(), "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                     "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}

    def measure(dataset, out_dir) -> float:
        timer = _StepTimer(warmup)
        args = load_stage_config("pretrain", None, output_dir=out_dir, max_steps=warmup + steps,
                                 per_device_train_batch_size=batch_size, save_strategy="no", logging_steps=10 ** 6,
                                 disable_tqdm=not progress, report_to="none", dataloader_num_workers=0)[2]
        BoxSFTTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                      callbacks=[timer.callback]).train()
        return steps * batch_size / (timer.end - timer.start)

    with tempfile.TemporaryDirectory() as tmp:
        from ..data.feature_cache import FeatureCache

        plain = BoxDataset(queries, cfg.num_bins, preprocess=model.preprocessor)
        if len(plain) < (warmup + steps) * batch_size:
            raise ValueError(f"{len(plain)} examples are fewer than the {(warmup + steps) * batch_size} the run "
                             "needs: raise --scenes")
        results["samples_per_s_without_cache"] = measure(plain, os.path.join(tmp, "a"))
        features = CachedImageFeatures(FeatureCache.for_model(model, os.path.join(tmp, "cache")), "bench/")
        t0 = time.perf_counter()
        filled = features.fill(queries, progress=progress)
        results["cache_fill_s"] = time.perf_counter() - t0
        results["cache_images"] = filled["computed"]
        cached = BoxDataset(queries, cfg.num_bins, features=features)
        results["samples_per_s_with_cache"] = measure(cached, os.path.join(tmp, "b"))
    results["speedup"] = results["samples_per_s_with_cache"] / results["samples_per_s_without_cache"]
    results.update(_dpo_bench(model, queries, batch_size, steps, warmup))
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
    batches = [collate([pairs[(i * batch_size + j) % len(pairs)] for j in range(batch_size)])
               for i in range(warmup + steps)]
    ref = copy.deepcopy(model).eval()

    def per_box(m, b):
        tokens = torch.cat([b["chosen_tokens"], b["rejected_tokens"]])
        logps = m(**prefix_inputs(b, repeat=2), box_tokens=tokens).box_logps
        return logps[: len(b["chosen_tokens"])], logps[len(b["chosen_tokens"]):], None

    out = {}
    for name, fn in (("dpo_pairs_per_s_encode_once", pair_logps), ("dpo_pairs_per_s_encode_per_box", per_box)):
        m = copy.deepcopy(model).train()
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5)
        for i, b in enumerate(batches):
            if i == warmup:
                start = time.perf_counter()
            c, r, _ = fn(m, b)
            with torch.no_grad():
                rc, rr, _ = fn(ref, b)
            loss = -torch.nn.functional.logsigmoid(0.1 * ((c - rc) - (r - rr))).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[name] = steps * batch_size / (time.perf_counter() - start)
    out["dpo_speedup"] = out["dpo_pairs_per_s_encode_once"] / out["dpo_pairs_per_s_encode_per_box"]
    return out


def format_results(r: dict) -> str:
    return "\n".join([
        f"training throughput, preset {r['preset']} (random weights, frozen image encoder), batch {r['batch_size']}, "
        f"{r['timed_steps']} timed steps, {r['threads']} threads, {r['machine']}",
        "| run | samples/s |", "|---|---|",
        f"| encoders in the loop | {r['samples_per_s_without_cache']:.1f} |",
        f"| cached image features | {r['samples_per_s_with_cache']:.1f} |",
        f"| speed-up | {r['speedup']:.2f}x |",
        f"one-time cache fill: {r['cache_images']} images in {r['cache_fill_s']:.1f} s",
        "| DPO step (policy + reference) | pairs/s |", "|---|---|",
        f"| encoders once per pair | {r['dpo_pairs_per_s_encode_once']:.1f} |",
        f"| encoders once per box | {r['dpo_pairs_per_s_encode_per_box']:.1f} |",
        f"| speed-up | {r['dpo_speedup']:.2f}x |",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="locinsert bench training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="base", help="model preset, random weights (default: base)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per step (default: 8)")
    p.add_argument("--steps", type=int, default=4, help="timed optimizer steps per run (default: 4)")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps (default: 1)")
    p.add_argument("--scenes", type=int, default=64, help="synthetic scenes to draw examples from (default: 64)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    results = run_training_bench(args.preset, args.batch_size, args.steps, args.warmup, args.scenes, args.threads)
    print(format_results(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0
