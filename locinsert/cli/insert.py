"""Insert objects into an image from an instruction such as "add a dog on the left".

The instruction is parsed into objects and positions ("add a cup on the left, then a lamp near
the top"); for each object the location model samples -n candidate boxes in that part of the
image (away from objects inserted before), one is chosen (--selection), and the inpainter draws
the object inside it. Pixels outside the chosen boxes are never changed.

Writes into --out: <image>_edited.png, <image>_overlay.png (candidates of each step in yellow,
chosen boxes in red) and <image>_insert.json (boxes, log-probabilities, objects, regions).

Inpainters (--inpainter):
  cutout      paste an RGBA cut-out (--cutout PNG); without one, the synthetic world's sprite of
              the class (cup, chair, plant, painting, bird). Offline, no weights. (default)
  gligen      GLIGEN box-grounded inpainting (default weights masterful/gligen-1-4-inpainting-text-box)
  powerpaint  PowerPaint-v1 on SD inpainting (default JunhaoZhuang/PowerPaint-v1 on --powerpaint-base)
  diffusers   any AutoPipelineForInpainting checkpoint, or FLUX.1 Fill
              (default stable-diffusion-v1-5/stable-diffusion-inpainting)
The diffusion backends need their weights (hub or a local folder via --inpainter-model).

examples:
  locinsert insert room.jpg "add a dog on the left" --model runs/dpo --inpainter gligen --device cuda
  locinsert insert room.jpg "add a mug in the top right" --model runs/dpo --cutout mug.png
  locinsert insert scene.png "add a chair on the left, then a painting near the top" --model tiny
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .propose import add_model_arguments, load_location_model, region_json, sample_kwargs

INPAINTERS = ("cutout", "gligen", "powerpaint", "diffusers")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the image to edit")
    p.add_argument("instruction", help="e.g. 'add a red mug on the left side' or 'add a cup, then a lamp on the right'")
    p.add_argument("-n", "--num-candidates", type=int, default=16, help="boxes sampled per object (default: 16)")
    p.add_argument("--selection", choices=("logprob", "diverse", "random"), default="logprob",
                   help="which candidate to use: the likeliest (default), one of the likeliest distinct "
                        "places at random, or any sample at random")
    add_model_arguments(p)
    add_inpainter_arguments(p)
    p.add_argument("--out", default="locinsert-insert", help="output folder (default: %(default)s)")


def add_inpainter_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `insert` and `app`."""
    g = p.add_argument_group("inpainter")
    g.add_argument("--inpainter", choices=INPAINTERS, default="cutout", help="backend (default: cutout)")
    g.add_argument("--inpainter-model", default=None, help="hub id or local folder of the backend's weights")
    g.add_argument("--powerpaint-base", default=None,
                   help="SD inpainting base for the official PowerPaint-v1 layout "
                        "(default stable-diffusion-v1-5/stable-diffusion-inpainting)")
    g.add_argument("--cutout", default=None, metavar="PNG", help="RGBA cut-out for --inpainter cutout")
    g.add_argument("--steps", type=int, default=None, help="denoising steps (default: the backend's)")
    g.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale")
    g.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="weights dtype for diffusion backends (default: the checkpoint's)")
    g.add_argument("--feather", type=int, default=0, help="soft seam width in pixels, inside the box (default: 0)")


def build_inpainter(args, objects: list[str]):
    """The backend named by --inpainter, loaded as the options say."""
    from .. import inpainting

    if args.inpainter == "cutout":
        if args.cutout:
            return inpainting.CutoutCompositor(args.cutout, feather=args.feather)
        from ..data.synthetic import CLASSES, sprite

        missing = [o for o in objects if o not in CLASSES]
        if missing:
            raise ValueError(f"no --cutout PNG given and no built-in sprite for {missing}; sprites exist for "
                             f"{list(CLASSES)}")
        return inpainting.CutoutCompositor(sprite, allow_opaque=True, feather=args.feather)
    if args.cutout:
        raise ValueError(f"--cutout only applies to --inpainter cutout, not {args.inpainter}")
    kwargs = {"feather": args.feather}
    if args.steps is not None:
        kwargs["num_inference_steps"] = args.steps
    if args.guidance_scale is not None:
        kwargs["guidance_scale"] = args.guidance_scale
    cls = inpainting.BACKENDS[args.inpainter]
    load = dict(dtype=args.dtype, device=args.device, **kwargs)
    if args.inpainter == "powerpaint" and args.powerpaint_base:
        load["base"] = args.powerpaint_base
    try:
        return cls.from_pretrained(args.inpainter_model, **load) if args.inpainter_model else cls.from_pretrained(**load)
    except OSError as e:   # weights neither in a local folder nor reachable / cached from the hub
        raise ValueError(f"cannot load the {args.inpainter} weights "
                         f"{args.inpainter_model or '(default)'}: {e}; offline, pass --inpainter-model FOLDER") from e


def run(args: argparse.Namespace) -> int:
    import torch

    from ..images import load_image
    from ..inserter import ObjectInserter, overlay
    from ..instructions import parse_instructions

    if args.num_candidates < 1:
        raise ValueError(f"-n must be at least 1, got {args.num_candidates}")
    image = load_image(args.image)
    steps = parse_instructions(args.instruction)        # bad instructions fail before anything loads
    for s in steps:
        if s.region is not None:
            s.region.resolve(*image.size)
    inpainter = build_inpainter(args, [s.object for s in steps])
    model = load_location_model(args.model, args.device, args.seed)
    inserter = ObjectInserter(model, inpainter, num_candidates=args.num_candidates, selection=args.selection,
                              **sample_kwargs(args))
    result = inserter(image, steps, generator=torch.Generator().manual_seed(args.seed))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    result.image.save(out / f"{stem}_edited.png")
    overlay(result.image, result.candidates, chosen=result.boxes, labels=[s.object for s in result.steps]) \
        .save(out / f"{stem}_overlay.png")
    record = {"image": str(args.image), "instruction": args.instruction, "width": image.width,
              "height": image.height, "inpainter": args.inpainter, "model": args.model, "box_format": "xyxy pixels",
              "steps": [{"object": s.object, "region": region_json(s.region, *image.size),
                         "box": [round(float(v), 2) for v in s.box], "logprob": round(s.logprob, 4),
                         "candidates": s.candidates.to_dict()} for s in result.steps]}
    (out / f"{stem}_insert.json").write_text(json.dumps(record, indent=2))
    for s in result.steps:
        b = s.box.tolist()
        print(f"{s.object}: box [{b[0]:.1f}, {b[1]:.1f}, {b[2]:.1f}, {b[3]:.1f}] (log p = {s.logprob:.2f})")
    print(f"edited image -> {out / f'{stem}_edited.png'}; overlay -> {out / f'{stem}_overlay.png'}")
    return 0
