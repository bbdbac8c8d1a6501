"""``DenseEncoderModel``: an image encoder trained to label every pixel (encoder pretraining).

The location model's image tower, built from the same ``LocationModelConfig`` fields
(``image_encoder_type``, ``image_encoder``, ``image_encoder_kwargs``), plus a linear head that
predicts the label of each pixel of a patch from that patch's token (a ViT's "linear decoder"
for segmentation). On the synthetic world the labels are the renderer's own part map
(``data.synthetic.labels.label_map``): a dense, free objective that teaches the tower where the
wall, floor, windows, table tops and crates of *this* image are, which one box per image does not.

``save_pretrained`` writes the whole model (``config.json`` + ``model.safetensors``, all-or-nothing)
and the image tower alone in the format its library loads: ``image_encoder.safetensors`` (timm state dict; a
``LocationModelConfig`` takes it as ``image_pretrained=<file>``) or ``image_encoder/`` (a
transformers ``ViTModel`` folder). :func:`image_encoder_overrides` turns a saved folder into those
config fields, frozen, for any preset.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .checkpoint_io import CHECKPOINT_FILES, CheckpointMixin
from .encoders import ImagePreprocessor, build_image_encoder

TIMM_WEIGHTS = "image_encoder.safetensors"
HF_FOLDER = "image_encoder"
# The fields of LocationModelConfig that define the image tower and its input.
IMAGE_FIELDS = ("image_encoder_type", "image_encoder", "image_encoder_kwargs", "image_size", "image_mean",
                "image_std", "interpolation")


class DenseEncoderConfig(PretrainedConfig):
    """An image tower (the ``LocationModelConfig`` image fields) and the names of its pixel labels."""

    model_type = "locinsert_dense_encoder"

    def __init__(self, image_encoder_type: str = "timm", image_encoder: str | None = "vit_tiny_patch16_224",
                 image_encoder_kwargs: dict | None = None, image_pretrained: bool | str = False,
                 image_size: int | None = None, image_mean: list | None = None, image_std: list | None = None,
                 interpolation: str | None = None, label_names: list | None = None,
                 label_weights: list | None = None, **kwargs):
        self.image_encoder_type = image_encoder_type
        self.image_encoder = image_encoder
        self.image_encoder_kwargs = dict(image_encoder_kwargs or {})
        self.image_pretrained = image_pretrained
        self.image_size, self.image_mean, self.image_std = image_size, image_mean, image_std
        self.interpolation = interpolation
        self.label_names = list(label_names or [])
        # Per-label weights of the pixel loss (None: plain cross-entropy); the encoder stage's
        # ``label_balance`` sets them from the training scenes' label shares.
        self.label_weights = None if label_weights is None else [float(w) for w in label_weights]
        super().__init__(**kwargs)
        if len(self.label_names) < 2:
            raise ValueError(f"a dense encoder needs at least 2 label names, got {self.label_names}")
        if self.label_weights is not None and (len(self.label_weights) != len(self.label_names)
                                               or not all(w >= 0 and w < float("inf") for w in self.label_weights)):
            raise ValueError(f"label_weights must be {len(self.label_names)} finite non-negative numbers (one per "
                             f"label name), got {self.label_weights}")

    @classmethod
    def from_location_config(cls, location_config, label_names) -> "DenseEncoderConfig":
        """The image tower of a ``LocationModelConfig`` (e.g. a preset), with these pixel labels."""
        fields = {k: getattr(location_config, k) for k in IMAGE_FIELDS}
        return cls(image_pretrained=location_config.image_pretrained, label_names=list(label_names), **fields)


@dataclass
class DenseEncoderOutput(ModelOutput):
    """``loss``: mean per-pixel cross-entropy (weighted by ``config.label_weights`` when set); ``logits`` (B, C, S, S)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class DenseEncoderModel(CheckpointMixin, PreTrainedModel):
    """Image tower + per-patch linear head over ``patch x patch x num_labels`` pixel logits.

    Saved and loaded by ``CheckpointMixin`` (``checkpoint_io.py``), as ``LocationModel``; a save also
    writes the tower alone (``save_extra``).
    """

    config_class = DenseEncoderConfig
    offline_fields = {"image_pretrained": False}
    checkpoint_files = CHECKPOINT_FILES + (TIMM_WEIGHTS, HF_FOLDER)
    base_model_prefix = "dense_encoder"
    main_input_name = "pixel_values"
    _no_split_modules: list = []

    def __init__(self, config: DenseEncoderConfig):
        super().__init__(config)
        self.image_encoder = build_image_encoder(config)
        data = self.image_encoder.data_config()
        config.image_size = config.image_size or data["image_size"]
        config.image_mean = config.image_mean or data["image_mean"]
        config.image_std = config.image_std or data["image_std"]
        config.interpolation = config.interpolation or data["interpolation"]
        if config.image_pretrained and config.image_encoder_type == "hf_vit":
            config.image_encoder_kwargs = self.image_encoder.architecture()
        config.image_pretrained = False  # from now on the weights live in this model's checkpoint
        self.patch_size = self._patch_size()
        if config.image_size % self.patch_size:
            raise ValueError(f"image_size {config.image_size} is not a multiple of the patch size {self.patch_size}")
        self.grid = config.image_size // self.patch_size
        self.num_labels_ = len(config.label_names)
        self.head = nn.Linear(self.image_encoder.dim, self.patch_size ** 2 * self.num_labels_)
        self.preprocessor = ImagePreprocessor("timm" if config.image_encoder_type == "timm" else "hf",
                                              config.image_size, config.image_mean, config.image_std,
                                              config.interpolation)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def _patch_size(self) -> int:
        enc = self.image_encoder.model
        if self.config.image_encoder_type == "timm":
            return int(enc.patch_embed.patch_size[0])
        return int(enc.config.patch_size)

    def _init_weights(self, module):
        pass  # the tower comes initialised from timm / transformers; the head is set in __init__

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                return_dict: bool = True) -> DenseEncoderOutput:
        """``pixel_values`` (B, 3, S, S) -> per-pixel logits (B, C, S, S); ``labels`` (B, S, S) long ids."""
        tokens = self.image_encoder(pixel_values)
        b, g, p, c = tokens.shape[0], self.grid, self.patch_size, self.num_labels_
        patches = tokens[:, tokens.shape[1] - g * g:]  # drop the class / register tokens
        logits = self.head(patches).view(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)
        loss = None
        if labels is not None:
            if labels.shape != (b, g * p, g * p):
                raise ValueError(f"labels must have shape {(b, g * p, g * p)}, got {tuple(labels.shape)}")
            w = self.config.label_weights
            w = None if w is None else torch.tensor(w, dtype=torch.float32, device=logits.device)
            loss = F.cross_entropy(logits.float(), labels.long().to(logits.device), weight=w)
        return DenseEncoderOutput(loss=loss, logits=logits)

    def save_extra(self, folder: str, state: dict) -> None:
        """The image tower alone, in its library's format, next to the whole model."""
        from safetensors.torch import save_file

        prefix = "image_encoder.model."
        tower = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if self.config.image_encoder_type == "timm":
            save_file(tower, os.path.join(folder, TIMM_WEIGHTS), metadata={"format": "pt"})
        else:
            self.image_encoder.model.save_pretrained(os.path.join(folder, HF_FOLDER), state_dict=tower)

    @torch.no_grad()
    def predict(self, images) -> torch.Tensor:
        """PIL images -> (B, S, S) predicted label ids at the encoder's input size."""
        pixel_values = self.preprocessor(list(images)).to(self.device, self.dtype)
        return self(pixel_values).logits.argmax(1).cpu()


def image_encoder_overrides(folder: str | os.PathLike, location_config=None) -> dict:
    """``LocationModelConfig`` fields that load the image tower saved in ``folder`` and freeze it.

    ``folder`` is a ``DenseEncoderModel`` folder (the encoder stage's ``final``). With
    ``location_config`` (the config the overrides will apply to), a tower of another architecture
    is refused here, with both named, rather than failing deep inside timm.
    """
    folder = os.fspath(folder)
    cfg_file = os.path.join(folder, "config.json")
    if not os.path.isfile(cfg_file):
        raise FileNotFoundError(f"image encoder checkpoint not found: {cfg_file} (expected the encoder stage's "
                                "'final' folder)")
    saved = json.loads(open(cfg_file).read())
    if saved.get("model_type") != DenseEncoderConfig.model_type:
        raise ValueError(f"{folder} is not an image-encoder checkpoint (model_type {saved.get('model_type')!r})")
    fields = {k: saved.get(k) for k in IMAGE_FIELDS}
    if location_config is not None:
        for k in ("image_encoder_type", "image_encoder", "image_encoder_kwargs"):
            mine = getattr(location_config, k)
            if k == "image_encoder_kwargs" and fields["image_encoder_type"] == "hf_vit":
                continue  # resolved to the full ViTConfig on save; the folder itself is loaded
            if mine != fields[k]:
                raise ValueError(f"image encoder checkpoint {folder} has {k}={fields[k]!r}, but the location "
                                 f"model's config has {mine!r}")
    if fields["image_encoder_type"] == "timm":
        pretrained = os.path.join(folder, TIMM_WEIGHTS)
    else:
        pretrained = True
        fields["image_encoder"] = os.path.join(folder, HF_FOLDER)
    return {**fields, "image_pretrained": pretrained, "freeze_image_encoder": True}
