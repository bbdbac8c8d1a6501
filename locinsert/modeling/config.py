"""``LocationModelConfig`` and its presets ("tiny", "synthetic", "base").

A preset is a small dict of architecture choices, in the spirit of timm's model configs.
``pretrained=True`` asks for hub weights by name (image tower, class tower, GPT-2 body);
``pretrained=False`` gives the same shapes with random weights and never touches the network.
"""

from __future__ import annotations

import copy

from transformers import PretrainedConfig

from ..boxes import DEFAULT_NUM_BINS
from ..validation import check_float, check_int

# A CLIP vision tower is required by open_clip's constructor even though only the text tower is
# kept; the smallest legal one keeps construction cheap for the random text towers below.
_TINY_VISION = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16}

# GPT-2's "gelu_new" is the tanh GELU written out in Python ops; torch's fused kernel computes the
# same function several times faster, for training and decoding alike.
_GELU = dict(activation_function="gelu_pytorch_tanh")

PRESETS: dict[str, dict] = {
    # Random, offline, runs in seconds on a CPU: for tests and examples.
    "tiny": dict(
        num_bins=16,
        image_encoder_type="timm", image_encoder="vit_tiny_patch16_224",
        image_encoder_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2),
        freeze_image_encoder=False,
        class_encoder_type="open_clip", class_encoder=None,
        class_encoder_kwargs=dict(embed_dim=32, vision_cfg=_TINY_VISION,
                                  text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1)),
        freeze_class_encoder=True,
        decoder_config=dict(n_embd=32, n_layer=1, n_head=2, n_positions=32, **_GELU),
    ),
    # The synthetic world: 64 px scenes, coarse bins, everything small enough to train on a CPU.
    # The image tower is random here; the synthetic budgets first pretrain it on the world's per-pixel
    # part labels (the "encoder" stage) and the location model then loads it frozen
    # (image_pretrained=<file>, freeze_image_encoder=True), as `base` freezes a pretrained ViT-B/16.
    # The class tower stays frozen and random: with few
    # classes, distinct random embeddings are all the decoder needs, and frozen features are memoised.
    # Patch 16 (a 4x4 grid): training is example-bound, and 16 image tokens instead of 64 make a
    # step about 3x cheaper for the same loss per example (measured: docs/experiments/synthetic-learning.md).
    # A 2-layer decoder with the class in the BOS token: pretraining reaches the 4-layer decoder's
    # held-out precision at equal examples for about 0.6x the compute (same page, "A leaner decoder").
    "synthetic": dict(
        num_bins=32,
        image_encoder_type="timm", image_encoder="vit_tiny_patch16_224",
        image_encoder_kwargs=dict(img_size=64, patch_size=16, embed_dim=128, depth=4, num_heads=4),
        freeze_image_encoder=False,
        class_encoder_type="open_clip", class_encoder=None,
        class_encoder_kwargs=dict(embed_dim=64, vision_cfg=_TINY_VISION,
                                  text_cfg=dict(context_length=16, vocab_size=49408, width=64, heads=4, layers=2)),
        freeze_class_encoder=True,
        decoder_config=dict(n_embd=128, n_layer=2, n_head=4, n_positions=128, **_GELU),
        class_as_bos=True,
    ),
    # The paper-sized model: ViT-B/16 at 224 (timm), open_clip ViT-B-32 text tower, GPT-2 small.
    "base": dict(
        num_bins=DEFAULT_NUM_BINS,
        image_encoder_type="timm", image_encoder="vit_base_patch16_224", image_encoder_kwargs={},
        freeze_image_encoder=True,
        class_encoder_type="open_clip", class_encoder="ViT-B-32", class_encoder_kwargs=None,
        freeze_class_encoder=True,
        decoder_config=dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024, **_GELU),
        _hub=dict(image_pretrained=True, class_pretrained="openai", decoder_pretrained="gpt2"),
    ),
}


def preset_fields(presets: dict, name: str, pretrained: bool, overrides: dict) -> dict:
    """The config fields of preset ``name``: its own fields, its ``_hub`` fields when ``pretrained``,
    then ``overrides``. Shared by every model family with presets (location model, text-mask model)."""
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    fields = copy.deepcopy(presets[name])
    hub = fields.pop("_hub", {})
    if pretrained:
        fields.update(hub)
    fields.update(overrides)
    return fields


class LocationModelConfig(PretrainedConfig):
    """Configuration of a ``LocationModel``.

    Image encoder: ``image_encoder_type`` ("timm" | "hf_vit"), ``image_encoder`` (timm model name,
    or a transformers id / folder), ``image_encoder_kwargs`` (timm ``create_model`` keywords, or a
    ``ViTConfig`` dict), ``image_pretrained`` (False, True = hub weights by name, or a local weights
    file for timm), ``freeze_image_encoder``. ``image_size`` / ``image_mean`` / ``image_std`` /
    ``interpolation`` are the encoder's preprocessing, resolved when the model is built.

    Class encoder: ``class_encoder_type`` ("open_clip" | "hf_clip" | "embedding"),
    ``class_encoder`` (open_clip architecture name, ``hf-hub:``/``local-dir:`` id, or a transformers
    id), ``class_encoder_kwargs`` (open_clip ``model_cfg`` / ``CLIPTextConfig`` dict),
    ``class_pretrained`` (open_clip tag or file, or True for transformers), ``class_prompt``
    (how a class name is turned into text), ``classes`` + ``class_embed_dim`` (closed vocabulary
    for the "embedding" table), ``freeze_class_encoder``.

    Decoder: ``decoder_config`` (``GPT2Config`` keywords), ``decoder_pretrained`` (a GPT-2 id whose
    transformer body is loaded; the coordinate vocabulary is always new). ``num_bins`` coordinate
    tokens plus one BOS token form the decoder's input vocabulary; its output head covers the
    ``num_bins`` coordinates only.

    ``region_conditioning``: the prefix also carries the asked region (``region_prefix.py``), so
    the model is p(box | image, class, region); ``LocationModel.enable_region_conditioning`` turns
    it on for a trained model.

    ``class_as_bos``: the class embedding is added to the BOS token instead of taking a token of its
    own. Every box then costs one decoder token fewer (four instead of five in training), and the
    prefix is one token shorter.

    ``fit_threshold``: this model's calibrated fit threshold (``locinsert eval --positional
    --calibrate --save-threshold`` writes it); fit verdicts use it instead of
    ``locinsert.fit.DEFAULT_FIT_THRESHOLD``. A better model puts less probability where an object
    has no room, so its threshold is lower. None: the library's default.

    Once a model is built, its config no longer asks for hub weights (they are in the checkpoint),
    so ``from_pretrained`` of a saved model never downloads encoder weights.
    """

    model_type = "locinsert"

    def __init__(
        self,
        num_bins: int = DEFAULT_NUM_BINS,
        image_encoder_type: str = "timm",
        image_encoder: str | None = "vit_base_patch16_224",
        image_encoder_kwargs: dict | None = None,
        image_pretrained: bool | str = False,
        freeze_image_encoder: bool = True,
        image_size: int | None = None,
        image_mean: list | None = None,
        image_std: list | None = None,
        interpolation: str | None = None,
        class_encoder_type: str = "open_clip",
        class_encoder: str | None = "ViT-B-32",
        class_encoder_kwargs: dict | None = None,
        class_pretrained: bool | str | None = None,
        class_prompt: str = "a photo of a {}",
        classes: list | None = None,
        class_embed_dim: int = 512,
        freeze_class_encoder: bool = True,
        decoder_config: dict | None = None,
        decoder_pretrained: str | None = None,
        weights_source: dict | None = None,
        region_conditioning: bool = False,
        class_as_bos: bool = False,
        fit_threshold: float | None = None,
        **kwargs,
    ):
        self.num_bins = check_int(num_bins, "num_bins", minimum=2)
        self.image_encoder_type = image_encoder_type
        self.image_encoder = image_encoder
        self.image_encoder_kwargs = dict(image_encoder_kwargs or {})
        self.image_pretrained = image_pretrained
        self.freeze_image_encoder = bool(freeze_image_encoder)
        self.image_size = image_size
        self.image_mean = image_mean
        self.image_std = image_std
        self.interpolation = interpolation
        self.class_encoder_type = class_encoder_type
        self.class_encoder = class_encoder
        self.class_encoder_kwargs = copy.deepcopy(class_encoder_kwargs)
        self.class_pretrained = class_pretrained
        self.class_prompt = class_prompt
        self.classes = list(classes) if classes else None
        self.class_embed_dim = check_int(class_embed_dim, "class_embed_dim", minimum=1)
        self.freeze_class_encoder = bool(freeze_class_encoder)
        self.decoder_config = dict(decoder_config or dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024))
        self.decoder_pretrained = decoder_pretrained
        # Where hub weights came from (provenance only; never used to download).
        self.weights_source = dict(weights_source or {})
        self.region_conditioning = bool(region_conditioning)
        self.class_as_bos = bool(class_as_bos)
        self.fit_threshold = check_float(fit_threshold, "fit_threshold", minimum=0, maximum=1, optional=True)
        super().__init__(**kwargs)
        if "{}" not in self.class_prompt:
            raise ValueError(f"class_prompt must contain '{{}}' for the class name, got {self.class_prompt!r}")

    @property
    def vocab_size(self) -> int:
        """Decoder input vocabulary: ``num_bins`` coordinate tokens + BOS."""
        return self.num_bins + 1

    @classmethod
    def preset(cls, name: str, pretrained: bool = True, **overrides) -> "LocationModelConfig":
        """A named configuration: "tiny", "synthetic" or "base" (see ``PRESETS``).

        ``pretrained`` only matters for presets with hub weights ("base"); tiny and synthetic are
        always random. Keyword ``overrides`` replace preset fields (e.g. ``num_bins=256``).
        """
        return cls(**preset_fields(PRESETS, name, pretrained, overrides))
