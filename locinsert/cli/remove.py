"""Remove an object from an image: "remove the cup on the left" (the verb may be left out: "the cup").

The object is found by its name with --segmenter (CLIPSeg zero-shot by default, or a trained
TextMaskModel; a location phrase keeps only the parts centred there), or given by --mask PNG
(white = the object, the image's own size) or --box X1,Y1,X2,Y2. --remover fills it and nothing
outside the mask (grown by --dilate) changes. Several objects, moves and additions in one
instruction: `locinsert edit`.

Removers (--remover):
  biharmonic  scikit-image's biharmonic fill, offline, no weights (default)
  powerpaint  PowerPaint-v1's removal task (P_ctxt prompt, P_obj negative, guidance 10)
  diffusers   any inpainting pipeline with an empty prompt (default stabilityai/stable-diffusion-2-inpainting),
              optionally with a removal LoRA (--lora)

Writes into --out: <image>_edited.png, <image>_overlay.png (the removed mask tinted red) and
<image>_remove.json (mask box, pixel count, found). Exit code 1 if the object was not found.

examples:
  locinsert remove room.jpg "remove the cup on the left"
  locinsert remove room.jpg "remove the cup" --box 120,80,160,140
  locinsert remove room.jpg "the vase" --mask vase.png --remover powerpaint --device cuda
"""

from __future__ import annotations

import argparse

from . import options
from .edit import add_object_arguments, add_remover_arguments, run_edit
from .insert import add_dtype_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the image to edit")
    p.add_argument("instruction", help="e.g. 'remove the cup on the left' or just 'the cup'")
    add_object_arguments(p)
    add_remover_arguments(p)
    add_dtype_argument(p, "weights dtype for diffusion removers")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--seed", type=options.seed, default=0, help="seed of the diffusion removers (default: 0)")
    p.add_argument("--out", default="locinsert-remove", help="output folder (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from ..editing.instructions import parse_step

    # the sentences of `locinsert edit`, one removal: "the cup" -> "remove the cup"; a sequence is an error
    step = parse_step(args.instruction, verb="remove", hint="use locinsert edit for several steps or other verbs")
    return run_edit(args, [step], "remove")
