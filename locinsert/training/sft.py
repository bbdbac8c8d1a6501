"""Supervised stage: next-token cross-entropy on the 4 coordinate tokens (PIPE pretraining, OPA fine-tuning)."""

from __future__ import annotations

from transformers import Trainer

from .trainer_logs import BoundedLogsMixin
from .checkpoints import SafeCheckpointMixin


class BoxSFTTrainer(BoundedLogsMixin, SafeCheckpointMixin, Trainer):
    """``transformers.Trainer`` for ``LocationModel``; overrides only ``compute_loss`` (and, through
    ``SafeCheckpointMixin``, reads the pickle-free checkpoint state on resume).

    The model's ``forward`` returns ``.loss``, the mean NLL over the batch's 4 x B coordinate tokens.
    Every example has exactly 4 target tokens, so a per-batch mean divided by the number of
    accumulation steps (what ``loss_is_scaled_for_ga = False`` asks the Trainer to do) is exactly the
    mean over the accumulated batch: GA=2 x batch 2 trains like GA=1 x batch 4.
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The model's forward takes **kwargs; without this older transformers would pass
        # num_items_in_batch and assume the loss is already scaled for accumulation.
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The cross-entropy on the four coordinate tokens, from the model's forward."""
        outputs = model(**inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss
