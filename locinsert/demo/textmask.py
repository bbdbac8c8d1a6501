"""The demo's text-mask step: train the segmenter that ``locinsert app`` removes and moves with.

``locinsert demo`` trains a ``TextMaskModel`` on the synthetic world (``locinsert train textmask``'s
synthetic recipe, sized per budget) into ``<out>/models/textmask/final``, and measures it on
held-out scenes next to the no-image baselines. ``locinsert app`` started afterwards finds it there
(:func:`find_demo_segmenter`) and finds objects by name with it, offline and with no flags.

The segmenter does not depend on the location model, so on a machine with a core to spare the demo
trains it in a second process beside pretraining (:func:`start_demo_textmask`), off the critical path.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TEXTMASK_BUDGETS", "TEXTMASK_DIR", "train_demo_textmask", "start_demo_textmask", "find_demo_segmenter",
           "report_lines"]

#: Overrides of the synthetic text-mask recipe per demo budget (the default is the recipe itself:
#: 800 scenes, one epoch at batch 16, about a CPU minute).
TEXTMASK_BUDGETS = {"quick": dict(synthetic_scenes=60, eval_scenes=20),
                    "default": dict(synthetic_scenes=800, eval_scenes=200)}
#: Where the demo puts the segmenter, under its report folder.
TEXTMASK_DIR = os.path.join("models", "textmask")


def train_demo_textmask(out_dir: str | os.PathLike, budget: str = "default", seed: int = 0,
                        progress: bool = True) -> dict:
    """Train the demo's segmenter into ``<out_dir>/models/textmask`` and return what it measured.

    Args:
        out_dir: the demo's report folder.
        budget: ``quick`` or ``default`` (:data:`TEXTMASK_BUDGETS`).
        seed: seed of the scenes and of training.
        progress: show the Trainer's progress bar.

    Returns:
        ``{"examples", "steps", "seconds", "quality"}``; ``quality`` is ``mask_quality``'s table.

    Raises:
        ValueError: an unknown budget.
    """
    from ..segmentation.training import run_textmask, synthetic_textmask_args

    if budget not in TEXTMASK_BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {sorted(TEXTMASK_BUDGETS)}")
    folder = Path(out_dir) / TEXTMASK_DIR
    args = synthetic_textmask_args(str(folder), seed=seed, synthetic_seed=1000 * seed + 11,
                                   save_steps=100_000, **TEXTMASK_BUDGETS[budget])
    args[2].disable_tqdm = not progress
    result = run_textmask(*args)
    return {"examples": result.num_examples, "steps": result.global_step, "seconds": result.seconds,
            "examples_per_s": result.train_metrics.get("train_samples_per_second"),
            "quality": result.evaluation}


def start_demo_textmask(out_dir: str | os.PathLike, budget: str = "default", seed: int = 0):
    """Start :func:`train_demo_textmask` in another process (``locinsert.demo.beside.Beside``, one thread)
    and return the job at once; its ``result()`` is the function's dict plus ``wall_seconds``.

    Raises:
        ValueError: an unknown budget (here, not in the other process).
    """
    from .beside import Beside

    if budget not in TEXTMASK_BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {sorted(TEXTMASK_BUDGETS)}")
    return Beside(train_demo_textmask, str(out_dir), budget, seed, False)


def find_demo_segmenter(demo_dir: str | os.PathLike = "locinsert-demo") -> Path | None:
    """The text-mask model ``locinsert demo`` trained into ``demo_dir``, or None."""
    folder = Path(demo_dir) / TEXTMASK_DIR / "final"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    return None


def report_lines(section: dict) -> list[str]:
    """The report.md section: mask quality per class, model and baselines."""
    q = section.get("quality") or {}
    lines = ["", "## Finding objects by name (the app's segmenter)", "",
             f"A `TextMaskModel` trained on {section['examples']} (image, text, mask) examples of the synthetic",
             f"world ({section['steps']} steps) into `{TEXTMASK_DIR}/final`: `locinsert app` uses it to remove and",
             "move objects named in an instruction. Mask IoU on held-out scenes, next to baselines that do not",
             "look at the image:", ""]
    if not q:
        return lines + ["(not measured)"]
    names = list(q)
    classes = sorted(q[names[0]]["classes"])
    lines += ["| class | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for c in classes + ["all"]:
        row = q[names[0]]["classes"][c] if c != "all" else q[names[0]]["all"]
        cells = [f"{(q[m]['classes'][c] if c != 'all' else q[m]['all'])['iou']:.3f}" for m in names]
        lines.append(f"| {c} | {row['n']} | " + " | ".join(cells) + " |")
    return lines
