#!/usr/bin/env python3
"""The four-arm augmentation table: none / random copy-paste / learned placement / oracle placement.

    python training/augment_experiment.py --model runs/demo/models/dpo/final --out runs/augment_experiment

On the synthetic world with look-alike distractors at implausible places (unlabelled), a small
CenterNet is trained on a few labelled images plus each arm's augmentations, with the same steps
and seeds for every arm, and scored with pycocotools on a shared test set (mean ± sd over seeds).
Writes ``<out>/augment_experiment.json``, ``<out>/table.md`` and ``<out>/augment_arms.png``.
Design and results: docs/experiments/augmentation.md. About 12 minutes on one CPU thread.
"""

import argparse
import os
import sys


def blending_figure(path: str) -> None:
    """One object pasted three ways (hard, feather, harmonize) into a synthetic room, 4x enlarged."""
    import matplotlib.pyplot as plt
    import numpy as np

    from locinsert.copypaste.blending import blend, resize_cutout
    from locinsert.data.synthetic import make_scene, sprite

    scene = make_scene(3, size=96)
    image = scene.render()
    cut = np.asarray(sprite("plant", (18, 34)))
    # a greener, brighter plant than the room: harmonisation has something to do
    cut = cut.copy()
    cut[..., :3] = np.clip(cut[..., :3].astype(int) * [0.6, 1.4, 0.6] + [0, 40, 0], 0, 255).astype(np.uint8)
    y2 = int(scene.horizon) + 18
    box = (8, y2 - 34, 26, y2)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax, mode in zip(axes, ("hard", "feather", "harmonize")):
        out, _ = blend(image, resize_cutout(cut, 18, 34), box, mode, sigma=1.0, strength=0.6)
        ax.imshow(out[max(box[1] - 14, 0):box[3] + 14, 0:box[2] + 26], interpolation="nearest")
        ax.set_title(mode)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the location model for the learned arm (a checkpoint folder)")
    p.add_argument("--out", default="runs/augment_experiment", help="output folder")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-train", type=int, default=40, help="labelled images per seed")
    p.add_argument("--copies", type=int, default=4, help="augmented versions of each labelled image")
    p.add_argument("--n-test", type=int, default=400, help="test images (shared by all arms and seeds)")
    p.add_argument("--steps", type=int, default=200, help="detector training steps (every arm)")
    p.add_argument("--selection", choices=["best", "sample"], default="sample",
                   help="learned arm: a plain draw from the model (default), or the most likely of 16")
    p.add_argument("--arms", default="none,random,learned,oracle")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--blending-figure", default=None, help="only draw the blending picture to this PNG and stop")
    p.add_argument("--failures", action="store_true",
                   help="only report where learned placement goes wrong (per class; <out>/augment_failures.png)")
    args = p.parse_args(argv)
    if args.blending_figure:
        blending_figure(args.blending_figure)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    from locinsert.copypaste.experiment import format_table, run_experiment
    from locinsert.io import write_json_atomic, write_text_atomic

    os.makedirs(args.out, exist_ok=True)
    if args.failures:
        from locinsert.copypaste.experiment import placement_report

        report = placement_report(args.model, n=args.n_train, selection=args.selection,
                                  figure=os.path.join(args.out, "augment_failures.png"))
        for cls, counts in report.items():
            print(f"{cls:9s} {counts}")
        write_json_atomic(os.path.join(args.out, "augment_failures.json"), report)
        return 0
    result = run_experiment(args.model, seeds=args.seeds, n_train=args.n_train, copies=args.copies,
                            n_test=args.n_test, steps=args.steps, arms=tuple(args.arms.split(",")),
                            selection=args.selection, figure=os.path.join(args.out, "augment_arms.png"),
                            log=lambda m: print(m, flush=True))
    table = format_table(result)
    print(table)
    print(f"seconds={result['seconds']}")
    write_json_atomic(os.path.join(args.out, "augment_experiment.json"), result)
    write_text_atomic(os.path.join(args.out, "table.md"), table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
