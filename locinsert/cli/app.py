"""Start the web app: upload a picture, type what to add and where, see where the model thinks it can
go (numbered candidate boxes and a heatmap), click a box, insert, and download the PNG and its JSON.

Needs the app extra: pip install "locinsert[app]" (Gradio 6). Serves on http://127.0.0.1:7860 by
default; stop it with Ctrl-C. It uses only the local machine unless you pass --host 0.0.0.0.

Location model: --model CHECKPOINT (a folder or hub id). Without --model, the app uses the model
`locinsert demo` trained (<--demo-dir>/models/dpo/final), and says how to get one when there is
none. --model synthetic (or tiny) starts with an UNTRAINED random model: the page then shows a
warning, and its boxes are random.

The inpainter options are those of `locinsert insert`. The default cut-out backend draws the
synthetic world's objects (cup, chair, plant, painting, bird) offline; --cutout PNG draws your
cut-out; a diffusion --inpainter draws any object.

Removing and moving ("remove the cup on the left", "move the chair to the right") find the object
by its name with a text segmenter. Without --model, the app uses the one `locinsert demo` trained
next to its model (<--demo-dir>/models/textmask/final), offline. Otherwise pass --segmenter: clipseg
(zero-shot, any name; weights CIDAS/clipseg-rd64-refined, or --segmenter-model FOLDER offline) or
textmask (a model from `locinsert train textmask`, --segmenter-model FOLDER). Without any, the page
adds objects and says what to pass when asked to remove or move. Holes are filled by --remover (the options of
`locinsert edit`; default biharmonic, offline).

examples:
  locinsert demo --quick && locinsert app          # train small models first; the app adds, removes, moves
  locinsert app --model runs/dpo --inpainter gligen --device cuda
  locinsert app --model synthetic --port 7861      # no trained model: random boxes, with a warning
  locinsert app --segmenter clipseg                # also remove and move objects named in the instruction
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from . import options
from .common import RANDOM_PRESETS, check_device, load_location_model
from .edit import SEGMENTERS, add_remover_arguments, build_remover, build_segmenter
from .insert import add_inpainter_arguments, build_inpainter
from .propose import add_model_arguments, sample_kwargs

APP_EXTRA = 'pip install "locinsert[app]"'


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--demo-dir", default="locinsert-demo",
                   help="where `locinsert demo` wrote its report; its model is used when --model is not given "
                        "(default: %(default)s)")
    p.add_argument("-n", "--num-samples", "--num-candidates", dest="num_candidates", type=options.positive_int,
                   default=8, help="boxes sampled for each object, the candidates, at start (the page has a "
                                   "slider; default: 8)")
    p.add_argument("--heatmap-samples", type=options.non_negative_int, default=256,
                   help="boxes sampled for each heatmap; 0 = no heatmap (default: 256)")
    add_inpainter_arguments(p)
    f = p.add_argument_group("finding objects to remove or move")
    f.add_argument("--segmenter", choices=SEGMENTERS, default=None,
                   help="finds objects by name for remove and move: clipseg (zero-shot, default weights "
                        "CIDAS/clipseg-rd64-refined) or textmask (needs --segmenter-model); default: without --model, "
                        "the text-mask model the demo trained (<--demo-dir>/models/textmask/final), else none, "
                        "so the page only adds")
    f.add_argument("--segmenter-model", default=None, metavar="ID_OR_FOLDER",
                   help="hub id or local folder of the segmenter's weights")
    add_remover_arguments(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    g.add_argument("--port", type=options.port, default=7860, help="port, 1-65535 (default: %(default)s)")


def resolve_model_spec(args) -> tuple[str, str]:
    """(--model value to load, a line saying where it comes from)."""
    from ..app.factory import find_demo_model

    if args.model:
        return args.model, f"`{args.model}`"
    found = find_demo_model(args.demo_dir)
    if found is None:
        raise ValueError(
            f"no --model given and no model trained by the demo in {os.path.join(args.demo_dir, 'models')}: run "
            "`locinsert demo` first (about 5 minutes on a CPU; --quick about 1), or pass --model CHECKPOINT; "
            "`--model synthetic` starts with an UNTRAINED random model (random boxes)")
    return str(found), f"`{found}` (trained by `locinsert demo`)"


def demo_segmenter(args) -> tuple:
    """(segmenter, its name for the page) when the app runs on the demo's model and the demo trained a
    text-mask segmenter next to it; (None, None) otherwise (e.g. --model given: a segmenter trained on
    the synthetic world would not fit other pictures)."""
    from ..demo.textmask import find_demo_segmenter
    from ..segmentation import TextMaskSegmenter

    found = None if args.model else find_demo_segmenter(args.demo_dir)
    if found is None:
        return None, None
    try:
        return TextMaskSegmenter.from_pretrained(str(found), device=args.device), f"textmask (`{found}`, the demo's)"
    except OSError as e:
        raise ValueError(f"cannot load the demo's text-mask segmenter {found}: {e}; run `locinsert demo` again, "
                         "or pass --segmenter") from e


def page_parts(args) -> dict:
    """What the options describe: the loaded model, the inpainter and the page's texts, as keywords
    for ``locinsert.app.create_app`` (and ``session_factory``)."""
    from ..data.synthetic import CLASSES

    sampling = sample_kwargs(args)
    check_device(args.device)
    if args.segmenter_model and not args.segmenter:
        raise ValueError("--segmenter-model needs --segmenter clipseg or textmask")
    spec, where = resolve_model_spec(args)
    remover = build_remover(args)     # mistakes in these options fail before the location model loads
    segmenter, seg_name = (build_segmenter(args), args.segmenter) if args.segmenter else demo_segmenter(args)
    inpainter = build_inpainter(args, [])
    model = load_location_model(spec, args.device, args.seed)
    untrained = spec in RANDOM_PRESETS and not os.path.exists(spec)
    warning = None
    if untrained:
        warning = (f"the location model is an UNTRAINED random `{spec}` model, so its boxes and heatmap are random. "
                   "Run `locinsert demo` to train one (about 5 minutes on a CPU), then restart without --model.")
    sprites = args.inpainter == "cutout" and not args.cutout
    drawer = "cut-out sprites of " + ", ".join(CLASSES) if sprites else args.inpainter
    finder = (f"remove/move: {seg_name} segmenter, {args.remover} fill" if segmenter is not None else
              "remove/move: off (start with --segmenter clipseg to find objects by name)")
    return dict(model=model, inpainter=inpainter, objects=CLASSES if sprites else None,
                num_candidates=args.num_candidates, heatmap_samples=args.heatmap_samples,
                segmenter=segmenter, remover=remover,
                info=f"Location model: {where} · inpainter: {drawer} · {finder}", warning=warning,
                record_info={"model": spec, "untrained": untrained, "inpainter": args.inpainter,
                             "segmenter": seg_name, "remover": args.remover},
                **sampling)


def build_page(args, examples_dir: str | None = None):
    """The page the options describe, not yet served; ``examples_dir`` receives the example scenes."""
    from ..app.factory import create_app, example_scenes

    parts = page_parts(args)
    return create_app(examples=example_scenes(examples_dir) if examples_dir else None, **parts)


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print(f"locinsert app: error: the web app needs Gradio, an optional extra: {APP_EXTRA}", file=sys.stderr)
        return 2
    from ..app.page import launch_app

    with tempfile.TemporaryDirectory(prefix="locinsert-app-examples-") as examples_dir:
        page = build_page(args, examples_dir)
        print(f"locinsert app: open http://{args.host}:{args.port} in a browser (Ctrl-C stops it)", flush=True)
        try:
            launch_app(page, args.host, args.port, allowed_paths=[examples_dir], quiet=True)
        except KeyboardInterrupt:
            pass
        finally:
            page.close()
    return 0
