"""The life cycle of every ``Trainer``-based training run, written once.

A stage supplies its model, data and collator as :class:`RunParts`; :func:`run_training` checks the
arguments, seeds, resumes (never from non-finite weights), trains until ``max_steps`` or the first NaN or
inf gradient, saves ``final`` atomically, evaluates and writes ``run_summary.json`` (:class:`RunSummary`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from ..io import check_output_dir
from ..threads import use_free_threads
from .trainer_logs import BoundedLogsMixin
from .checkpoints import (AtomicCheckpointCallback, SafeCheckpointMixin, checkpoint_step,
                          discard_incomplete_checkpoints, resolve_resume, save_final_model, write_json_atomic)

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
SUMMARY_FILE = "run_summary.json"


class NonFiniteTrainingError(ValueError):
    """A loss, a gradient or a weight became NaN or inf: the run stopped and wrote no final model."""


def arg(default: Any = MISSING, help: str = "", **kwargs: Any) -> Any:
    """A config dataclass field with its ``--help`` text (what trl's ``TrlParser`` shows).

    argparse expands a help text with %-formatting, so a plain "80 % of" would break ``--help``
    for the whole stage: the text is escaped here and reads as written."""
    return field(default=default, metadata={"help": help.replace("%", "%%")}, **kwargs)


def check_positive(config: Any, *names: str) -> None:
    """``ValueError`` naming the first of the fields ``names`` of ``config`` that is set but not > 0."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


@dataclass
class PresetModelArguments:
    """What a run's model starts from: a saved model, or a new one of a config preset (``preset_overrides``)."""

    model_name_or_path: str | None = arg(None, "A saved model (folder or hub id) to continue from, e.g. the previous "
                                         "stage's '<output_dir>/final'. Unset: a new one from `preset`.")
    preset: str = arg("synthetic", "The config preset of a new model: tiny, synthetic or base.")
    pretrained_encoders: bool = arg(True, "For a new model: load the preset's pretrained encoder weights from the hub "
                                    "(False: same shapes, random weights, offline).")
    preset_overrides: dict | str | None = arg(None, "Extra config fields for a new model, as a mapping (YAML) or "
                                              "JSON string.")


@dataclass
class RunDefaults:
    """``TrainingArguments`` defaults every stage shares; put first in the bases of a stage's arguments
    (``class SFTArguments(RunDefaults, TrainingArguments)``) and override what differs."""

    num_train_epochs: float = arg(1.0, "Epochs.")
    lr_scheduler_type: str = arg("cosine", "Learning-rate schedule.")
    report_to: None | str | list[str] = arg("none", "Loggers (none, tensorboard...).")
    remove_unused_columns: bool = arg(False, "False: the collator builds batches.")
    prediction_loss_only: bool = arg(True, "Eval computes the loss only.")
    bf16: bool | None = arg(None, "bf16 (default: when the GPU supports it).")

    def __post_init__(self):
        if self.bf16 is None:  # when the GPU supports it, never on a CPU
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        super().__post_init__()


class ModelLossTrainer(BoundedLogsMixin, SafeCheckpointMixin, Trainer):
    """``transformers.Trainer`` on the model's own ``outputs.loss`` (a per-batch mean, which the Trainer divides
    by the accumulation steps: GA=2 x batch 2 trains like GA=1 x batch 4); resumes from pickle-free checkpoints."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # else the Trainer passes num_items_in_batch (forward takes **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's own ``loss`` output (and the outputs, when ``return_outputs``)."""
        outputs = model(**inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss


def preset_overrides(model_args) -> dict:
    """A stage's ``preset_overrides`` as a mapping (a YAML config gives one, the command line a JSON string)."""
    value = model_args.preset_overrides or {}
    return json.loads(value) if isinstance(value, str) else dict(value)


def non_finite_names(named_tensors) -> list[str]:
    """The names of the tensors in ``(name, tensor)`` pairs that hold a NaN or inf."""
    return [name for name, t in named_tensors if t.is_floating_point() and not torch.isfinite(t).all()]


class FiniteGradientCallback(TrainerCallback):
    """Stops the run before an optimizer step on NaN or inf gradients (so on a NaN or inf loss too).

    Checked after DDP's averaging, so every process stops at the same step; not under fp16 loss scaling.
    """

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is None or args.fp16:
            return control
        grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        if grads and not torch.stack([torch.isfinite(g).all() for _, g in grads]).all():
            bad = non_finite_names(grads)
            raise NonFiniteTrainingError(
                f"the gradient of {bad[0]} (and {len(bad) - 1} more) is NaN or inf at step {state.global_step + 1}: "
                f"training diverged (learning_rate={args.learning_rate}); lower the learning rate or check the data")
        return control


class FreeThreadsCallback(TrainerCallback):
    """Trains on the threads background processes leave free (``locinsert.threads.use_free_threads``): set
    at the start of the run, then checked every ``every`` steps (the demo's segmenter ends mid-pretraining)."""

    def __init__(self, every: int = 20):
        self.every = every

    def on_train_begin(self, args, state, control, **kwargs):
        use_free_threads()

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            use_free_threads()


class RankLogCallback(TrainerCallback):
    """Each process records what it did (rank, world size, optimizer steps, seconds) in ``ranks/``."""

    def __init__(self):
        self.steps = 0
        self.start = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1

    def on_train_end(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, "ranks")
        os.makedirs(folder, exist_ok=True)
        write_json_atomic(os.path.join(folder, f"rank-{args.process_index}.json"), {
            "rank": args.process_index, "world_size": args.world_size, "steps_this_session": self.steps,
            "global_step": state.global_step, "seconds": round(time.time() - self.start, 3)})


@dataclass
class RunParts:
    """What a stage supplies to :func:`run_training`: model, data, collator, the ``Trainer`` class (with
    ``SafeCheckpointMixin``) and its keywords (DPO: ``ref_model``), and ``evaluate(model)``, run after the
    final save on the main process (the summary's ``evaluation``)."""

    model: Any
    train_dataset: Any
    data_collator: Callable
    eval_dataset: Any = None
    trainer_class: type = ModelLossTrainer
    trainer_kwargs: dict = field(default_factory=dict)
    evaluate: Callable[[Any], dict | None] | None = None


@dataclass
class RunSummary:
    """What :func:`run_training` returns and writes to ``<output_dir>/run_summary.json``."""

    stage: str
    output_dir: str
    model_path: str
    global_step: int
    num_examples: int
    world_size: int
    resumed_from: str | None
    train_metrics: dict = field(default_factory=dict)
    evaluation: dict | None = None
    seconds: float = 0.0


def check_run_arguments(args) -> None:
    """Refuse, before any work, settings that cannot train: raises ``ValueError`` naming the field."""
    if not args.output_dir:
        raise ValueError("output_dir is empty: give a folder for the checkpoints and the final model")
    check_output_dir(args.output_dir, flag="output_dir")
    if args.max_steps == 0 or args.max_steps < -1:
        raise ValueError(f"max_steps must be a positive number of optimizer steps (or -1: use num_train_epochs), "
                         f"got {args.max_steps}")
    if args.max_steps == -1 and not (math.isfinite(args.num_train_epochs) and args.num_train_epochs > 0):
        raise ValueError(f"num_train_epochs must be a positive number when max_steps is not set, "
                         f"got {args.num_train_epochs}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate >= 0):
        raise ValueError(f"learning_rate must be a finite number >= 0, got {args.learning_rate}")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size != launched:
        raise ValueError(f"{launched} processes were launched but the Trainer sees world_size={args.world_size}: "
                         "each would train alone. Without GPUs set use_cpu: true (or launch with "
                         "`accelerate launch --cpu`)")


def check_finite_checkpoint(folder: str) -> None:
    """Refuse to resume from a checkpoint whose model weights hold NaN or inf."""
    from safetensors import safe_open

    for name in sorted(os.listdir(folder)):
        if name.startswith("model") and name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), framework="pt") as f:
                bad = non_finite_names((k, f.get_tensor(k)) for k in f.keys())
            if bad:
                raise NonFiniteTrainingError(
                    f"checkpoint {folder} has NaN or inf weights ({bad[0]}...): it comes from a diverged run. "
                    "Delete it, or start afresh with resume_from_checkpoint: never")


def _finished_at(checkpoint: str, args) -> bool:
    """True when ``checkpoint`` already holds the run's last step (killed before the final save)."""
    step = checkpoint_step(checkpoint) or 0
    if args.max_steps > 0:
        return step >= args.max_steps
    try:
        with open(os.path.join(checkpoint, "trainer_state.json")) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return False
    return state.get("max_steps", 0) > 0 and step >= state["max_steps"]


def run_training(stage: str, args: TrainingArguments, build: Callable[[], RunParts],
                 callbacks: Sequence[TrainerCallback] = ()) -> RunSummary:
    """Run one stage's training life cycle (see the module docstring) and return its summary.

    ``build`` is called after the checks and the seeding; ``callbacks`` run after the runner's own. Raises
    ``ValueError`` on impossible arguments (before any work) or a checkpoint that cannot be resumed, and
    :class:`NonFiniteTrainingError` when the loss, a gradient or the final weights became NaN or inf.
    """
    check_run_arguments(args)
    t0 = time.time()
    set_seed(args.seed)
    parts = build()
    trainer = parts.trainer_class(
        model=parts.model, args=args, train_dataset=parts.train_dataset, eval_dataset=parts.eval_dataset,
        data_collator=parts.data_collator, **parts.trainer_kwargs,
        callbacks=[AtomicCheckpointCallback(), RankLogCallback(), FiniteGradientCallback(), FreeThreadsCallback(),
                   *callbacks])
    if args.should_save:
        discard_incomplete_checkpoints(args.output_dir)
    trainer.accelerator.wait_for_everyone()
    unset = args.resume_from_checkpoint is None  # unset: the last complete checkpoint, if any
    resume = resolve_resume(args.output_dir, True if unset else args.resume_from_checkpoint)
    metrics: dict = {}
    if resume:
        check_finite_checkpoint(resume)
        logger.info("resuming %s from %s", stage, resume)
    if resume and _finished_at(resume, args):
        trainer._load_from_checkpoint(resume)  # the Trainer's own weight loader, as train() uses it
        step = checkpoint_step(resume)
    else:
        out = trainer.train(resume_from_checkpoint=resume)
        metrics, step = {k: float(v) for k, v in out.metrics.items()}, trainer.state.global_step
    bad = non_finite_names(trainer.model.named_parameters())
    if bad:
        raise NonFiniteTrainingError(f"{bad[0]} (and {len(bad) - 1} more) became NaN or inf: training diverged; "
                                     "no final model was written")
    path = save_final_model(trainer, os.path.join(args.output_dir, FINAL_DIR))
    evaluation = parts.evaluate(trainer.model) if parts.evaluate is not None and args.should_save else None
    summary = RunSummary(stage=stage, output_dir=args.output_dir, model_path=path, global_step=step,
                         num_examples=len(parts.train_dataset), world_size=args.world_size, resumed_from=resume,
                         train_metrics=metrics, evaluation=evaluation, seconds=round(time.time() - t0, 2))
    if args.should_save:
        write_json_atomic(os.path.join(args.output_dir, SUMMARY_FILE), asdict(summary))
    return summary


# -- configs ---------------------------------------------------------------------------------------

def parse_config(dataclass_types: Sequence[type], argv: Sequence[str] | None = None, prog: str | None = None):
    """``[--config file.yaml] [--field value ...]`` (default: ``sys.argv[1:]``) -> one instance per dataclass (trl's
    ``TrlParser``); flags override the file; a missing or malformed file is a ``FileNotFoundError`` / ``ValueError``."""
    import yaml
    from trl import TrlParser

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # torchrun without GPUs: as `accelerate launch --cpu`, one CPU DDP group instead of each process alone
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ValueError("--config needs a YAML file path")
        if not os.path.isfile(argv[i + 1]):
            raise FileNotFoundError(f"config file not found: {argv[i + 1]}")
    parser = TrlParser(tuple(dataclass_types), prog=prog)
    try:
        return parser.parse_args_and_config(argv)
    except yaml.YAMLError as e:
        raise ValueError(f"config file is not valid YAML: {' '.join(str(e).split())}") from e
    except ValueError as e:
        if "Unknown arguments from config file" not in str(e):
            raise
        raise ValueError(f"config file has unknown keys ({str(e).split(':', 1)[1].split('.')[0].strip()}); "
                         f"`--help` lists the known ones") from None


def config_argv(config: str | None = None, **overrides) -> list[str]:
    """The command line of :func:`parse_config` for a config file and ``field=value`` overrides."""
    argv = ["--config", str(config)] if config is not None else []
    for key, value in overrides.items():
        value = json.dumps(value) if isinstance(value, dict) else value
        argv += [f"--{key}", *map(str, value if isinstance(value, (list, tuple)) else [value])]
    return argv


def print_summary(summary: RunSummary, args) -> None:
    """The run summary as JSON on stdout (main process only), without the evaluation tables."""
    if args.should_save:
        print(json.dumps({k: v for k, v in asdict(summary).items() if k != "evaluation"}, indent=2))
