"""Train a ``TextMaskModel`` on ``transformers.Trainer``: the synthetic world or PIPE's object masks.

``run_textmask`` is what ``training/textmask.py`` and ``locinsert train textmask`` call. It follows the
location stages' rules (``locinsert.training.stages``): a YAML config read by trl's ``TrlParser``
(command-line flags override it), checkpoints that are complete or invisible and pickle-free
(``AtomicCheckpointCallback`` + ``SafeCheckpointMixin``), an interrupted run resumes from its last
complete checkpoint, the final model is saved atomically to ``<output_dir>/final``, and a
``run_summary.json`` records the run. On the synthetic world it then measures mask quality on
held-out scenes next to the no-image baselines and writes ``mask_quality.json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from ..training.trainer_logs import BoundedLogsMixin
from ..training.checkpoints import (AtomicCheckpointCallback, SafeCheckpointMixin, discard_incomplete_checkpoints,
                                    resolve_resume, save_final_model, write_json_atomic)

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
SUMMARY_FILE = "run_summary.json"
QUALITY_FILE = "mask_quality.json"


@dataclass
class TextMaskModelArguments:
    """Which mask model to start from."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "A saved TextMaskModel (folder or hub id) to continue from. If unset, a new one from `preset`."})
    preset: str = field(default="synthetic", metadata={"help": "TextMaskConfig preset: tiny, synthetic or base."})
    pretrained_encoders: bool = field(default=True, metadata={
        "help": "For a new model: load the preset's ResNet / CLIP text weights from the hub ('base' only)."})
    preset_overrides: dict | str | None = field(default=None, metadata={
        "help": "Extra TextMaskConfig fields for a new model, as a mapping (YAML) or JSON string."})


@dataclass
class TextMaskDataArguments:
    """Which (image, text, mask) examples to train on."""

    dataset: str = field(default="synthetic", metadata={
        "help": "'synthetic' (exact masks of the procedural world) or a PIPE hub id / local parquet folder."})
    masks_dataset: str | None = field(default="paint-by-inpaint/PIPE_Masks", metadata={
        "help": "PIPE only: the object-mask dataset joined on (target_img_dataset, img_id, ann_id)."})
    train_split: str = field(default="train", metadata={"help": "PIPE split to train on."})
    max_train_examples: int | None = field(default=None, metadata={"help": "Use at most this many examples."})
    location_words: bool = field(default=True, metadata={
        "help": "PIPE: append the row's object_location words to the class text where it has them."})
    synthetic_scenes: int = field(default=800, metadata={"help": "Synthetic world: training scenes (~5.6 texts each)."})
    synthetic_seed: int = field(default=0, metadata={"help": "Synthetic world: seed."})
    synthetic_size: int = field(default=64, metadata={"help": "Synthetic world: image side in pixels."})
    eval_scenes: int = field(default=200, metadata={
        "help": "Synthetic world: held-out scenes for the mask-quality table after training (0: skip)."})
    hflip: bool = field(default=True, metadata={
        "help": "Also train on every example mirrored, with 'left' and 'right' swapped in its text."})


@dataclass
class TextMaskTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with defaults that train the synthetic preset in about a minute on one CPU thread."""

    output_dir: str | None = field(default="runs/textmask", metadata={"help": "Checkpoints and the final model."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Batch size per device."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup steps (a float < 1 is a ratio)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    logging_steps: float = field(default=20, metadata={"help": "Log every N steps."})
    save_steps: float = field(default=200, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = field(default=1, metadata={"help": "Keep the N newest checkpoints."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Loggers (none, tensorboard...)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False (our collator)."})
    prediction_loss_only: bool = field(default=True, metadata={"help": "Eval computes the loss only."})
    label_names: list[str] | None = field(default_factory=lambda: ["labels"], metadata={"help": "Label keys."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Data-loading processes."})
    seed: int = field(default=0, metadata={"help": "Seed of model initialisation and data order."})
    bf16: bool = field(default=None, metadata={"help": "bf16 mixed precision (default: when the GPU supports it)."})

    def __post_init__(self):
        if self.bf16 is None:
            from ..training.config import _bf16_default

            self.bf16 = _bf16_default()
        super().__post_init__()


class TextMaskTrainer(BoundedLogsMixin, SafeCheckpointMixin, Trainer):
    """``Trainer`` whose loss is the model's own (BCE + Dice, a per-batch mean); resumes from pickle-free
    checkpoints. The Trainer divides that mean by the accumulation steps, as for ``BoxSFTTrainer``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss


@dataclass
class TextMaskResult:
    """What ``run_textmask`` returns (and writes to ``run_summary.json``)."""

    output_dir: str
    model_path: str
    global_step: int
    num_examples: int
    resumed_from: str | None
    train_metrics: dict = field(default_factory=dict)
    mask_quality: dict | None = None
    seconds: float = 0.0


def parse_textmask_args(argv: Sequence[str] | None = None, prog: str | None = None):
    """``[--config file.yaml] [--field value ...]`` -> (model, data, training) arguments."""
    from trl import TrlParser

    from ..training.config import use_cpu_for_multiprocess_without_gpu

    use_cpu_for_multiprocess_without_gpu()
    argv = list(argv) if argv is not None else None
    if argv is not None and "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ValueError("--config needs a YAML file path")
        if not os.path.isfile(argv[i + 1]):
            raise FileNotFoundError(f"config file not found: {argv[i + 1]}")
    parser = TrlParser((TextMaskModelArguments, TextMaskDataArguments, TextMaskTrainingArguments), prog=prog)
    model_args, data_args, training_args = parser.parse_args_and_config(argv)
    check_data_args(data_args)
    return model_args, data_args, training_args


def synthetic_textmask_args(output_dir: str, **overrides):
    """The arguments of ``training/configs/synthetic_textmask.yaml`` (the dataclass defaults) with
    ``output_dir`` and ``overrides``: ``run_textmask(*synthetic_textmask_args("runs/tm", seed=1))``."""
    argv = ["--output_dir", str(output_dir), "--disable_tqdm", "true"]
    for key, value in overrides.items():
        argv += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return parse_textmask_args(argv)


def check_data_args(data_args: TextMaskDataArguments) -> TextMaskDataArguments:
    if not data_args.dataset:
        raise ValueError("dataset is empty: give 'synthetic' or a PIPE hub id / parquet folder")
    for name in ("max_train_examples", "synthetic_scenes"):
        value = getattr(data_args, name)
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if data_args.eval_scenes < 0:
        raise ValueError(f"eval_scenes must be >= 0, got {data_args.eval_scenes}")
    return data_args


def build_textmask_model(model_args: TextMaskModelArguments):
    from .textmask import TextMaskConfig, TextMaskModel

    if model_args.model_name_or_path:
        return TextMaskModel.from_pretrained(model_args.model_name_or_path)
    overrides = model_args.preset_overrides or {}
    if isinstance(overrides, str):
        overrides = json.loads(overrides)
    return TextMaskModel(TextMaskConfig.preset(model_args.preset, pretrained=model_args.pretrained_encoders,
                                               **overrides))


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

        masks = data_args.masks_dataset
        masks = None if masks in (None, "", "none", "None") else masks
        if masks is None:
            raise ValueError("training a mask model on PIPE needs its object masks: set masks_dataset")
        # only rows with a real object mask (fallback=False: no image-difference regions)
        data = load_pipe(data_args.dataset, masks=masks, split=split, fallback=False, with_mask=True,
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


def _resume_target(training_args: TrainingArguments):
    value = training_args.resume_from_checkpoint
    if value is None:
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "none", "never"):
        return None
    return value


def run_textmask(model_args: TextMaskModelArguments, data_args: TextMaskDataArguments,
                 training_args: TextMaskTrainingArguments, callbacks: Sequence[TrainerCallback] = (),
                 evaluate: bool = True) -> TextMaskResult:
    """Train, save ``<output_dir>/final``, and (synthetic world, ``eval_scenes`` > 0) measure mask quality."""
    from .data import MaskDataset, collate_masks

    t0 = time.time()
    set_seed(training_args.seed)
    model = build_textmask_model(model_args)
    examples = load_mask_examples(data_args)
    dataset = MaskDataset(examples, model, hflip=data_args.hflip)
    trainer = TextMaskTrainer(model=model, args=training_args, train_dataset=dataset, data_collator=collate_masks,
                              callbacks=[AtomicCheckpointCallback(), *callbacks])
    if training_args.should_save:
        discard_incomplete_checkpoints(training_args.output_dir)
    trainer.accelerator.wait_for_everyone()
    resume = resolve_resume(training_args.output_dir, _resume_target(training_args))
    if resume:
        logger.info("resuming textmask from %s", resume)
    out = trainer.train(resume_from_checkpoint=resume)
    path = save_final_model(trainer, os.path.join(training_args.output_dir, FINAL_DIR))
    quality = None
    if evaluate and data_args.dataset == "synthetic" and data_args.eval_scenes > 0 and training_args.should_save:
        quality = mask_quality(trainer.model, data_args, examples, progress=not training_args.disable_tqdm)
        write_json_atomic(os.path.join(training_args.output_dir, QUALITY_FILE), quality)
    result = TextMaskResult(output_dir=training_args.output_dir, model_path=path,
                            global_step=trainer.state.global_step, num_examples=len(dataset), resumed_from=resume,
                            train_metrics={k: float(v) for k, v in out.metrics.items()}, mask_quality=quality,
                            seconds=round(time.time() - t0, 2))
    if training_args.should_save:
        write_json_atomic(os.path.join(training_args.output_dir, SUMMARY_FILE), asdict(result))
    return result


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Entry point of ``training/textmask.py`` and ``locinsert train textmask``."""
    from .evaluate import format_mask_table

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_args, data_args, training_args = parse_textmask_args(sys.argv[1:] if argv is None else argv, prog)
    result = run_textmask(model_args, data_args, training_args)
    if training_args.should_save:
        summary = {k: v for k, v in asdict(result).items() if k != "mask_quality"}
        print(json.dumps(summary, indent=2))
        if result.mask_quality:
            print(format_mask_table(result.mask_quality))
    return 0
