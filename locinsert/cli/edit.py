"""Edit an image from an instruction: add, remove and move objects ("remove the cup, then add a plant").

Verbs:
  add     "add a dog on the left": as `locinsert insert` (location model + --inpainter)
  remove  "remove / erase / delete the cup on the left": the object's mask is filled by --remover;
          the location phrase says which one (where it is)
  move    "move the chair to the right", "move the lamp next to the window": the object is cut out
          with its mask (--move-by cutout) or drawn again by --inpainter (redraw), its hole is
          filled, and the location model picks the new place under the target, away from the old one

Finding the object: by its name, with --segmenter (CLIPSeg zero-shot by default, or a trained
TextMaskModel); the location phrase keeps only the parts centred there ("the cup on the left").
Or say where it is: --mask PNG (white = the object, the image's own size) or --box X1,Y1,X2,Y2
(pixels), for one remove or move. Pixels outside the (grown) mask and the new boxes never change.

Removers (--remover):
  biharmonic  scikit-image's biharmonic fill, offline, no weights (default); smooth fills
  powerpaint  PowerPaint-v1's removal task (P_ctxt prompt, P_obj negative, guidance 10)
  diffusers   any inpainting pipeline with an empty prompt (default stabilityai/stable-diffusion-2-inpainting),
              optionally with a removal LoRA (--lora, from training/removal_lora.py)

Writes into --out: <image>_edited.png, <image>_overlay.png (removed masks tinted red, new boxes in
red, the last sampled candidates in yellow) and <image>_edit.json (every step: verb, object, found,
mask box and pixel count, boxes, candidates). If an object is not found, the image is left as it
was for that step, the JSON says "found": false, and the exit code is 1.

examples:
  locinsert edit room.jpg "remove the cup on the left, then add a plant on the right" --model runs/dpo
  locinsert edit room.jpg "remove the cup" --box 120,80,160,140
  locinsert edit room.jpg "move the chair to the left" --mask chair.png --model runs/dpo
  locinsert edit room.jpg "remove the cup" --mask cup.png --remover diffusers --lora runs/removal_lora/final
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import insert, options
from .options import REMOVER_CHOICES as REMOVER_NAMES, SEGMENTER_CHOICES as SEGMENTERS


def add_object_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("finding the object")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--mask", default=None, metavar="PNG", help="mask of the object (white = object), image-sized")
    src.add_argument("--box", default=None, metavar="X1,Y1,X2,Y2", help="box of the object in pixels")
    g.add_argument("--segmenter", choices=SEGMENTERS, default="clipseg",
                   help="finds objects from their name when no --mask/--box is given: clipseg (zero-shot, default "
                        "weights CIDAS/clipseg-rd64-refined) or textmask (a TextMaskModel from "
                        "`locinsert train textmask`, given by --segmenter-model)")
    g.add_argument("--segmenter-model", default=None, metavar="ID_OR_FOLDER",
                   help="hub id or local folder of the segmenter's weights")
    g.add_argument("--threshold", type=options.open_probability, default=None,
                   help="binarise soft masks at this value, in (0, 1) (default: the segmenter's, else 0.5)")


def add_remover_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remover")
    g.add_argument("--remover", choices=REMOVER_NAMES, default="biharmonic", help="fill backend (default: biharmonic)")
    g.add_argument("--remover-model", default=None, help="hub id or local folder of the remover's weights")
    g.add_argument("--lora", default=None, help="removal LoRA (folder or .safetensors) for --remover diffusers")
    g.add_argument("--remover-base", default=None,
                   help="SD inpainting base for the official PowerPaint-v1 layout (--remover powerpaint)")
    g.add_argument("--remover-steps", type=options.positive_int, default=None,
                   help="denoising steps, >= 1 (default: the backend's)")
    g.add_argument("--remover-guidance", type=options.non_negative_float, default=None,
                   help="guidance scale, >= 0 (PowerPaint default: 10)")
    g.add_argument("--dilate", type=options.non_negative_int, default=None,
                   help="grow the mask by this many pixels, >= 0 (default: the backend's)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    insert.add_arguments(p)          # image, instruction, -n, --selection, location model, inpainter, --out
    p.set_defaults(out="locinsert-edit")
    add_object_arguments(p)
    add_remover_arguments(p)
    p.add_argument("--move-by", choices=("cutout", "redraw"), default="cutout",
                   help="move the object's own pixels (default) or draw it again with --inpainter")


def build_remover(args):
    """The backend named by --remover, loaded as the options say."""
    from ..inpainting import removal

    kwargs = {} if args.dilate is None else {"dilate": args.dilate}
    if args.remover == "biharmonic":
        if args.lora or args.remover_model:
            raise ValueError("--lora and --remover-model need --remover diffusers or powerpaint")
        return removal.BiharmonicFill(**kwargs)
    if args.lora and args.remover != "diffusers":
        raise ValueError(f"--lora applies to --remover diffusers, not {args.remover}")
    if args.remover_steps is not None:
        kwargs["num_inference_steps"] = args.remover_steps
    if args.remover_guidance is not None:
        kwargs["guidance_scale"] = args.remover_guidance
    load = dict(dtype=args.dtype, device=args.device, **kwargs)
    if args.remover == "diffusers":
        load["lora"] = args.lora
    elif args.remover_base:
        load["base"] = args.remover_base
    cls = removal.REMOVERS[args.remover]
    try:
        return cls.from_pretrained(args.remover_model, **load) if args.remover_model else cls.from_pretrained(**load)
    except OSError as e:
        raise ValueError(f"cannot load the {args.remover} remover weights {args.remover_model or '(default)'}: {e}; "
                         "offline, pass --remover-model FOLDER") from e


def build_segmenter(args):
    """The text segmenter named by --segmenter, loaded as the options say."""
    from ..modeling.checkpoint_io import CheckpointError, HubUnavailableError
    from ..registry import SEGMENTERS as registry

    if args.segmenter == "textmask" and not args.segmenter_model:
        raise ValueError("--segmenter textmask needs --segmenter-model FOLDER (a model from locinsert train textmask)")
    cls = registry.get(args.segmenter)
    load = {"device": args.device}
    try:
        return cls.from_pretrained(args.segmenter_model, **load) if args.segmenter_model else cls.from_pretrained(**load)
    except (OSError, CheckpointError) as e:
        if isinstance(e, CheckpointError) and not isinstance(e, HubUnavailableError):   # a broken local folder
            raise ValueError(f"--segmenter-model {args.segmenter_model}: {e}") from e
        # neither a local folder nor reachable / cached from the hub
        raise ValueError(f"cannot load the {args.segmenter} segmenter {args.segmenter_model or '(default)'}: {e}; "
                         "offline, pass --segmenter-model FOLDER, or give --mask / --box") from e


def object_mask(args, size):
    """The --mask / --box given for the object, as an (H, W) bool mask, or None."""
    import numpy as np

    from ..boxes import check_box
    from ..images import as_mask

    if args.mask:
        if not os.path.isfile(args.mask):
            raise ValueError(f"--mask: file not found: {args.mask}")
        from PIL import Image
        with Image.open(args.mask) as f:
            return as_mask(f.convert("L"), size, name="--mask")
    if args.box:
        try:
            box = [float(v) for v in args.box.split(",")]
        except ValueError:
            raise ValueError(f"--box must be four numbers X1,Y1,X2,Y2, got {args.box!r}") from None
        if len(box) != 4:
            raise ValueError(f"--box must be four numbers X1,Y1,X2,Y2, got {args.box!r}")
        x1, y1, x2, y2 = (int(round(v)) for v in check_box(box, *size))
        m = np.zeros((size[1], size[0]), bool)
        m[y1:y2, x1:x2] = True
        return m
    return None


def run_edit(args, steps, command: str) -> int:
    """Load what ``steps`` need, run ``ObjectEditor``, write the three outputs; 1 if something was not found."""
    import torch

    from ..editing.editor import ObjectEditor, edit_overlay
    from ..images import load_image
    from ..io import save_image_atomic, write_text_atomic

    from .common import check_device, check_output_dir

    out = check_output_dir(args.out)                    # mistakes in the options fail before any work
    check_device(args.device)
    image = load_image(args.image)
    for s in steps:
        for r in (s.region, getattr(s, "target", None)):
            if r is not None and hasattr(r, "resolve"):
                r.resolve(*image.size)
    mask = object_mask(args, image.size)
    verbs = [s.verb for s in steps]
    segmenter = build_segmenter(args) if mask is None and any(v in ("remove", "move") for v in verbs) else None
    redraw = getattr(args, "move_by", "cutout") == "redraw"
    drawn = [s.object for s in steps if s.verb == "add" or (redraw and s.verb == "move")]
    inpainter = insert.build_inpainter(args, drawn) if drawn else None
    needs_model = any(v in ("add", "move") for v in verbs)
    sampling = insert.sample_kwargs(args) if needs_model else {}
    model = insert.load_location_model(args.model, args.device, args.seed) if needs_model else None
    editor = ObjectEditor(model, inpainter, segmenter, build_remover(args), threshold=args.threshold,
                          move_by="redraw" if redraw else "cutout",
                          num_candidates=getattr(args, "num_candidates", 16),
                          selection=getattr(args, "selection", "logprob"),
                          **(insert.inserter_kwargs(args, strict=False) if needs_model else {}), **sampling)
    if editor.inserter is not None:
        editor.inserter.strict = bool(getattr(args, "strict", False))  # --strict: refuse regions that do not fit
    result = editor(image, steps, generator=torch.Generator().manual_seed(args.seed), mask=mask)

    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    record = {"image": str(args.image), "instruction": args.instruction, "remover": args.remover,
              **result.to_dict()}
    save_image_atomic(result.image, out / f"{stem}_edited.png")
    save_image_atomic(edit_overlay(result), out / f"{stem}_overlay.png")
    write_text_atomic(out / f"{stem}_{command}.json", json.dumps(record, indent=2))
    for s in result.steps:
        if not s.found:
            print(f"{s.verb} {s.object}: {s.message}", file=sys.stderr)
        elif s.box is not None:
            b = s.box.tolist()
            print(f"{s.verb} {s.object}: box [{b[0]:.1f}, {b[1]:.1f}, {b[2]:.1f}, {b[3]:.1f}]")
            if s.fit is not None:
                print(f"  {s.fit.message}")
    print(f"edited image -> {out / f'{stem}_edited.png'}; overlay -> {out / f'{stem}_overlay.png'}")
    return 0 if result.found else 1


def run(args: argparse.Namespace) -> int:
    from ..editing.instructions import parse_instructions

    if args.reference is not None:
        raise ValueError("--reference (insert *this* object) is an option of locinsert insert, not of edit")
    insert.check_reference_options(args, None)
    steps = parse_instructions(args.instruction)        # bad instructions fail before anything loads
    if (args.mask or args.box) and len(steps) != 1:
        raise ValueError("--mask / --box describe one object: give a single remove or move instruction")
    return run_edit(args, steps, "edit")
