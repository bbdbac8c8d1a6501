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

from dataclasses import dataclass
from typing import Sequence

from transformers import TrainingArguments
from trl import DPOConfig

from .runner import PresetModelArguments, RunDefaults, arg, check_positive, config_argv, parse_config

STAGES = ("pretrain", "finetune", "dpo")  # the location model's stages (the paper's three)
ENCODER_STAGE = "encoder"  # optional stage 0: the image tower on dense labels (training/encoder.py)
ALL_STAGES = (ENCODER_STAGE, *STAGES)
DATASET_FORMATS = ("auto", "synthetic", "pipe", "opa")


@dataclass
class ModelArguments(PresetModelArguments):
    """Which location model a stage starts from (a ``LocationModelConfig`` preset: ViT, CLIP text, GPT-2)."""

    image_encoder_checkpoint: str | None = arg(None, "For a new model: the encoder stage's saved folder "
                                               "('<output_dir>/final'); the image tower is loaded from it and frozen "
                                               "(any preset; its architecture must match the preset's).")
    ref_model_name_or_path: str | None = arg(None, "DPO only: the frozen reference. Default: a frozen copy of the "
                                             "starting model.")
    region_conditioning: bool = arg(False, "Make the model region-conditioned, p(box | image, class, region) (a saved "
                                    "model without it gains a zero-initialised region embedding); train it with "
                                    "region_prob > 0.")


@dataclass
class DataArguments:
    """Which data a stage trains on; impossible values are a ``ValueError`` naming the field."""

    dataset: str = arg("synthetic", "'synthetic' (the procedural world), a PIPE hub id or local parquet folder, or an "
                       "OPA root.")
    dataset_format: str = arg("auto", "auto | synthetic | pipe | opa. auto: 'synthetic' by name, OPA when the folder "
                              "holds OPA label files, else PIPE.")
    masks_dataset: str | None = arg("paint-by-inpaint/PIPE_Masks", "PIPE only: the masks dataset joined on "
                                    "(target_img_dataset, img_id, ann_id); 'none' to use the source/target difference "
                                    "only.")
    opa_images: str | None = arg(None, "OPA only: folder of the background images when it is not the OPA root (FOPA "
                                 "pair labels).")
    opa_categories: str | None = arg(None, "OPA only: fg_id -> category mapping (.json or two-column .csv) for FOPA "
                                     "pair labels.")
    train_split: str = arg("train", "Split to train on.")
    eval_split: str | None = arg(None, "Split for eval loss (optional).")
    max_train_queries: int | None = arg(None, "Use at most this many queries (images x class) of the split.")
    max_eval_queries: int | None = arg(256, "Cap on eval queries.")
    synthetic_seed: int = arg(0, "Seed of the synthetic world.")
    synthetic_scenes: int = arg(4000, "Synthetic world: scenes in the split.")
    synthetic_size: int = arg(64, "Synthetic world: image side in pixels.")
    hflip: bool = arg(False, "Augment with horizontal flips (boxes mirrored); placement plausibility is left/right "
                      "symmetric.")
    label_balance: float = arg(0.0, "Encoder stage: weight each part label's pixel loss by (1 / its pixel share in "
                               "the training scenes) ** label_balance. 0 is plain cross-entropy, where wall and floor "
                               "(80 % of the pixels) drown vases, table legs and crate edges; 0.5 lets them count.")
    boxes_per_image: int = arg(1, "Supervised stages: boxes per example, all of one image (several labelled objects of "
                               "a scene); the image encoder and the decoder's image tokens run once for them. The "
                               "synthetic PIPE-like split then labels this many objects (of different classes) per "
                               "scene.")
    synthetic_extra_boxes: str | None = arg(None, "Synthetic pretraining: comma-separated classes that get one more "
                                            "box in every scene, counted in boxes_per_image (e.g. 'cup' with "
                                            "boxes_per_image 6: five balanced boxes and a second cup). The class "
                                            "learned last then sees more examples at a sixth of a scene's cost.")
    pairs_per_image: int = arg(1, "DPO: (positive, negative) pairs per example, all of one image; the image encoder "
                               "and the decoder's image tokens run once for them.")
    pairs_per_query: int | None = arg(16, "DPO: at most this many (positive, negative) pairs per query (None: all).")
    region_prob: float = arg(0.0, "Region-conditioned models: the share of boxes (DPO: pairs) trained with a random "
                             "region around the box's centre (the others: the whole image). 0 trains no region.")
    feature_cache: str | None = arg(None, "Folder of the frozen-encoder feature cache. When set, features are computed "
                                    "once and training skips the ViT and CLIP text encoder.")

    def __post_init__(self):
        if self.dataset_format not in DATASET_FORMATS:
            raise ValueError(f"dataset_format must be one of {DATASET_FORMATS}, got {self.dataset_format!r}")
        if not self.dataset:
            raise ValueError("dataset is empty: give 'synthetic', a PIPE hub id / parquet folder or an OPA root")
        if not 0 <= self.label_balance <= 2:
            raise ValueError(f"label_balance must be a number in [0, 2], got {self.label_balance}")
        check_positive(self, "max_train_queries", "pairs_per_query", "synthetic_scenes", "boxes_per_image",
                       "pairs_per_image")
        if self.synthetic_extra_boxes and self.pipe_like_boxes()["boxes_per_scene"] < 1:
            raise ValueError(f"boxes_per_image={self.boxes_per_image} leaves no balanced box beside "
                             f"synthetic_extra_boxes={self.synthetic_extra_boxes!r}: it counts both")

    def pipe_like_boxes(self) -> dict:
        """The synthetic PIPE-like split's ``boxes_per_scene`` and ``extra_boxes`` (checked class names):
        ``boxes_per_image`` counts both."""
        from ..data.synthetic.oracle import CLASSES
        from ..data.synthetic.splits import check_extra_boxes

        extra = check_extra_boxes(self.synthetic_extra_boxes, CLASSES)
        return {"boxes_per_scene": self.boxes_per_image - len(extra), "extra_boxes": extra}


@dataclass
class LocationRunDefaults(RunDefaults):
    """Defaults the location stages share (supervised and DPO)."""

    per_device_train_batch_size: int = arg(64, "Examples (DPO: pairs) per device batch.")
    warmup_steps: float = arg(0.03, "Warmup steps (a float < 1 is a ratio).")
    logging_steps: float = arg(10, "Log every N steps.")
    save_steps: float = arg(500, "Checkpoint every N steps.")
    save_total_limit: int | None = arg(2, "Keep the N newest checkpoints.")
    ddp_find_unused_parameters: bool | None = arg(False, "DDP: no unused parameters.")


@dataclass
class SFTArguments(LocationRunDefaults, TrainingArguments):
    """``TrainingArguments`` with defaults for the supervised stages (pretrain on PIPE, finetune on OPA)."""

    output_dir: str | None = arg("runs/sft", "Where checkpoints and the final model go.")
    learning_rate: float = arg(3e-4, "Peak AdamW learning rate.")
    weight_decay: float = arg(0.01, "AdamW weight decay.")
    label_names: list[str] | None = arg(help="Batch keys that are labels.", default_factory=lambda: ["box_tokens"])


@dataclass
class DPOArguments(LocationRunDefaults, DPOConfig):
    """trl's ``DPOConfig`` with defaults for a small box model (see the module docstring).

    Supported ``loss_type`` entries: sigmoid (default), ipo, hinge, robust, and sft (the SFT term on the
    chosen box, weighted through ``loss_weights``, e.g. ``[sigmoid, sft]`` with ``[1.0, 0.2]``).
    """

    output_dir: str | None = arg("runs/dpo", "Where checkpoints and the final model go.")
    learning_rate: float = arg(2e-5, "Peak AdamW learning rate.")
    gradient_checkpointing: bool | None = arg(None, "Deprecated alias of activation_checkpointing.")
    label_names: list[str] | None = arg(help="Batch keys that are labels.", default_factory=lambda: ["chosen_tokens"])

    def __post_init__(self):
        super().__post_init__()
        from .losses import check_loss_types

        check_loss_types(self.loss_type, self.loss_weights, self.beta, self.label_smoothing)


def training_arguments_class(stage: str) -> type:
    """The trainer-arguments dataclass of a stage."""
    return DPOArguments if check_stage(stage) == "dpo" else SFTArguments


def check_stage(stage: str) -> str:
    if stage not in ALL_STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose one of {', '.join(ALL_STAGES)}")
    return stage


def parse_stage_args(stage: str, argv: Sequence[str] | None = None, prog: str | None = None
                     ) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse ``[--config file.yaml] [--field value ...]`` for ``stage`` into the three argument objects."""
    return parse_config((ModelArguments, DataArguments, training_arguments_class(stage)), argv, prog)


def load_stage_config(stage: str, config: str | None = None, **overrides
                      ) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Python counterpart of the scripts: ``load_stage_config("dpo", "cfg.yaml", learning_rate=1e-5)``."""
    return parse_stage_args(stage, config_argv(config, **overrides))
