"""``TextMaskModel``: a text-conditioned U-Net that turns (image, text) into the named object's mask.

```
image ──► ResNet stem, stage 1, stage 2 ─► ⊗ ─► stage 3 ─► ⊗ ─► stage 4 ─► ⊗ ─┐      (⊗ = cross-attention
text  ──► CLIP text tower ─► token features ──────────────────────────────────┤        to the text tokens)
                                                                               ▼
mask ◄── head ◄── up ⊗ ◄── up ⊗ ◄── up ⊗ ◄── up ⊗  (bilinear x2, concat the encoder's skip, two convs, ⊗)
```

The reference system's architecture (a ResNet-18 encoder, a CLIP text encoder, cross-attention after
encoder stages 2, 3 and 4, a U-Net decoder with skips), trained with BCE + Dice. The pixels are the
queries and the text tokens the keys and values; every block is residual, so an untrained block
starts as the identity. Presets: ``tiny`` (tests), ``synthetic`` (64 px scenes, trains on a CPU in
about a minute) and ``base`` (timm ``resnet18`` with ImageNet weights + open_clip ``ViT-B-32`` text
tower with OpenAI weights, 352 px). Saved and loaded like ``LocationModel``: ``config.json`` +
``model.safetensors``, written atomically; a saved model never downloads encoder weights again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from ..images import ImageInput, load_image
from ..modeling.checkpoint_io import CheckpointMixin
from .base import Segmenter, check_text, check_threshold, resize_probs

_TINY_VISION = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16}

PRESETS: dict[str, dict] = {
    # Random, offline, built in a fraction of a second: for tests and examples.
    "tiny": dict(
        image_size=32,
        image_encoder="resnet18", image_encoder_kwargs=dict(layers=[1, 1, 1, 1], channels=[8, 16, 16, 32]),
        text_encoder=None,
        text_encoder_kwargs=dict(embed_dim=16, vision_cfg=_TINY_VISION,
                                 text_cfg=dict(context_length=16, vocab_size=49408, width=16, heads=2, layers=1)),
        decoder_channels=[16, 16, 8, 8], attention_heads=2,
    ),
    # The synthetic world: 64 px scenes, flat colours, about a minute of CPU training. A deep stem of
    # three 3x3 convolutions at width 8 replaces the 7x7 one of 64 channels, and the stride-2 level is
    # not a skip (encoder_indices 1-4): 64 px objects need no finer edge than stride 4 plus a bilinear
    # upsample. Together they make a step about 1.7x cheaper. The text tower stays frozen and random,
    # as in the location model's synthetic preset: distinct random token features are all the
    # cross-attention needs to tell "left" from "right", and training the 49408-word embedding table
    # would cost more than the rest of the step.
    "synthetic": dict(
        image_size=64,
        image_encoder="resnet18",
        image_encoder_kwargs=dict(layers=[1, 1, 1, 1], channels=[16, 32, 64, 96], stem_type="deep", stem_width=8),
        encoder_indices=[1, 2, 3, 4],
        text_encoder=None,
        text_encoder_kwargs=dict(embed_dim=64, vision_cfg=_TINY_VISION,
                                 text_cfg=dict(context_length=16, vocab_size=49408, width=64, heads=4, layers=1)),
        decoder_channels=[64, 32, 32], attention_heads=4,
    ),
    # The reference system: ResNet-18 (ImageNet) + CLIP ViT-B/32's text tower (OpenAI), frozen text.
    "base": dict(
        image_size=352,
        image_encoder="resnet18", image_encoder_kwargs={},
        text_encoder="ViT-B-32", text_encoder_kwargs=None,
        decoder_channels=[256, 128, 64, 32], attention_heads=4,
        _hub=dict(image_pretrained=True, text_pretrained="openai"),
    ),
}


class TextMaskConfig(PretrainedConfig):
    """Configuration of a ``TextMaskModel``.

    Image encoder: ``image_encoder`` (a timm ResNet name), ``image_encoder_kwargs`` (timm
    ``create_model`` keywords, e.g. ``layers`` / ``channels`` for a small one), ``image_pretrained``
    (False, True = hub weights, or a local weights file), ``freeze_image_encoder``,
    ``encoder_indices`` (which feature levels the U-Net uses: 0 = stem at stride 2, then stages 1-4),
    ``image_size`` / ``image_mean`` / ``image_std`` (filled in from timm when the model is built).

    Text encoder: an open_clip text tower, ``text_encoder`` (architecture name, ``hf-hub:`` or
    ``local-dir:``) or ``None`` with ``text_encoder_kwargs`` (an open_clip ``model_cfg``),
    ``text_pretrained`` (open_clip tag or file), ``freeze_text_encoder``.

    Conditioning and decoder: ``attention_stages`` (encoder stages followed by cross-attention; the
    reference uses 2, 3, 4), ``attention_heads``, ``decoder_attention`` (cross-attention in every
    up-block too), ``decoder_channels`` (one per up-block, deep to shallow; one up-block per skip).
    Loss: ``bce_weight`` x BCE + ``dice_weight`` x soft Dice. ``threshold``: the default cut of a
    segmenter built on the model.
    """

    model_type = "locinsert_textmask"

    def __init__(self, image_encoder: str = "resnet18", image_encoder_kwargs: dict | None = None,
                 image_pretrained: bool | str = False, freeze_image_encoder: bool = False,
                 encoder_indices: Sequence[int] = (0, 1, 2, 3, 4), image_size: int = 352,
                 image_mean: list | None = None, image_std: list | None = None,
                 text_encoder: str | None = "ViT-B-32", text_encoder_kwargs: dict | None = None,
                 text_pretrained: bool | str | None = None, freeze_text_encoder: bool = True,
                 attention_stages: Sequence[int] = (2, 3, 4), attention_heads: int = 4,
                 decoder_attention: bool = True, decoder_channels: Sequence[int] = (256, 128, 64, 32),
                 bce_weight: float = 1.0, dice_weight: float = 1.0, threshold: float = 0.4,
                 weights_source: dict | None = None, **kwargs):
        self.image_encoder = image_encoder
        self.image_encoder_kwargs = copy.deepcopy(dict(image_encoder_kwargs or {}))
        self.image_pretrained = image_pretrained
        self.freeze_image_encoder = bool(freeze_image_encoder)
        self.encoder_indices = [int(i) for i in encoder_indices]
        self.image_size = int(image_size)
        self.image_mean = image_mean
        self.image_std = image_std
        self.text_encoder = text_encoder
        self.text_encoder_kwargs = copy.deepcopy(text_encoder_kwargs)
        self.text_pretrained = text_pretrained
        self.freeze_text_encoder = bool(freeze_text_encoder)
        self.attention_stages = [int(i) for i in attention_stages]
        self.attention_heads = int(attention_heads)
        self.decoder_attention = bool(decoder_attention)
        self.decoder_channels = [int(c) for c in decoder_channels]
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.threshold = float(threshold)
        self.weights_source = dict(weights_source or {})
        super().__init__(**kwargs)
        if sorted(set(self.encoder_indices)) != self.encoder_indices or not self.encoder_indices or \
                min(self.encoder_indices) < 0 or max(self.encoder_indices) > 4:
            raise ValueError(f"encoder_indices must be increasing levels in 0..4, got {self.encoder_indices}")
        if len(self.decoder_channels) != len(self.encoder_indices) - 1:
            raise ValueError(f"decoder_channels needs one entry per up-block ({len(self.encoder_indices) - 1} for "
                             f"encoder_indices {self.encoder_indices}), got {self.decoder_channels}")
        bad = [s for s in self.attention_stages if s not in self.encoder_indices]
        if bad:
            raise ValueError(f"attention_stages {bad} are not among encoder_indices {self.encoder_indices}")
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the ResNet's stride), got {self.image_size}")
        if self.bce_weight < 0 or self.dice_weight < 0 or self.bce_weight + self.dice_weight == 0:
            raise ValueError("bce_weight and dice_weight must be non-negative and not both zero")
        check_threshold(self.threshold)

    @classmethod
    def preset(cls, name: str, pretrained: bool = True, **overrides) -> "TextMaskConfig":
        """A named configuration: "tiny", "synthetic" or "base" (see ``PRESETS``); ``pretrained``
        matters for "base" only (hub weights for both encoders)."""
        from ..modeling.config import preset_fields

        return cls(**preset_fields(PRESETS, name, pretrained, overrides))


@dataclass
class TextMaskOutput(ModelOutput):
    """``loss``: BCE + Dice (when labels are given); ``logits`` (B, S, S) at the model's input size."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


# -- parts -----------------------------------------------------------------------------------------

class TextTokens(nn.Module):
    """An open_clip text tower that returns every token's feature, not only the pooled one.

    Cross-attention needs the tokens ("left" and "vase" are different tokens). Built by the same
    ``OpenCLIPTextEncoder`` as the location model's class tower (names, hub ids, random configs),
    then read up to its final LayerNorm: (B, L, width) features and a (B, L) padding mask.
    """

    def __init__(self, name: str | None, model_cfg: dict | None, pretrained=None):
        super().__init__()
        from ..modeling.encoders import OpenCLIPTextEncoder

        enc = OpenCLIPTextEncoder(name, model_cfg, pretrained)
        clip = enc.clip
        if not hasattr(clip, "token_embedding"):
            raise ValueError(f"text encoder {name!r} is not a built-in open_clip text transformer "
                             "(a CLIP with token_embedding); Hugging Face text towers are not supported here")
        self.clip, self.tokenizer, self.model_cfg = clip, enc.tokenizer, enc.model_cfg
        self.dim = int(clip.ln_final.normalized_shape[0])

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.clip
        cast = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(input_ids).to(cast) + clip.positional_embedding.to(cast)
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
        # Padding is every position after the end-of-text token (the largest id in each row).
        eot = input_ids.argmax(dim=-1, keepdim=True)
        pad = torch.arange(input_ids.shape[1], device=input_ids.device)[None] > eot
        return x, pad


class CrossAttention(nn.Module):
    """Pixels attend to text tokens; residual (the text is projected to the channels, then normed)."""

    def __init__(self, channels: int, text_dim: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} attention heads")
        self.text_proj = nn.Linear(text_dim, channels)
        self.text_norm = nn.LayerNorm(channels)
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.gate = nn.Parameter(torch.zeros(channels))  # starts as the identity

    def forward(self, x: torch.Tensor, text: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q = self.norm(x.flatten(2).transpose(1, 2))
        kv = self.text_norm(self.text_proj(text))
        out, _ = self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)
        return x + (self.gate * out).transpose(1, 2).reshape(B, C, H, W)


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UpBlock(nn.Module):
    """Bilinear x2 to the skip's size, concatenate the skip, two convolutions, optional cross-attention."""

    def __init__(self, cin: int, skip: int, cout: int, text_dim: int, heads: int, attention: bool):
        super().__init__()
        self.convs = nn.Sequential(_conv(cin + skip, cout), _conv(cout, cout))
        self.attn = CrossAttention(cout, text_dim, heads) if attention else None

    def forward(self, x, skip, text, pad):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.convs(torch.cat([x, skip], 1))
        return self.attn(x, text, pad) if self.attn is not None else x


# -- the model ---------------------------------------------------------------------------------------

def _dice_loss(logits: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean over the batch of 1 - soft Dice; an empty target asks for an empty prediction."""
    p = torch.sigmoid(logits).flatten(1)
    y = labels.flatten(1)
    inter = (p * y).sum(1)
    return (1.0 - (2.0 * inter + smooth) / (p.sum(1) + y.sum(1) + smooth)).mean()


class TextMaskModel(CheckpointMixin, PreTrainedModel):
    """Text-conditioned segmentation (see the module docstring and ``TextMaskConfig``).

    Saved and loaded by ``CheckpointMixin`` (``locinsert.modeling.checkpoint_io``), as ``LocationModel``.
    """

    config_class = TextMaskConfig
    offline_fields = {"image_pretrained": False, "text_pretrained": None}
    base_model_prefix = "textmask"
    main_input_name = "pixel_values"
    _no_split_modules: list = []

    def __init__(self, config: TextMaskConfig):
        super().__init__(config)
        import timm

        kw = dict(config.image_encoder_kwargs)
        pretrained = config.image_pretrained
        if isinstance(pretrained, str):  # a local weights file, read by timm's own loader
            kw["pretrained_cfg_overlay"] = dict(file=pretrained)
            pretrained = True
        self.image_encoder = timm.create_model(config.image_encoder, pretrained=bool(pretrained), features_only=True,
                                               out_indices=tuple(config.encoder_indices), **kw)
        self.text_encoder = TextTokens(config.text_encoder, config.text_encoder_kwargs, config.text_pretrained)
        chans = self.image_encoder.feature_info.channels()
        levels = config.encoder_indices
        d, h = self.text_encoder.dim, config.attention_heads
        self.stage_attention = nn.ModuleDict({str(s): CrossAttention(chans[levels.index(s)], d, h)
                                              for s in config.attention_stages})
        blocks, cin = [], chans[-1]
        for skip, cout in zip(reversed(chans[:-1]), config.decoder_channels):
            blocks.append(UpBlock(cin, skip, cout, d, h, config.decoder_attention))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.Conv2d(cin, max(cin // 2, 8), 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(max(cin // 2, 8), 1, 1))
        self.post_init()
        self._record_encoders()
        self._apply_freezing()

    def _record_encoders(self) -> None:
        """Write the resolved preprocessing and architecture into the config; clear the hub flags."""
        import timm.data

        cfg = self.config
        data = timm.data.resolve_data_config(model=self.image_encoder)
        cfg.image_mean = cfg.image_mean or list(data["mean"])
        cfg.image_std = cfg.image_std or list(data["std"])
        if cfg.image_pretrained:
            cfg.weights_source["image"] = f"timm:{cfg.image_encoder}:{cfg.image_pretrained}"
            cfg.image_pretrained = False
        if cfg.text_pretrained or (cfg.text_encoder or "").startswith(("hf-hub:", "local-dir:")):
            cfg.weights_source["text"] = f"open_clip:{cfg.text_encoder}:{cfg.text_pretrained}"
        cfg.text_pretrained = None
        if cfg.text_encoder_kwargs is None:  # a named tower: keep its architecture for offline loading
            cfg.text_encoder_kwargs = self.text_encoder.model_cfg
        cfg.text_encoder = None

    def _apply_freezing(self) -> None:
        self.image_encoder.requires_grad_(not self.config.freeze_image_encoder)
        self.text_encoder.requires_grad_(not self.config.freeze_text_encoder)

    def train(self, mode: bool = True):
        """Set training mode; frozen towers stay in eval mode."""
        super().train(mode)
        # frozen towers stay in eval mode (BatchNorm statistics, dropout)
        if self.config.freeze_image_encoder:
            self.image_encoder.eval()
        if self.config.freeze_text_encoder:
            self.text_encoder.eval()
        return self

    def _init_weights(self, module):
        pass  # timm and open_clip initialise their own modules; torch defaults for the rest

    # -- inputs ------------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, L) token ids of the texts (checked: non-empty strings)."""
        return self.text_encoder.tokenize([check_text(t) for t in texts])

    def preprocess(self, images: Sequence) -> torch.Tensor:
        """Images (paths, PIL, uint8 arrays) -> normalised (B, 3, S, S), squashed to the input size."""
        S = self.config.image_size
        mean = torch.tensor(self.config.image_mean).view(3, 1, 1)
        std = torch.tensor(self.config.image_std).view(3, 1, 1)
        out = []
        for im in images:
            img = load_image(im)
            if img.size != (S, S):
                img = img.resize((S, S), resample=2)  # PIL bilinear; no crop: the mask covers the whole image
            t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
            out.append((t - mean) / std)
        return torch.stack(out)

    def resize_labels(self, masks: Sequence) -> torch.Tensor:
        """Masks ((H, W) arrays in [0, 1] or bool) -> (B, S, S) float labels at the input size."""
        S = self.config.image_size
        out = []
        for m in masks:
            t = torch.as_tensor(np.asarray(m, dtype=np.float32))
            if t.shape != (S, S):
                t = F.interpolate(t[None, None], size=(S, S), mode="bilinear", antialias=True,
                                  align_corners=False)[0, 0].clamp(0, 1)
            out.append(t)
        return torch.stack(out)

    # -- forward -----------------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None = None,
                texts: Sequence[str] | None = None, labels: torch.Tensor | None = None) -> TextMaskOutput:
        """Mask logits for image-text pairs, and the BCE + Dice loss when ``labels`` are given."""
        if input_ids is None:
            if texts is None:
                raise ValueError("give the texts (or their input_ids) that name the objects to segment")
            input_ids = self.tokenize(texts)
        input_ids = input_ids.to(pixel_values.device)
        if input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(f"{pixel_values.shape[0]} images but {input_ids.shape[0]} texts: give one text per image")
        text, pad = self.text_encoder(input_ids)
        feats = list(self.image_encoder(pixel_values))
        for i, level in enumerate(self.config.encoder_indices):
            if str(level) in self.stage_attention:
                feats[i] = self.stage_attention[str(level)](feats[i], text, pad)
        x = feats[-1]
        for block, skip in zip(self.decoder, reversed(feats[:-1])):
            x = block(x, skip, text, pad)
        logits = F.interpolate(self.head(x), size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        loss = None
        if labels is not None:
            labels = labels.to(logits.dtype)
            loss = self.config.bce_weight * F.binary_cross_entropy_with_logits(logits, labels) + \
                self.config.dice_weight * _dice_loss(logits, labels)
        return TextMaskOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def predict(self, images: Sequence[ImageInput], texts: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """Soft masks, one (H, W) float32 array per (image, text) pair, each at its image's own size."""
        images, texts = list(images), list(texts)
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts: give one text per image")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out: list[np.ndarray] = []
        try:
            for i in range(0, len(images), batch_size):
                pil = [load_image(im) for im in images[i:i + batch_size]]
                ids = self.tokenize(texts[i:i + batch_size]).to(device)
                probs = torch.sigmoid(self(self.preprocess(pil).to(device), input_ids=ids).logits.float())
                out += [resize_probs(p, im.height, im.width)[0] for p, im in zip(probs, pil)]
        finally:
            self.train(was_training)
        return out


class TextMaskSegmenter(Segmenter):
    """The ``segment(image, text)`` protocol on a ``TextMaskModel``; ``threshold`` defaults to the model's."""

    def __init__(self, model: TextMaskModel, *, threshold: float | None = None, device=None):
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.threshold = check_threshold(model.config.threshold if threshold is None else threshold)

    @classmethod
    def from_pretrained(cls, path: str, *, device=None, threshold: float | None = None, **kwargs
                        ) -> "TextMaskSegmenter":
        """Load a saved ``TextMaskModel`` folder as a segmenter."""
        return cls(TextMaskModel.from_pretrained(path, **kwargs), threshold=threshold, device=device)

    def segment_many(self, image: ImageInput, texts) -> np.ndarray:
        """The model's soft masks for several texts at the image's size, (N, H, W)."""
        img, texts = self._inputs(image, texts)
        return np.stack(self.model.predict([img] * len(texts), texts))
