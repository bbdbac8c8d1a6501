"""Training: supervised box cross-entropy (pretrain, finetune), DPO, checkpoints and stage runners.

Everything runs on ``transformers.Trainer`` (so on ``accelerate``: CPU, one or many GPUs, many nodes
under ``torchrun`` / ``accelerate launch``). Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # what static tools read; at run time the names load on first use
    from .losses import dpo_loss, preference_loss
    from .runner import ModelLossTrainer, RunParts, RunSummary, run_training, NonFiniteTrainingError
    from .dpo import BoxDPOTrainer
    from .datasets import BoxDataset, PairDataset, collate
    from .config import ModelArguments, DataArguments, SFTArguments, DPOArguments, load_stage_config, parse_stage_args
    from .checkpoints import AtomicCheckpointCallback, last_checkpoint, save_final_model
    from .stages import run_stage, StageResult
    from .synthetic import run_synthetic_stages, SYNTHETIC_BUDGETS, synthetic_stage_args, learning_table
    from .encoder import run_encoder_stage, dense_metrics

_EXPORTS = {
    "dpo_loss": "locinsert.training.losses",
    "preference_loss": "locinsert.training.losses",
    "ModelLossTrainer": "locinsert.training.runner",
    "RunParts": "locinsert.training.runner",
    "RunSummary": "locinsert.training.runner",
    "run_training": "locinsert.training.runner",
    "NonFiniteTrainingError": "locinsert.training.runner",
    "BoxDPOTrainer": "locinsert.training.dpo",
    "BoxDataset": "locinsert.training.datasets",
    "PairDataset": "locinsert.training.datasets",
    "collate": "locinsert.training.datasets",
    "ModelArguments": "locinsert.training.config",
    "DataArguments": "locinsert.training.config",
    "SFTArguments": "locinsert.training.config",
    "DPOArguments": "locinsert.training.config",
    "load_stage_config": "locinsert.training.config",
    "parse_stage_args": "locinsert.training.config",
    "AtomicCheckpointCallback": "locinsert.training.checkpoints",
    "last_checkpoint": "locinsert.training.checkpoints",
    "save_final_model": "locinsert.training.checkpoints",
    "run_stage": "locinsert.training.stages",
    "StageResult": "locinsert.training.stages",
    "run_synthetic_stages": "locinsert.training.synthetic",
    "SYNTHETIC_BUDGETS": "locinsert.training.synthetic",
    "synthetic_stage_args": "locinsert.training.synthetic",
    "learning_table": "locinsert.training.synthetic",
    "run_encoder_stage": "locinsert.training.encoder",
    "dense_metrics": "locinsert.training.encoder",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
