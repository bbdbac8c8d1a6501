"""Arguments of the training stages, read from YAML by trl's ``TrlParser`` (``--config file.yaml``).

A stage config is one flat YAML mapping whose keys are the fields of three dataclasses:

- ``ModelArguments``: what to start from (a saved model or a preset) and, for DPO, the reference;
- ``DataArguments``: which data (``synthetic``, a PIPE hub id / parquet folder, an OPA root) and how;
- the trainer's arguments: ``SFTArguments`` (a ``transformers.TrainingArguments``) for ``pretrain`` and
  ``finetune``, ``DPOArguments`` (trl's public ``DPOConfig``: ``beta``, ``loss_type``, ``loss_weights``,
  ``label_smoothing``, ``precompute_ref_log_probs``, ``disable_dropout``...) for ``dpo``.

Command-line flags override the file (``--learning_rate 1e-4``), as in trl's own scripts.
Defaults differ from upstream where upstream's are wrong for this model: trl's DPOConfig wants
``bf16=True`` even on a CPU, gradient checkpointing and lr 1e-6 (tuned for billion-parameter LMs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from transformers import TrainingArguments
from trl import DPOConfig

from .runner import RunDefaults, config_argv, parse_config

STAGES = ("pretrain", "finetune", "dpo")  # the location model's stages (the paper's three)
ENCODER_STAGE = "encoder"  # optional stage 0: the image tower on dense labels (training/encoder.py)
ALL_STAGES = (ENCODER_STAGE, *STAGES)
DATASET_FORMATS = ("auto", "synthetic", "pipe", "opa")


@dataclass
class ModelArguments:
    """Which location model a stage starts from."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "A saved LocationModel (folder or hub id) to continue from, e.g. the previous stage's "
                "'<output_dir>/final'. If unset, a new model is built from `preset`."})
    preset: str = field(default="synthetic", metadata={
        "help": "LocationModelConfig preset for a new model: tiny, synthetic or base."})
    pretrained_encoders: bool = field(default=True, metadata={
        "help": "For a new model: load the preset's pretrained ViT/CLIP/GPT-2 weights from the hub "
                "(False: same shapes, random weights, offline)."})
    preset_overrides: dict | str | None = field(default=None, metadata={
        "help": "Extra LocationModelConfig fields for a new model, as a mapping (YAML) or JSON string."})
    image_encoder_checkpoint: str | None = field(default=None, metadata={
        "help": "For a new model: the encoder stage's saved folder ('<output_dir>/final'); the image tower "
                "is loaded from it and frozen (any preset; its architecture must match the preset's)."})
    ref_model_name_or_path: str | None = field(default=None, metadata={
        "help": "DPO only: the frozen reference. Default: a frozen copy of the starting model."})
    region_conditioning: bool = field(default=False, metadata={
        "help": "Make the model region-conditioned, p(box | image, class, region) (a saved model without it gains "
                "a zero-initialised region embedding); train it with region_prob > 0."})


@dataclass
class DataArguments:
    """Which data a stage trains on."""

    dataset: str = field(default="synthetic", metadata={
        "help": "'synthetic' (the procedural world), a PIPE hub id or local parquet folder, or an OPA root."})
    dataset_format: str = field(default="auto", metadata={
        "help": "auto | synthetic | pipe | opa. auto: 'synthetic' by name, OPA when the folder holds OPA "
                "label files, else PIPE."})
    masks_dataset: str | None = field(default="paint-by-inpaint/PIPE_Masks", metadata={
        "help": "PIPE only: the masks dataset joined on (target_img_dataset, img_id, ann_id); "
                "'none' to use the source/target difference only."})
    opa_images: str | None = field(default=None, metadata={
        "help": "OPA only: folder of the background images when it is not the OPA root (FOPA pair labels)."})
    opa_categories: str | None = field(default=None, metadata={
        "help": "OPA only: fg_id -> category mapping (.json or two-column .csv) for FOPA pair labels."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default=None, metadata={"help": "Split for eval loss (optional)."})
    max_train_queries: int | None = field(default=None, metadata={
        "help": "Use at most this many queries (images x class) of the split: quick runs."})
    max_eval_queries: int | None = field(default=256, metadata={"help": "Cap on eval queries."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic world."})
    synthetic_scenes: int = field(default=4000, metadata={"help": "Synthetic world: scenes in the split."})
    synthetic_size: int = field(default=64, metadata={"help": "Synthetic world: image side in pixels."})
    hflip: bool = field(default=False, metadata={
        "help": "Augment with horizontal flips (boxes mirrored); placement plausibility is left/right symmetric."})
    boxes_per_image: int = field(default=1, metadata={
        "help": "Supervised stages: boxes per example, all of one image (several labelled objects of a scene); "
                "the image encoder and the decoder's image tokens run once for them. The synthetic PIPE-like "
                "split then labels this many objects (of different classes) per scene."})
    pairs_per_image: int = field(default=1, metadata={
        "help": "DPO: (positive, negative) pairs per example, all of one image; the image encoder and the "
                "decoder's image tokens run once for them."})
    pairs_per_query: int | None = field(default=16, metadata={
        "help": "DPO: at most this many (positive, negative) pairs per query (None: all)."})
    region_prob: float = field(default=0.0, metadata={
        "help": "Region-conditioned models: the share of boxes (DPO: pairs) trained with a random region around "
                "the box's centre (the others: the whole image). 0 trains no region."})
    feature_cache: str | None = field(default=None, metadata={
        "help": "Folder of the frozen-encoder feature cache. When set, features are computed once and training "
                "skips the ViT and CLIP text encoder."})


@dataclass
class LocationRunDefaults(RunDefaults):
    """Defaults the location stages share (supervised and DPO)."""

    per_device_train_batch_size: int = field(default=64, metadata={"help": "Examples (DPO: pairs) per device batch."})
    warmup_steps: float = field(default=0.03, metadata={"help": "Warmup steps (a float < 1 is a ratio)."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    save_steps: float = field(default=500, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep the N newest checkpoints."})
    ddp_find_unused_parameters: bool | None = field(default=False, metadata={"help": "DDP: no unused parameters."})


@dataclass
class SFTArguments(LocationRunDefaults, TrainingArguments):
    """``TrainingArguments`` with defaults for the supervised stages (pretrain on PIPE, finetune on OPA)."""

    output_dir: str | None = field(default="runs/sft", metadata={"help": "Where checkpoints and the final model go."})
    learning_rate: float = field(default=3e-4, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    label_names: list[str] | None = field(default_factory=lambda: ["box_tokens"],
                                          metadata={"help": "Batch keys that are labels."})


@dataclass
class DPOArguments(LocationRunDefaults, DPOConfig):
    """trl's ``DPOConfig`` with defaults for a small box model (see the module docstring).

    Supported ``loss_type`` entries: sigmoid (default), ipo, hinge, robust, and sft (the SFT term on the
    chosen box, weighted through ``loss_weights``, e.g. ``[sigmoid, sft]`` with ``[1.0, 0.2]``).
    """

    output_dir: str | None = field(default="runs/dpo", metadata={"help": "Where checkpoints and the final model go."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak AdamW learning rate."})
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": "Deprecated alias of "
                                                                                  "activation_checkpointing."})
    label_names: list[str] | None = field(default_factory=lambda: ["chosen_tokens"],
                                          metadata={"help": "Batch keys that are labels."})

    def __post_init__(self):
        super().__post_init__()
        from .losses import check_loss_types

        check_loss_types(self.loss_type, self.loss_weights, self.beta, self.label_smoothing)


def training_arguments_class(stage: str) -> type:
    """The trainer-arguments dataclass of a stage."""
    check_stage(stage)
    return DPOArguments if stage == "dpo" else SFTArguments


def check_stage(stage: str) -> str:
    if stage not in ALL_STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose one of {', '.join(ALL_STAGES)}")
    return stage


def parse_stage_args(stage: str, argv: Sequence[str] | None = None, prog: str | None = None
                     ) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse ``[--config file.yaml] [--field value ...]`` for ``stage`` into the three argument objects."""
    model_args, data_args, train_args = parse_config((ModelArguments, DataArguments, training_arguments_class(stage)),
                                                     argv, prog)
    check_data_args(data_args)
    return model_args, data_args, train_args


def load_stage_config(stage: str, config: str | None = None, **overrides
                      ) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Python counterpart of the scripts: ``load_stage_config("dpo", "cfg.yaml", learning_rate=1e-5)``."""
    return parse_stage_args(stage, config_argv(config, **overrides))


def check_data_args(data_args: DataArguments) -> DataArguments:
    if data_args.dataset_format not in DATASET_FORMATS:
        raise ValueError(f"dataset_format must be one of {DATASET_FORMATS}, got {data_args.dataset_format!r}")
    if not data_args.dataset:
        raise ValueError("dataset is empty: give 'synthetic', a PIPE hub id / parquet folder or an OPA root")
    for name in ("max_train_queries", "pairs_per_query", "synthetic_scenes", "boxes_per_image",
                 "pairs_per_image"):
        value = getattr(data_args, name)
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    return data_args
