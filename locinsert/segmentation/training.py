"""Train a ``TextMaskModel`` on ``transformers.Trainer``: the synthetic world or PIPE's object masks.

``run_textmask`` is what ``training/textmask.py`` and ``locinsert train textmask`` call. This module
supplies the model, the (image, text, mask) data and the collator; ``locinsert.training.runner`` runs
them as it runs the location stages (a YAML config with command-line overrides, pickle-free
checkpoints that are complete or invisible, resume, the atomic ``<output_dir>/final``, one
``run_summary.json``). On the synthetic world it then measures mask quality on held-out scenes next
to the no-image baselines and writes ``mask_quality.json`` (also the summary's ``evaluation``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

from transformers import TrainerCallback, TrainingArguments

from ..io import write_json_atomic
from ..training.runner import (PresetModelArguments, RunDefaults, RunParts, RunSummary, arg, check_positive,
                               config_argv, parse_config, preset_overrides, print_summary, run_training)

logger = logging.getLogger(__name__)

QUALITY_FILE = "mask_quality.json"


@dataclass
class TextMaskModelArguments(PresetModelArguments):
    """Which mask model to start from (a ``TextMaskConfig`` preset; only 'base' loads pretrained weights)."""


@dataclass
class TextMaskDataArguments:
    """Which (image, text, mask) examples to train on; impossible values are a ``ValueError`` naming the field."""

    dataset: str = arg("synthetic", "'synthetic' (exact masks of the procedural world) or a PIPE hub id / local "
                       "parquet folder.")
    masks_dataset: str | None = arg("paint-by-inpaint/PIPE_Masks", "PIPE only: the object-mask dataset joined on "
                                    "(target_img_dataset, img_id, ann_id).")
    train_split: str = arg("train", "PIPE split to train on.")
    max_train_examples: int | None = arg(None, "Use at most this many examples.")
    location_words: bool = arg(True, "PIPE: append the row's object_location words (if any) to the class text.")
    synthetic_scenes: int = arg(800, "Synthetic world: training scenes (~5.6 texts each).")
    synthetic_seed: int = arg(0, "Synthetic world: seed.")
    synthetic_size: int = arg(64, "Synthetic world: image side in pixels.")
    eval_scenes: int = arg(200, "Synthetic world: held-out scenes for the mask-quality table after training (0: skip).")
    hflip: bool = arg(True, "Also train on every example mirrored, with 'left' and 'right' swapped in its text.")

    def __post_init__(self):
        if not self.dataset:
            raise ValueError("dataset is empty: give 'synthetic' or a PIPE hub id / parquet folder")
        check_positive(self, "max_train_examples", "synthetic_scenes")
        if self.eval_scenes < 0:
            raise ValueError(f"eval_scenes must be >= 0, got {self.eval_scenes}")


@dataclass
class TextMaskTrainingArguments(RunDefaults, TrainingArguments):
    """``TrainingArguments`` with defaults that train the synthetic preset in about a minute on one CPU thread."""

    output_dir: str | None = arg("runs/textmask", "Checkpoints and the final model.")
    learning_rate: float = arg(3e-3, "Peak AdamW learning rate.")
    per_device_train_batch_size: int = arg(16, "Batch size per device.")
    warmup_steps: float = arg(0.05, "Warmup steps (a float < 1 is a ratio).")
    weight_decay: float = arg(0.01, "AdamW weight decay.")
    logging_steps: float = arg(20, "Log every N steps.")
    save_steps: float = arg(200, "Checkpoint every N steps.")
    save_total_limit: int | None = arg(1, "Keep the N newest checkpoints.")
    label_names: list[str] | None = arg(help="Label keys.", default_factory=lambda: ["labels"])
    dataloader_num_workers: int = arg(0, "Data-loading processes.")
    seed: int = arg(0, "Seed of model initialisation and data order.")


def parse_textmask_args(argv: Sequence[str] | None = None, prog: str | None = None):
    """``[--config file.yaml] [--field value ...]`` -> (model, data, training) arguments."""
    return parse_config((TextMaskModelArguments, TextMaskDataArguments, TextMaskTrainingArguments), argv, prog)


def synthetic_textmask_args(output_dir: str, **overrides):
    """The arguments of ``training/configs/synthetic_textmask.yaml`` (the dataclass defaults) with
    ``output_dir`` and ``overrides``: ``run_textmask(*synthetic_textmask_args("runs/tm", seed=1))``."""
    return parse_textmask_args(config_argv(output_dir=output_dir, disable_tqdm=True, **overrides))


def build_textmask_model(model_args: TextMaskModelArguments):
    from .textmask import TextMaskConfig, TextMaskModel

    if model_args.model_name_or_path:
        return TextMaskModel.from_pretrained(model_args.model_name_or_path)
    return TextMaskModel(TextMaskConfig.preset(model_args.preset, pretrained=model_args.pretrained_encoders,
                                               **preset_overrides(model_args)))


def load_mask_examples(data_args: TextMaskDataArguments, split: str = "train"):
    """The (image, text, mask) examples the arguments describe; ``split="test"``: held-out synthetic scenes."""
    from .data import pipe_mask_examples, synthetic_mask_examples

    if data_args.dataset == "synthetic":
        if split == "test":
            return synthetic_mask_examples(data_args.eval_scenes, seed=data_args.synthetic_seed,
                                           size=data_args.synthetic_size, stream="textmask-test")
        examples = synthetic_mask_examples(data_args.synthetic_scenes, seed=data_args.synthetic_seed,
                                           size=data_args.synthetic_size, stream="textmask")
    else:
        from ..data.pipe import load_pipe

        if str(data_args.masks_dataset or "").lower() in ("", "none"):
            raise ValueError("training a mask model on PIPE needs its object masks: set masks_dataset")
        # only rows with a real object mask (fallback=False: no image-difference regions)
        data = load_pipe(data_args.dataset, masks=data_args.masks_dataset, split=split, fallback=False, with_mask=True,
                         keep_target=True, keep_columns=["object_location"] if data_args.location_words else [])
        logger.info("PIPE %s: %s", split, data.report)
        examples = pipe_mask_examples(data.dataset, limit=data_args.max_train_examples,
                                      location_words=data_args.location_words)
    if data_args.max_train_examples is not None:
        examples = examples[:data_args.max_train_examples]
    if not examples:
        raise ValueError(f"dataset {data_args.dataset!r} split {split!r} gave no mask examples")
    return examples


def mask_quality(model, data_args: TextMaskDataArguments, train_examples=None, progress: bool = False) -> dict:
    """IoU / Dice of ``model`` on held-out synthetic scenes, next to the region and class-prior baselines."""
    from .evaluate import ClassPriorBaseline, RegionBaseline, evaluate_segmenter
    from .textmask import TextMaskSegmenter

    test = load_mask_examples(data_args, split="test")
    if train_examples is None:
        train_examples = load_mask_examples(data_args)
    prior = ClassPriorBaseline(size=data_args.synthetic_size).fit(train_examples)
    return {
        "text mask model": evaluate_segmenter(TextMaskSegmenter(model), test, progress=progress),
        "class prior (no image)": evaluate_segmenter(prior, test),
        "region (no image)": evaluate_segmenter(RegionBaseline(), test),
    }


def run_textmask(model_args: TextMaskModelArguments, data_args: TextMaskDataArguments,
                 training_args: TextMaskTrainingArguments, callbacks: Sequence[TrainerCallback] = (),
                 evaluate: bool = True) -> RunSummary:
    """Train, save ``<output_dir>/final``, and (synthetic world, ``eval_scenes`` > 0) measure mask quality."""
    from .data import MaskDataset, collate_masks

    def build() -> RunParts:
        model = build_textmask_model(model_args)
        examples = load_mask_examples(data_args)

        def quality(trained) -> dict | None:
            if not (evaluate and data_args.dataset == "synthetic" and data_args.eval_scenes > 0):
                return None
            table = mask_quality(trained, data_args, examples, progress=not training_args.disable_tqdm)
            write_json_atomic(os.path.join(training_args.output_dir, QUALITY_FILE), table)
            return table

        return RunParts(model=model, train_dataset=MaskDataset(examples, model, hflip=data_args.hflip),
                        data_collator=collate_masks, evaluate=quality)

    return run_training("textmask", training_args, build, callbacks)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Entry point of ``training/textmask.py`` and ``locinsert train textmask``."""
    from .evaluate import format_mask_table

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_args, data_args, training_args = parse_textmask_args(argv, prog)
    result = run_textmask(model_args, data_args, training_args)
    print_summary(result, training_args)
    if training_args.should_save and result.evaluation:
        print(format_mask_table(result.evaluation))
    return 0
