"""CPU time and wall time of a fixed piece of the demo's training under a thread setting.

Each run is a fresh process (the OpenMP runtime reads its wait policy once, at torch's import):

    python scripts/bench_threads.py --threads 2 --wait passive --busy 2
    python scripts/bench_threads.py --threads 1 --wait default --busy 0

``--busy N`` starts N competing single-thread busy loops for the duration of the run. The work is
``--steps`` optimizer steps of the synthetic preset's location model (frozen encoder, batch 32, 5
boxes per scene, as in the demo's pretraining), after two untimed warm-up steps. Prints one JSON line:
threads, wait policy, busy loops, wall seconds, CPU seconds (user + system of the run's process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

BUSY = "while True: pass"


def _work(steps: int) -> dict:
    import resource
    import time

    import torch

    from locinsert.data.synthetic import pipe_like
    from locinsert.modeling import LocationModel, LocationModelConfig
    from locinsert.training.datasets import BoxDataset, collate

    torch.manual_seed(0)
    model = LocationModel(LocationModelConfig.preset("synthetic", freeze_image_encoder=True))
    data = BoxDataset(pipe_like(32 * (steps + 2), boxes_per_scene=5), model.config.num_bins,
                      preprocess=getattr(model, "preprocessor", None) or model.preprocess, boxes_per_image=5)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batches = [collate([data[i] for i in range(s * 32, (s + 1) * 32)]) for s in range(steps + 2)]

    def step(batch):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    for b in batches[:2]:
        step(b)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
    for b in batches[2:]:
        step(b)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": round(time.time() - t0, 2),
            "cpu_s": round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the library's policy)")
    p.add_argument("--wait", choices=("default", "passive", "active"), default="passive",
                   help="OpenMP wait policy: the runtime's default, PASSIVE (the library's) or ACTIVE")
    p.add_argument("--busy", type=int, default=0, help="competing busy loops during the run (default: 0)")
    p.add_argument("--steps", type=int, default=40, help="timed optimizer steps (default: 40)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        from locinsert.threads import configure_threads

        n = configure_threads(args.threads)
        print(json.dumps({"threads": n, "wait": os.environ.get("OMP_WAIT_POLICY", "default"), **_work(args.steps)}))
        return 0
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "OMP_NUM_THREADS")}
    if args.wait != "default":
        env["OMP_WAIT_POLICY"] = args.wait.upper()
    else:
        env["OMP_WAIT_POLICY"] = ""   # set, so the library leaves it alone; empty: the runtime's default
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
    try:
        cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--wait", args.wait]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    finally:
        for b in busy:
            b.kill()
            b.wait()
    row = json.loads(out)
    row["busy"] = args.busy
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
