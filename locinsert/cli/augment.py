"""Augment a detection dataset: paste objects where they plausibly go, label them, write COCO or YOLO.

The input is a COCO JSON file (boxes, polygon or RLE masks) or a YOLO folder (images/, labels/,
data.yaml); the output folder gets the same format: every image (times --copies) with its pasted
objects labelled (box, and mask when the pasted cut-out has one) and the objects they cover
adjusted (or dropped/flagged under --min-visible).

Placement: "learned" (a LocationModel, --model; existing boxes avoided), "random" (Simple
Copy-Paste: uniform position, scale jitter), "oracle" (synthetic-world datasets only).
Paste source: "dataset" (instances cut out of the dataset by their masks), a folder of RGBA
cut-outs per class (DIR/<class>/*.png), or "inpainter:NAME" (a diffusion backend draws the class).

The job runs in shards: rerun the same command after a crash and it finishes the missing shards
only. The output is the same for a seed whatever the engine or the number of workers.

examples:
  locinsert augment train.json --out train_aug --placement learned --model runs/dpo/final
  locinsert augment data/yolo --out yolo_aug --placement random --per-image 1-3 --rare-boost 1
  locinsert augment train.json --out aug --placement learned --model m/ --engine ray --workers 4
  locinsert augment train.json --out aug --engine ray --address auto      # join a running cluster
"""

from __future__ import annotations

import argparse
import sys


def _range(text: str, flag: str, kind=int) -> tuple:
    parts = str(text).replace(",", "-").split("-") if kind is int else str(text).split(",")
    try:
        vals = [kind(p) for p in parts if p.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes N or LOW-HIGH, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2:
        raise ValueError(f"{flag} takes N or LOW-HIGH, got {text!r}")
    return tuple(vals)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import float_in, positive_int, probability, seed

    positive = positive_int
    parser.add_argument("input", help="a COCO JSON file or a YOLO dataset folder")
    parser.add_argument("--out", required=True, help="output folder (a rerun of the same job resumes it)")
    parser.add_argument("--format", choices=["coco", "yolo"], default=None, help="default: a folder is YOLO, a file COCO")
    parser.add_argument("--images", default=None, help="COCO: the image folder (default: next to the JSON file)")
    parser.add_argument("--placement", choices=["learned", "random", "oracle"], default="random",
                        help="where objects go (default: random)")
    parser.add_argument("--model", default=None, help="learned placement: a LocationModel checkpoint folder")
    parser.add_argument("--paste", default="dataset",
                        help="'dataset' (copy-paste its own instances), a cut-out folder DIR/<class>/*.png, "
                             "or inpainter:NAME (default: dataset)")
    parser.add_argument("--per-image", default="1-3", help="objects pasted per image: N or LOW-HIGH (default: 1-3)")
    parser.add_argument("--classes", default=None, help="comma-separated classes to paste (default: all)")
    parser.add_argument("--rare-boost", type=float_in(), default=0.0,
                        help="class weights = count^(1 - boost): 0 natural frequencies, 1 uniform, 2 inverse (default: 0)")
    parser.add_argument("--copies", type=positive, default=1, help="augmented versions per input image (default: 1)")
    parser.add_argument("--blend", choices=["hard", "feather", "harmonize"], default="feather",
                        help="hard paste, feathered alpha, or Lab colour harmonisation + feather (default: feather)")
    parser.add_argument("--min-visible", type=probability, default=0.25,
                        help="an object left with less of its area visible is dropped or flagged (default: 0.25)")
    parser.add_argument("--occluded", choices=["drop", "flag"], default="drop",
                        help="what happens to such an object (flag: COCO 'ignore': 1; YOLO lists it in the report)")
    parser.add_argument("--no-avoid-existing", action="store_true",
                        help="learned/oracle placement may cover existing objects (default: avoid them)")
    parser.add_argument("--num-candidates", type=positive, default=16, help="learned: boxes sampled per object (default: 16)")
    parser.add_argument("--selection", choices=["sample", "best"], default="sample",
                        help="learned: a plain draw, or the most likely of the candidates (default: sample)")
    parser.add_argument("--region", default=None,
                        help="learned: a position phrase every box keeps to, e.g. 'bottom' or 'top left'")
    parser.add_argument("--scale-range", default="0.5,1.5", help="random: scale jitter LOW,HIGH (default: 0.5,1.5)")
    parser.add_argument("--seed", type=seed, default=0, help="the job's seed (default: 0)")
    parser.add_argument("--shard-size", type=positive, default=64, help="images per shard, the unit of resume (default: 64)")
    parser.add_argument("--batch-size", type=positive, default=8, help="images placed per model call (default: 8)")
    parser.add_argument("--device", default="cpu", help="the location model's device: cpu, cuda, auto (default: cpu)")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local (this process) or ray (Ray Data actors; needs locinsert[ray]) (default: local)")
    parser.add_argument("--address", default=None, help="ray: the cluster to join (default: start a local one)")
    parser.add_argument("--workers", type=positive, default=2, help="ray: actors, each holding the model (default: 2)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad record instead of skipping it")
    parser.add_argument("--threads", type=positive, default=None, help="torch threads (default: torch's choice)")


def run(args) -> int:
    from ..validation import check_int

    if check_int(args.threads, "--threads", minimum=1, optional=True):
        import torch

        torch.set_num_threads(args.threads)
    from locinsert.copypaste import augment

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    report = augment(args.input, args.out, placement=args.placement, model=args.model, paste=args.paste,
                     format=args.format, images=args.images, engine=args.engine, address=args.address,
                     workers=args.workers, num_candidates=args.num_candidates, selection=args.selection,
                     region=args.region,
                     scale_range=_range(args.scale_range, "--scale-range", float), shard_size=args.shard_size,
                     batch_size=args.batch_size, device=args.device, strict=args.strict,
                     per_image=_range(args.per_image, "--per-image"), classes=classes, rare_boost=args.rare_boost,
                     copies=args.copies, blend=args.blend, min_visible=args.min_visible, occluded=args.occluded,
                     avoid_existing=not args.no_avoid_existing, seed=args.seed)
    for line in report.problems[:5]:
        print(f"skipped: {line}", file=sys.stderr)
    if report.skipped:
        print(f"skipped {sum(report.skipped.values())} bad record(s): {report.skipped}", file=sys.stderr)
    resumed = f", {report.shards_resumed} of {report.shards} shards already done" if report.shards_resumed else ""
    print(f"wrote {report.images} images to {report.output} ({report.pasted} objects pasted, {report.no_place} not "
          f"placed, {report.dropped} occluded dropped, {report.flagged} flagged{resumed}); labels: {report.annotations}")
    return 0
