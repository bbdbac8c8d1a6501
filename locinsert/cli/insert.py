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
  paint-by-example  Paint-by-Example: draws the --reference object (default Fantasy-Studio/Paint-by-Example)
  repaint     RePaint resampling with the --reference in the box, on SD inpainting
              (default stable-diffusion-v1-5/stable-diffusion-inpainting; --schedule, --jump-*)
The diffusion backends need their weights (hub or a local folder via --inpainter-model).

Insert *this* object (--reference PHOTO_OR_CUTOUT): the reference goes to the object written as
"it" / "this ..." (or to the only object). Backends that take it: paint-by-example, repaint and
cutout (the reference is the cut-out: it must be RGBA). Its class for the location model is
--reference-class, else the instruction's word ("add this mug ..."), else CLIP zero-shot over
--classes (default: the 80 COCO classes) with --zero-shot-model (default open_clip ViT-B-32 / openai).

examples:
  locinsert insert room.jpg "add a dog on the left" --model runs/dpo --inpainter gligen --device cuda
  locinsert insert room.jpg "add a mug in the top right" --model runs/dpo --cutout mug.png
  locinsert insert scene.png "add a chair on the left, then a painting near the top" --model tiny
  locinsert insert room.jpg "add it on the left" --reference mug.png --inpainter paint-by-example --model runs/dpo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import options
from .common import check_device, check_output_dir
from .options import INPAINTER_CHOICES as INPAINTERS, REFERENCE_INPAINTER_CHOICES as REFERENCE_INPAINTERS
from .propose import add_model_arguments, inserter_kwargs, load_location_model, sample_kwargs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the image to edit")
    p.add_argument("instruction", help="e.g. 'add a red mug on the left side' or 'add a cup, then a lamp on the right'")
    p.add_argument("-n", "--num-samples", "--num-candidates", dest="num_candidates", type=options.positive_int,
                   default=16, help="boxes sampled for each object, the candidates (default: 16)")
    p.add_argument("--selection", choices=("logprob", "diverse", "random"), default="logprob",
                   help="which candidate to use: the likeliest (default), one of the likeliest distinct "
                        "places at random, or any sample at random")
    add_model_arguments(p)
    add_inpainter_arguments(p)
    add_reference_arguments(p)
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
    g.add_argument("--steps", type=options.positive_int, default=None,
                   help="denoising steps, >= 1 (default: the backend's)")
    g.add_argument("--guidance-scale", type=options.non_negative_float, default=None,
                   help="classifier-free guidance scale, >= 0")
    add_dtype_argument(g, "weights dtype for diffusion backends")
    g.add_argument("--feather", type=options.non_negative_int, default=0,
                   help="soft seam width in pixels, inside the box, >= 0 (default: 0)")


def add_dtype_argument(p, what: str) -> None:
    """--dtype, the same vocabulary in every command (float32 / float16 / bfloat16, or fp32 / fp16 / bf16)."""
    p.add_argument("--dtype", default=None, type=options.dtype_name, choices=options.DTYPE_NAMES,
                   help=f"{what}: float32, float16 or bfloat16 (fp32, fp16, bf16 also work; default: the "
                        "checkpoint's)")


def add_reference_arguments(p: argparse.ArgumentParser) -> None:
    """Options for inserting *this* object (--reference)."""
    r = p.add_argument_group("reference: insert *this* object")
    r.add_argument("--reference", default=None, metavar="IMAGE",
                   help="photo or RGBA cut-out of the object to insert (--inpainter paint-by-example, repaint "
                        "or cutout)")
    r.add_argument("--reference-class", default=None, metavar="NAME",
                   help="class of the reference for the location model (default: the instruction's word, "
                        "else CLIP zero-shot)")
    r.add_argument("--classes", default=None, metavar="A,B,...",
                   help="zero-shot vocabulary, comma-separated (default: the 80 COCO classes)")
    r.add_argument("--zero-shot-model", default=None, metavar="NAME",
                   help="open_clip model for the zero-shot class: an architecture name (with "
                        "--zero-shot-pretrained), hf-hub:ORG/REPO or local-dir:FOLDER (default: ViT-B-32)")
    r.add_argument("--zero-shot-pretrained", default="openai", metavar="TAG",
                   help="open_clip weights tag for an architecture name (default: %(default)s)")
    r.add_argument("--schedule", default=None, choices=("layout", "linear", "cosine", "paste"),
                   help="repaint: weight of the reference over the steps (default: layout = reference for the "
                        "first half, then the model harmonises)")
    r.add_argument("--jump-length", type=options.positive_int, default=None,
                   help="repaint: steps per resampling jump (default: 5)")
    r.add_argument("--jump-n-sample", type=options.positive_int, default=None,
                   help="repaint: resampling rounds per jump, 1 = none (default: 2)")


def check_reference_options(args, reference) -> None:
    """Option combinations that cannot work, found before anything loads (``reference``: a ``Reference`` or None)."""
    if args.inpainter != "repaint" and any(getattr(args, k) is not None for k in ("schedule", "jump_length",
                                                                                   "jump_n_sample")):
        raise ValueError("--schedule, --jump-length and --jump-n-sample only apply to --inpainter repaint")
    if reference is None:
        for flag in ("reference_class", "classes", "zero_shot_model"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} needs --reference")
    elif args.inpainter == "cutout":
        if args.cutout:
            raise ValueError("give --cutout or --reference, not both: with --inpainter cutout the reference is the cut-out")
        if not reference.has_alpha:
            raise ValueError("--reference has no transparency, so --inpainter cutout would paste its whole rectangle: "
                             "give an RGBA cut-out, or use --inpainter paint-by-example or repaint, which take photos")


def build_inpainter(args, objects: list[str], reference=None):
    """The backend named by --inpainter, loaded as the options say (``objects``: those drawn from text;
    ``reference``: the ``Reference`` of --reference, if any)."""
    from .. import inpainting

    if args.inpainter == "cutout":
        if args.cutout:
            return inpainting.CutoutCompositor(args.cutout, feather=args.feather)
        if reference is not None and not objects:
            return inpainting.CutoutCompositor(None, feather=args.feather)
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
    if args.inpainter == "repaint":
        kwargs.update({k: getattr(args, k) for k in ("schedule", "jump_length", "jump_n_sample")
                       if getattr(args, k, None) is not None})   # `app` has no reference options
    cls = inpainting.BACKENDS[args.inpainter]
    load = dict(dtype=args.dtype, device=args.device, **kwargs)
    if args.inpainter == "powerpaint" and args.powerpaint_base:
        load["base"] = args.powerpaint_base
    try:
        return cls.from_pretrained(args.inpainter_model, **load) if args.inpainter_model else cls.from_pretrained(**load)
    except OSError as e:   # weights neither in a local folder nor reachable / cached from the hub
        raise ValueError(f"cannot load the {args.inpainter} weights "
                         f"{args.inpainter_model or '(default)'}: {e}; offline, pass --inpainter-model FOLDER") from e


def build_classifier(args):
    """The open_clip zero-shot classifier of --zero-shot-model, or a clear error."""
    from ..editing.zero_shot import DEFAULT_ZERO_SHOT, ZeroShotClassifier

    name = args.zero_shot_model or DEFAULT_ZERO_SHOT
    try:
        return ZeroShotClassifier.from_pretrained(name, args.zero_shot_pretrained, device=args.device)
    except (OSError, RuntimeError) as e:
        raise ValueError(f"the instruction names no class for the reference and the zero-shot CLIP {name!r} could "
                         f"not be loaded ({e}); pass --reference-class NAME, or --zero-shot-model local-dir:FOLDER") from e


def run(args: argparse.Namespace) -> int:
    import torch

    from ..images import load_image
    from ..editing.inserter import ObjectInserter, overlay
    from ..io import save_image_atomic, write_text_atomic
    from ..editing.instructions import parse_instructions

    out = check_output_dir(args.out)
    kwargs = sample_kwargs(args)
    check_device(args.device)
    image = load_image(args.image)
    steps = parse_instructions(args.instruction)        # bad instructions fail before anything loads
    for s in steps:
        if s.region is not None:
            s.region.resolve(*image.size)
    reference, classifier, vocabulary, uses = None, None, None, [False] * len(steps)
    if args.reference is not None:
        from ..inpainting.reference import as_reference
        from ..editing.zero_shot import check_vocabulary, named_class, reference_steps

        if args.inpainter not in REFERENCE_INPAINTERS:
            raise ValueError(f"--inpainter {args.inpainter} cannot use a --reference image (it draws from text "
                             f"only); use one of {', '.join(REFERENCE_INPAINTERS)}")
        reference = as_reference(args.reference)                # a bad reference fails before anything loads
        uses = reference_steps([s.object for s in steps])
        vocabulary = check_vocabulary(args.classes) if args.classes else None
    check_reference_options(args, reference)
    if args.inpainter == "paint-by-example" and not all(uses):
        text_only = [s.object for s, u in zip(steps, uses) if not u]
        raise ValueError(f"--inpainter paint-by-example draws only from a --reference image, and {text_only} "
                         "would have none: pass --reference, or use another backend for those objects")
    if reference is not None and not args.reference_class and any(u and not named_class(s.object)
                                                                   for s, u in zip(steps, uses)):
        classifier = build_classifier(args)
    inpainter = build_inpainter(args, [s.object for s, u in zip(steps, uses) if not u], reference)
    model = load_location_model(args.model, args.device, args.seed)
    inserter = ObjectInserter(model, inpainter, num_candidates=args.num_candidates, selection=args.selection,
                              reference=reference, reference_class=args.reference_class, classifier=classifier,
                              vocabulary=vocabulary, **inserter_kwargs(args),
                              **kwargs)
    result = inserter(image, steps, generator=torch.Generator().manual_seed(args.seed))

    from ..regions import region_json

    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    save_image_atomic(result.image, out / f"{stem}_edited.png")
    save_image_atomic(overlay(result.image, result.candidates, chosen=result.boxes,
                              labels=[s.object for s in result.steps]), out / f"{stem}_overlay.png")
    record = {"image": str(args.image), "instruction": args.instruction, "width": image.width,
              "height": image.height, "inpainter": args.inpainter, "model": args.model, "box_format": "xyxy pixels",
              "reference": None if reference is None else str(args.reference),
              "steps": [{"object": s.object, "reference": s.reference, "region": region_json(s.region, *image.size),
                         "box": [round(float(v), 2) for v in s.box], "log_p": round(s.log_p, 4),
                         "fit": None if s.fit is None else s.fit.to_dict(),
                         "candidates": s.candidates.to_dict()} for s in result.steps]}
    if inserter.reference_zero_shot is not None:
        record["reference_zero_shot"] = inserter.reference_zero_shot.top(5)
    write_text_atomic(out / f"{stem}_insert.json", json.dumps(record, indent=2))
    for s in result.steps:
        b = s.box.tolist()
        what = f"{s.object} (the reference)" if s.reference else s.object
        print(f"{what}: box [{b[0]:.1f}, {b[1]:.1f}, {b[2]:.1f}, {b[3]:.1f}] (log p = {s.log_p:.2f})")
        if s.fit is not None:
            print(f"  {s.fit.message}")
    if inserter.reference_zero_shot is not None:
        z = inserter.reference_zero_shot
        print(f"reference class by CLIP zero-shot: {z.label} (p = {z.probs[z.label]:.2f}); "
              "override with --reference-class")
    print(f"edited image -> {out / f'{stem}_edited.png'}; overlay -> {out / f'{stem}_overlay.png'}")
    return 0
