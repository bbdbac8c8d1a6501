"""Training: supervised box cross-entropy (pretrain, finetune), DPO, checkpoints and stage runners.

Everything runs on ``transformers.Trainer`` (so on ``accelerate``: CPU, one or many GPUs, many nodes
under ``torchrun`` / ``accelerate launch``). Names are imported on first use.
"""

from __future__ import annotations

import importlib

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

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'locinsert.training' has no attribute {name!r}")
