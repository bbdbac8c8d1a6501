"""Sample plausible boxes for an object in an image; write them as JSON and as an overlay PNG.

The location model draws -n boxes from p(box | image, object), optionally only where --where
allows ("left", "top right", "near the bottom", "center", ...). Writes into --out:
<image>_proposals.json (boxes in xyxy pixels, the model's log p and the masked sampler's log q,
image size, region, fit verdict) and <image>_proposals.png (the boxes drawn on the image, brighter
= more likely by log p, best in red).

Under --where the boxes follow p(box | box in the region) (--sampler smc, the default) and the
command says whether the object fits there: the share of the model's probability in the region
and, when it hardly fits (below --fit-threshold), the phrase where it fits best. --strict then
refuses with exit code 2 instead of proposing boxes.
--heatmap PNG also draws where the model would put the object: the density of box centres from
--heatmap-samples samples (default 256), over the image.

--model is a trained LocationModel checkpoint (a folder written by `locinsert train`, or a hub
id). 'tiny' and 'synthetic' build an UNTRAINED random model of that preset instead: the command
then runs offline, but its boxes are random.

examples:
  locinsert propose room.jpg --object dog --model runs/finetune
  locinsert propose room.jpg --object "red mug" --where "top left" -n 20 --model runs/dpo --out props
  locinsert propose room.jpg --object cup --where left --model runs/dpo --heatmap cup_heat.png
  locinsert propose room.jpg --object cup --where "top left" --strict --model runs/dpo
  locinsert propose room.jpg --object cup --model tiny        # offline smoke test, random boxes
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from . import options
from .common import (RANDOM_PRESETS, check_device, check_output_dir, check_output_file,
                     load_location_model)

__all__ = ["add_model_arguments", "load_location_model", "sample_kwargs", "inserter_kwargs",
           "RANDOM_PRESETS"]


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `propose` and `insert`."""
    g = p.add_argument_group("location model")
    g.add_argument("--model", default=None,
                   help="trained LocationModel checkpoint (folder or hub id); 'tiny' or 'synthetic' = an "
                        "untrained random model of that preset (offline; its boxes are random)")
    g.add_argument("--temperature", type=options.positive_float, default=1.0,
                   help="sampling temperature, > 0 (default: 1.0)")
    g.add_argument("--top-k", type=options.positive_int, default=None,
                   help="sample only among the k likeliest tokens per step (k >= 1)")
    g.add_argument("--top-p", type=options.float_in(0, 1, low_open=True), default=None,
                   help="nucleus sampling threshold, in (0, 1]")
    g.add_argument("--min-size", type=options.non_negative_float, default=None,
                   help="smallest box width and height in pixels (>= 0)")
    g.add_argument("--seed", type=options.seed, default=0, help="seed: same seed, same boxes (default: 0)")
    g.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    g.add_argument("--sampler", default="smc", choices=("smc", "lookahead", "masked"),
                   help="how boxes obey --where: 'smc' follows p(box | box in region) (default); 'masked' "
                        "renormalises each coordinate without looking ahead (the older, biased sampler)")
    g.add_argument("--no-refine", dest="refine", action="store_false",
                   help="choose among the sampled boxes only; by default the most likely one is moved to its "
                        "local maximum of log p (LocationModel.refine)")
    f = p.add_argument_group("fit verdict (with --where)")
    f.add_argument("--strict", action="store_true",
                   help="refuse (exit code 2) when the object hardly fits --where, naming where it fits best")
    f.add_argument("--fit-threshold", type=options.probability, default=None, metavar="P",
                   help="share of the model's probability below which the object 'hardly fits' "
                        "(default: the model's calibrated threshold, else locinsert.fit.DEFAULT_FIT_THRESHOLD)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the image (any format PIL reads)")
    p.add_argument("--object", required=True, help="what to place, e.g. 'dog' or 'red mug'")
    p.add_argument("--where", default=None,
                   help="positional constraint: left, right, top, bottom, 'top left' (any corner), center, "
                        "'near the top', ... (the box centre must lie there)")
    p.add_argument("-n", "--num-samples", "--num-candidates", dest="num_samples", type=options.positive_int,
                   default=10, help="boxes sampled for the object (default: 10)")
    add_model_arguments(p)
    p.add_argument("--out", default="locinsert-propose", help="output folder (default: %(default)s)")
    p.add_argument("--heatmap", default=None, metavar="PNG",
                   help="also write a heatmap of where the model would put the object (box-centre density) here")
    p.add_argument("--heatmap-samples", type=options.non_negative_int, default=256,
                   help="boxes sampled for each heatmap; 0 = no heatmap (default: 256; the error falls as "
                        "1/sqrt(samples))")


def sample_kwargs(args) -> dict:
    """``sample()`` keywords from --temperature/--top-k/--top-p/--min-size (argparse has checked them)."""
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_size=args.min_size)


def inserter_kwargs(args, strict: bool = True) -> dict:
    """``ObjectInserter`` keywords from --sampler, --fit-threshold, --no-refine and (``strict``) --strict."""
    kw = dict(sampler=args.sampler, fit_threshold=args.fit_threshold, refine=args.refine)
    if strict:
        kw["strict"] = bool(args.strict)
    return kw


def run(args: argparse.Namespace) -> int:
    import torch

    from ..images import load_image
    from ..fit import RegionDoesNotFit, fit_verdict
    from ..editing.inserter import Candidates, overlay, refine_most_likely
    from ..io import save_image_atomic, write_text_atomic
    from ..regions import Region, region_json

    if not args.object.strip():
        raise ValueError("--object is empty: say what to place")
    out = check_output_dir(args.out)
    kwargs = sample_kwargs(args)
    check_device(args.device)
    heatmap_path = None
    if args.heatmap is not None:
        if args.heatmap_samples == 0:
            raise ValueError("--heatmap asks for a heatmap, but --heatmap-samples 0 turns it off")
        heatmap_path = check_output_file(args.heatmap, "--heatmap")
    image = load_image(args.image)
    region = Region.parse(args.where) if args.where else None
    if region is not None:
        region.resolve(*image.size)   # an impossible region fails here, before loading the model
    model = load_location_model(args.model, args.device, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    verdict = fit_verdict(model, image, args.object.strip(), region, threshold=args.fit_threshold,
                          min_size=kwargs.get("min_size"), generator=generator)
    if verdict is not None and args.strict and not verdict.fits:
        raise RegionDoesNotFit(verdict)
    s = model.sample(image, args.object.strip(), num_samples=args.num_samples, region=region,
                     generator=generator, sampler=args.sampler, **kwargs)
    cands = Candidates(s.boxes.float().cpu(), s.log_p.float().cpu(), s.log_q.float().cpu(), verdict)
    if args.refine:
        refine_most_likely(model, cands, image, args.object.strip(), region, kwargs.get("min_size"))
    cands = cands.by_likelihood()
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    record = {"image": str(args.image), "width": image.width, "height": image.height, "object": args.object.strip(),
              "region": region_json(region, *image.size), "model": args.model,
              "untrained": args.model in RANDOM_PRESETS and not os.path.exists(args.model),
              "box_format": "xyxy pixels", "sampler": args.sampler, **cands.to_dict()}
    write_text_atomic(out / f"{stem}_proposals.json", json.dumps(record, indent=2))
    save_image_atomic(overlay(image, cands, chosen=cands.boxes[0], region=region), out / f"{stem}_proposals.png")
    print(f"{len(cands)} boxes for {args.object!r} -> {out / f'{stem}_proposals.json'}, {out / f'{stem}_proposals.png'}")
    if verdict is not None:
        print(verdict.message)
    if heatmap_path is not None:
        from ..modeling.heatmap import heatmap_overlay

        heat = model.heatmap(image, args.object.strip(), region=region, num_samples=args.heatmap_samples,
                             generator=torch.Generator().manual_seed(args.seed + 1), **kwargs)
        heatmap_path.parent.mkdir(parents=True, exist_ok=True)
        save_image_atomic(heatmap_overlay(image, heat), heatmap_path)
        print(f"heatmap ({args.heatmap_samples} samples) -> {args.heatmap}")
    for b, lp in zip(cands.boxes[:5].tolist(), cands.logprobs[:5].tolist()):
        print(f"  [{b[0]:.1f}, {b[1]:.1f}, {b[2]:.1f}, {b[3]:.1f}]  log p = {lp:.2f}")
    return 0
