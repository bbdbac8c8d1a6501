"""Encoder stage: pretrain the image tower on the synthetic world's per-pixel part labels.

``run_encoder_stage`` is ``run_stage("encoder", ...)``: the life cycle of ``training.runner``, as for the
location stages; the held-out pixel accuracy and part IoU are the summary's ``evaluation``. The model
is a :class:`~locinsert.modeling.dense_encoder.DenseEncoderModel` built from the preset's image
fields; the data are fresh scenes (their own stream, so no test scene is seen) with their label maps.
A location stage then names the saved folder in ``image_encoder_checkpoint`` to start from this
tower, frozen.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from .config import ENCODER_STAGE
from .datasets import collate
from .runner import RunParts, RunSummary, preset_overrides, run_training

logger = logging.getLogger(__name__)

ENCODER_STREAM = "encoder"  # scenes of the encoder stage: a stream no other split draws from


class SceneLabelDataset(Dataset):
    """``{pixel_values, labels}`` per synthetic scene: its rendered image and its part-label map.

    ``hflip=True`` adds each scene mirrored (``Scene.hflip``: image and labels flip together).
    """

    def __init__(self, scenes, preprocess, size: int, hflip: bool = False):
        if not scenes:
            raise ValueError("no scenes to train the encoder on")
        self.scenes, self.preprocess, self.size = list(scenes), preprocess, int(size)
        self.index = [(i, f) for i in range(len(self.scenes)) for f in ((False, True) if hflip else (False,))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        from ..data.synthetic.labels import label_map

        si, flipped = self.index[i]
        scene = self.scenes[si].hflip() if flipped else self.scenes[si]
        image = Image.fromarray(scene.render())
        labels, size = label_map(scene), self.size
        if labels.shape != (size, size):  # the encoder's input size differs from the scene's: nearest labels
            labels = np.asarray(Image.fromarray(labels).resize((size, size), Image.NEAREST))
        return {"pixel_values": self.preprocess([image])[0], "labels": torch.from_numpy(labels.astype(np.int64))}


def encoder_scenes(data_args, split: str = "train"):
    """The scenes of the encoder stage (``train``) or of its held-out check (``test``)."""
    from ..data.synthetic.scenes import make_scenes

    if data_args.dataset != "synthetic":
        raise ValueError("the encoder stage trains on the synthetic world's part labels: set dataset: synthetic "
                         f"(got {data_args.dataset!r})")
    n = data_args.synthetic_scenes if split == "train" else (data_args.max_eval_queries or 256)
    stream = ENCODER_STREAM if split == "train" else ENCODER_STREAM + "-" + split
    return make_scenes(n, data_args.synthetic_seed, data_args.synthetic_size, stream=stream)


def build_encoder_model(model_args):
    """A new :class:`DenseEncoderModel` with the image tower of ``model_args.preset`` (+ overrides),
    or a saved one (``model_name_or_path``)."""
    from ..data.synthetic.labels import PARTS
    from ..modeling import LocationModelConfig
    from ..modeling.dense_encoder import DenseEncoderConfig, DenseEncoderModel

    if model_args.model_name_or_path:
        return DenseEncoderModel.from_pretrained(model_args.model_name_or_path)
    loc = LocationModelConfig.preset(model_args.preset, pretrained=model_args.pretrained_encoders,
                                     **preset_overrides(model_args))
    return DenseEncoderModel(DenseEncoderConfig.from_location_config(loc, PARTS))


def balanced_label_weights(scenes, power: float, max_scenes: int = 512) -> list[float]:
    """Per-part loss weights ``(1 / share) ** power`` from the part shares of (up to ``max_scenes``) ``scenes``.

    Scaled so that the pixel-weighted mean weight is 1 (the loss keeps its scale, so the learning
    rate means the same). A part absent from the scenes counts as one pixel in ten thousand.
    Measured on the default budget's 20,000 scenes (docs/experiments/synthetic-learning.md): 0.5 at lr 8e-3
    took the held-out IoU of vases from 0.22 to 0.66 and of table legs from 0.26 to 0.72, but the
    location model trained on that tower placed no better, so the budgets leave it at 0.
    """
    from ..data.synthetic.labels import PARTS, label_map

    counts = np.zeros(len(PARTS))
    for scene in list(scenes)[:max_scenes]:
        counts += np.bincount(label_map(scene).ravel(), minlength=len(PARTS))[: len(PARTS)]
    share = np.maximum(counts / max(counts.sum(), 1), 1e-4)
    weights = share ** -float(power)
    return [float(w) for w in weights / (weights * share).sum()]


@torch.no_grad()
def dense_metrics(model, scenes, batch_size: int = 64) -> dict:
    """Pixel accuracy and per-part IoU of a :class:`DenseEncoderModel` on ``scenes``."""
    from ..data.synthetic.labels import PARTS

    ds = SceneLabelDataset(scenes, model.preprocessor, model.config.image_size)
    was = model.training
    model.eval()
    n = len(PARTS)
    conf = torch.zeros(n, n, dtype=torch.long)
    for s in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(s, min(len(ds), s + batch_size))]
        x = torch.stack([it["pixel_values"] for it in items]).to(model.device)
        y = torch.stack([it["labels"] for it in items])
        pred = model(x).logits.argmax(1).cpu()
        conf += torch.bincount((y * n + pred).flatten(), minlength=n * n).view(n, n)
    model.train(was)
    inter = conf.diag().double()
    union = conf.sum(0).double() + conf.sum(1).double() - inter
    iou = {p: (float(inter[i] / union[i]) if union[i] > 0 else float("nan")) for i, p in enumerate(PARTS)}
    return {"pixel_accuracy": float(inter.sum() / conf.sum()), "iou": iou}


def encoder_parts(model_args, data_args, training_args, model=None) -> RunParts:
    """The model and data of the encoder stage, for ``training.runner.run_training``."""
    if model is None:
        model = build_encoder_model(model_args)
    scenes = encoder_scenes(data_args)
    train = SceneLabelDataset(scenes, model.preprocessor, model.config.image_size, hflip=data_args.hflip)
    training_args.label_names = ["labels"]
    if data_args.label_balance:
        model.config.label_weights = balanced_label_weights(scenes, data_args.label_balance)

    def evaluate(trained) -> dict | None:
        return dense_metrics(trained, encoder_scenes(data_args, data_args.eval_split)) if data_args.eval_split else None

    return RunParts(model=model, train_dataset=train, data_collator=collate, evaluate=evaluate)


def run_encoder_stage(model_args, data_args, training_args, callbacks=(), model=None) -> RunSummary:
    """Train the image tower on part labels (``run_stage("encoder", ...)``); see the module docstring."""
    return run_training(ENCODER_STAGE, training_args,
                        lambda: encoder_parts(model_args, data_args, training_args, model), callbacks)
