"""DPO stage: a ``transformers.Trainer`` whose ``compute_loss`` is a preference loss on box log-probs.

trl's ``DPOTrainer`` only fits text causal LMs and keeps its loss in private methods, so only trl's public ``DPOConfig`` is used for the arguments. The trainer:

- runs chosen and rejected boxes through **one** call of the (possibly DDP-wrapped) model's
  ``forward``, so DDP's gradient hooks see a single graph; the image and class encoders run once
  per pair (``forward`` takes two boxes per image), only the decoder sees both boxes;
- takes the reference log-probs from the batch (``ref_chosen_logps`` / ``ref_rejected_logps``,
  precomputed once) or from a frozen reference model in eval mode (default: a copy of the policy
  as it is when the trainer is built, i.e. the stage-2 model);
- turns dropout off in policy and reference (``disable_dropout``): otherwise the two disagree at
  step 0 and the loss does not start at ln 2;
- returns a per-batch mean with ``loss_is_scaled_for_ga = False``, so the Trainer divides it by the
  accumulation steps;
- logs ``rewards/{chosen,rejected,margins,accuracies}`` and ``logps/{chosen,rejected}``, averaged over
  the steps since the last log and over processes.

Besides ``compute_loss`` it overrides ``log`` (documented as the hook for adding logged values); its
base ``SafeCheckpointMixin`` reads the pickle-free checkpoint state on resume (see ``checkpoints``).
"""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn
from transformers import Trainer

from .trainer_logs import BoundedLogsMixin
from .checkpoints import SafeCheckpointMixin
from .losses import preference_loss

PREFIX_KEYS = ("pixel_values", "classes", "image_features", "class_features")
REF_KEYS = ("ref_chosen_logps", "ref_rejected_logps")


def disable_dropout(model: nn.Module) -> nn.Module:
    """Set every ``nn.Dropout`` probability to 0 (GPT-2's attention kernels read theirs from these modules)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def prefix_inputs(inputs: dict, repeat: int = 1) -> dict:
    """The model inputs that describe the prefix (image + class), each repeated ``repeat`` times."""
    out = {}
    for key in PREFIX_KEYS:
        value = inputs.get(key)
        if value is None:
            continue
        if isinstance(value, torch.Tensor):
            out[key] = torch.cat([value] * repeat) if repeat > 1 else value
        else:
            out[key] = list(value) * repeat
    return out


def pair_logps(model: nn.Module, inputs: dict) -> tuple[torch.Tensor, torch.Tensor, object]:
    """(chosen, rejected) summed box log-probs of a pair batch through one ``forward`` call."""
    chosen, rejected = inputs["chosen_tokens"], inputs["rejected_tokens"]
    regions = inputs.get("regions")  # a pair's two boxes are scored under the same region
    extra = {} if regions is None else {"regions": torch.cat([regions, regions])}
    outputs = model(**prefix_inputs(inputs), box_tokens=torch.cat([chosen, rejected]), **extra)
    logps = outputs.box_logps
    return logps[: len(chosen)], logps[len(chosen):], outputs


class BoxDPOTrainer(BoundedLogsMixin, SafeCheckpointMixin, Trainer):
    """DPO on (chosen, rejected) box pairs; ``args`` is a ``trl.DPOConfig`` (e.g. ``DPOArguments``).

    Batches (:class:`~locinsert.training.datasets.PairDataset` examples stacked by ``collate``) hold the prefix inputs
    (``pixel_values`` or ``image_features``, ``classes`` or ``class_features``), ``chosen_tokens`` and
    ``rejected_tokens`` (B, 4), and optionally ``ref_chosen_logps`` / ``ref_rejected_logps`` (B,).
    ``ref_model``: a frozen reference; None means a deep copy of ``model`` taken now, unless every batch
    carries precomputed reference log-probs (``ref_model=False``).
    """

    loss_is_scaled_for_ga = False

    def __init__(self, model=None, args=None, ref_model: nn.Module | None | bool = None, **kwargs):
        for name in ("beta", "loss_type", "label_smoothing"):
            if not hasattr(args, name):
                raise TypeError(f"BoxDPOTrainer needs a trl DPOConfig (e.g. DPOArguments) as args; "
                                f"{type(args).__name__} has no {name!r}")
        if args.remove_unused_columns:
            # Trainer would drop chosen/rejected tokens: they are not forward() arguments.
            args.remove_unused_columns = False
        if getattr(args, "disable_dropout", True):
            disable_dropout(model)
        if ref_model is None:
            ref_model = copy.deepcopy(model)
        super().__init__(model=model, args=args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self.ref_model = None
        if ref_model is not False:
            if getattr(args, "disable_dropout", True):
                disable_dropout(ref_model)
            ref_model.requires_grad_(False).eval()
            # Device placement / DeepSpeed / FSDP as for the policy, but never DDP: it is not trained.
            self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)
        self._stored_metrics: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    @torch.no_grad()
    def reference_logps(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference (chosen, rejected) log-probs: from the batch if precomputed, else from ``ref_model``."""
        if all(inputs.get(k) is not None for k in REF_KEYS):
            return inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        if self.ref_model is None:
            raise ValueError("BoxDPOTrainer: the batch has no ref_chosen_logps/ref_rejected_logps and no "
                             "ref_model was given")
        chosen, rejected, _ = pair_logps(self.ref_model, inputs)
        return chosen, rejected

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The preference loss of a batch of (chosen, rejected) box pairs."""
        policy_chosen, policy_rejected, _ = pair_logps(model, inputs)
        ref_chosen, ref_rejected = self.reference_logps(inputs)
        out = preference_loss(policy_chosen, policy_rejected, ref_chosen.to(policy_chosen),
                              ref_rejected.to(policy_rejected), beta=self.args.beta,
                              loss_type=self.args.loss_type, loss_weights=self.args.loss_weights,
                              label_smoothing=self.args.label_smoothing)
        self._store_metrics(out.metrics, "train" if model.training else "eval")
        return (out.loss, out.metrics) if return_outputs else out.loss

    def _store_metrics(self, metrics: dict[str, torch.Tensor], mode: str) -> None:
        names = sorted(metrics)
        values = torch.stack([metrics[k].float() for k in names])
        # one collective per step, averaged over processes
        values = self.accelerator.gather_for_metrics(values[None]).reshape(-1, len(names)).mean(0)
        for name, value in zip(names, values.tolist()):
            self._stored_metrics[mode][name].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Log the Trainer's figures plus the mean DPO rewards and log-probs since the last log."""
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self._stored_metrics[mode].items():
            if values:
                logs[prefix + name] = sum(values) / len(values)
        self._stored_metrics[mode].clear()
        super().log(logs, start_time)
