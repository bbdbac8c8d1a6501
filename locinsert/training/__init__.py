"""Training: supervised box cross-entropy (pretrain, finetune), DPO, checkpoints and stage runners.

Everything runs on ``transformers.Trainer`` (so on ``accelerate``: CPU, one or many GPUs, many nodes
under ``torchrun`` / ``accelerate launch``). Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # the public names: static tools read them here, lazy_exports loads each on first use
    from .losses import dpo_loss, preference_loss
    from .runner import ModelLossTrainer, RunParts, RunSummary, run_training, NonFiniteTrainingError
    from .dpo import BoxDPOTrainer
    from .datasets import BoxDataset, PairDataset, collate
    from .config import ModelArguments, DataArguments, SFTArguments, DPOArguments, load_stage_config, parse_stage_args
    from .checkpoints import AtomicCheckpointCallback, last_checkpoint, save_final_model
    from .stages import run_stage, StageResult
    from .synthetic import run_synthetic_stages, SYNTHETIC_BUDGETS, synthetic_stage_args, learning_table
    from .encoder import run_encoder_stage, dense_metrics

__getattr__, __dir__, __all__ = lazy_exports(__name__)
