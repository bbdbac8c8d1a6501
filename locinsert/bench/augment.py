"""Augmentation throughput: ``locinsert augment`` in process against Ray Data with N local workers.

The job: ``num_images`` synthetic-world images (64 px, exported as COCO with masks), each given
``per_image`` objects cut out of the dataset and placed by a location model (``--preset``, random
weights: the speed of sampling does not depend on what the weights learned) or at random.
Measured, in one run:

- ``local_images_per_s``: ``run_job`` in this process (model load included);
- ``ray_images_per_s``: the same job on a local Ray with ``workers`` actors, each loading the model
  once (actor start included; ``ray_init_s``, starting Ray itself, is reported apart);
- ``same_output``: whether both wrote byte-identical annotation files (they must).

On a shared machine, compare the ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from . import write_json
from .device import describe, machine_line


def bench(num_images: int = 96, per_image: int = 2, workers: int = 2, placement: str = "learned",
          preset: str = "tiny", shard_size: int = 8, batch_size: int = 8, seed: int = 0) -> dict:
    """Run the job both ways; returns the figures (see the module docstring)."""
    import torch

    from ..copypaste import AugmentJob, run_job
    from ..copypaste.synthetic import export_coco, make_world
    from ..modeling import LocationModel, LocationModelConfig

    tmp = tempfile.mkdtemp(prefix="locinsert-bench-augment-")
    try:
        src = export_coco(make_world(num_images, seed=seed), os.path.join(tmp, "src"))
        model = None
        if placement == "learned":
            torch.manual_seed(seed)
            model = os.path.join(tmp, "model")
            LocationModel(LocationModelConfig.preset(preset)).save_pretrained(model)

        def job(name):
            return AugmentJob(src, os.path.join(tmp, name), placement=placement, model=model,
                              options={"per_image": per_image, "seed": seed}, shard_size=shard_size,
                              batch_size=batch_size)

        t = time.perf_counter()
        local = run_job(job("local"), progress=False)
        local_s = time.perf_counter() - t
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {k: os.environ[k] for k in ("PYTHONPATH", "OMP_NUM_THREADS")
                                           if k in os.environ}})
        init_s = time.perf_counter() - t
        try:
            t = time.perf_counter()
            run_job(job("ray"), engine="ray", workers=workers, progress=False)
            ray_s = time.perf_counter() - t
        finally:
            ray.shutdown()
        with open(local.annotations) as a, open(os.path.join(tmp, "ray", "annotations.json")) as b:
            same = a.read() == b.read()
        return {"machine": describe(torch.device("cpu")), "num_images": num_images, "per_image": per_image, "placement": placement,
                "preset": preset if placement == "learned" else None, "workers": workers, "shard_size": shard_size,
                "batch_size": batch_size, "pasted": local.pasted, "local_s": round(local_s, 2),
                "local_images_per_s": round(num_images / local_s, 2), "ray_init_s": round(init_s, 2),
                "ray_s": round(ray_s, 2), "ray_images_per_s": round(num_images / ray_s, 2),
                "ray_over_local": round(local_s / ray_s, 2), "same_output": same}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def format_results(r: dict) -> str:
    """The figures as a few lines of text."""
    return "\n".join([
        f"augment: {r['num_images']} images x {r['per_image']} objects, placement {r['placement']}"
        + (f" ({r['preset']} model, random weights)" if r["preset"] else "") + f"; {machine_line(r['machine'])}",
        f"  in process          {r['local_images_per_s']:8.2f} images/s  ({r['local_s']:.1f} s)",
        f"  Ray, {r['workers']} local workers {r['ray_images_per_s']:8.2f} images/s  ({r['ray_s']:.1f} s, "
        f"+ {r['ray_init_s']:.1f} s to start Ray)",
        f"  Ray / in process    {r['ray_over_local']:8.2f} x; same output: {r['same_output']}",
    ])


def main(argv: list[str] | None = None) -> int:
    """``locinsert bench augment [options]``."""
    from ..argtypes import Parser, positive_int as positive

    p = Parser(prog="locinsert bench augment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-images", type=positive, default=96, help="images in the job (default: 96)")
    p.add_argument("--per-image", type=positive, default=2, help="objects pasted per image (default: 2)")
    p.add_argument("--workers", type=positive, default=2, help="Ray actors (default: 2)")
    p.add_argument("--placement", choices=["learned", "random"], default="learned", help="(default: learned)")
    p.add_argument("--preset", default="tiny", help="location model preset, random weights (default: tiny)")
    p.add_argument("--shard-size", type=positive, default=8, help="images per shard (default: 8)")
    p.add_argument("--batch-size", type=positive, default=8, help="images per model call (default: 8)")
    p.add_argument("--threads", type=positive, default=None, help="torch threads per process (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    if argv and argv[0] == "--":
        argv = argv[1:]
    args = p.parse_args(argv)
    from ..io import check_output_file

    if args.json:
        check_output_file(args.json, "--json")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the Ray workers' too
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError("locinsert bench augment needs Ray: pip install 'locinsert[ray]'") from None
    r = bench(args.num_images, args.per_image, args.workers, args.placement, args.preset, args.shard_size,
              args.batch_size)
    print(format_results(r))
    if args.json:
        write_json(r, args.json)
    return 0
