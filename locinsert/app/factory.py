"""Assemble the page: the model the demo trained (or any checkpoint), the inpainter, example scenes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from .operations import AddObject, MoveObject, RemoveObject
from .session import EditSession

__all__ = ["DEMO_STAGES", "find_demo_model", "example_scenes", "session_factory", "create_app"]

#: Where ``locinsert demo --out DIR`` leaves its models, most refined first.
DEMO_STAGES = ("dpo", "finetune", "pretrain")


def find_demo_model(demo_dir: str | os.PathLike = "locinsert-demo") -> Path | None:
    """The most refined model ``locinsert demo`` wrote into ``demo_dir`` (``models/<stage>/final``), or None."""
    for stage in DEMO_STAGES:
        folder = Path(demo_dir) / "models" / stage / "final"
        if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
            return folder
    return None


def example_scenes(folder: str | os.PathLike, n: int = 4, size: int = 128, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` synthetic-world scenes saved as PNGs in ``folder``, each with an instruction the demo uses."""
    from ..data.synthetic import make_scenes
    from ..demo.run import EDIT_PROMPTS
    from ..io import save_image_atomic
    from PIL import Image

    out = []
    Path(folder).mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(make_scenes(n, seed=seed, size=size, stream="app-examples")):
        path = Path(folder) / f"scene_{i + 1}.png"
        save_image_atomic(Image.fromarray(scene.render()), path)
        out.append((str(path), EDIT_PROMPTS[(i + 1) % len(EDIT_PROMPTS)]))
    return out


def session_factory(model, inpainter, *, objects: Sequence[str] | None = None, num_candidates: int = 8,
                    heatmap_samples: int = 256, segmenter=None, remover=None,
                    **sample_kwargs) -> Callable[[], EditSession]:
    """A function making fresh ``EditSession``s that share the models (one session per browser tab).

    The sessions add (``model`` + ``inpainter``), remove and move objects. Removing and moving find
    the object by its name with ``segmenter`` (``locinsert.segmentation``); without one, those steps
    are refused with a message saying what to pass. ``remover`` fills holes (default: ``BiharmonicFill``).
    """
    from ..editing.editor import ObjectEditor

    editor = ObjectEditor(model, inpainter, segmenter, remover, num_candidates=num_candidates, **sample_kwargs)
    ops = {"add": AddObject(editor.inserter, objects), "remove": RemoveObject(editor), "move": MoveObject(editor)}

    def make_session() -> EditSession:
        return EditSession(ops, num_candidates=num_candidates, heatmap_samples=heatmap_samples)

    make_session()   # bad settings fail here, not in the first request
    return make_session


def create_app(model, inpainter, *, objects: Sequence[str] | None = None, num_candidates: int = 8,
               heatmap_samples: int = 256, segmenter=None, remover=None,
               examples: list[tuple[str, str]] | None = None, info: str = "",
               warning: str | None = None, record_info: dict | None = None, **sample_kwargs):
    """The Gradio page for ``model`` (a ``LocationModel``) and ``inpainter`` (any ``inpaint`` backend).

    ``objects`` limits what can be added (a cut-out backend with per-class sprites); ``segmenter`` and
    ``remover`` let the page remove and move objects (see ``session_factory``); extra keywords
    (``temperature``, ``top_k``, ``top_p``, ``min_size``) go to sampling. Serve it with
    ``launch_app(page)``.
    """
    from .page import build_app

    make_session = session_factory(model, inpainter, objects=objects, num_candidates=num_candidates,
                                   heatmap_samples=heatmap_samples, segmenter=segmenter, remover=remover,
                                   **sample_kwargs)
    return build_app(make_session, info=info, warning=warning, examples=examples, record_info=record_info,
                     default_candidates=num_candidates)
