"""Image and class encoders behind one small interface.

Image encoders map ``pixel_values`` (B, 3, S, S) to token features (B, T, D); class encoders map a
list of class names to pooled features (B, D). Both are built from ``LocationModelConfig`` fields:

- image: a timm ViT (``image_encoder_type="timm"``) or a transformers ``ViTModel`` (``"hf_vit"``);
- class: an open_clip text tower (``"open_clip"``), a transformers ``CLIPTextModel``
  (``"hf_clip"``) or a learned embedding table over a fixed class list (``"embedding"``).

Hub weights are fetched only when the config asks for them (``*_pretrained``); the model then
writes the resolved architecture back into the config and clears the flag, because from that point
on the weights live in the location model's own checkpoint.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn


# -- image encoders ----------------------------------------------------------------------------

class TimmImageEncoder(nn.Module):
    """A timm ViT without its head; ``forward`` returns all tokens after the final norm."""

    def __init__(self, name: str, kwargs: dict | None = None, pretrained=False):
        super().__init__()
        import timm

        kwargs = dict(kwargs or {})
        if isinstance(pretrained, str):  # a local weights file: timm's own loader, like a hub name
            kwargs["pretrained_cfg_overlay"] = dict(file=pretrained)
            pretrained = True
        self.model = timm.create_model(name, pretrained=bool(pretrained), num_classes=0, **kwargs)
        self.dim = self.model.num_features

    def data_config(self) -> dict:
        import timm.data

        cfg = timm.data.resolve_data_config(model=self.model)
        size = getattr(getattr(self.model, "patch_embed", None), "img_size", None)  # the size actually built
        return dict(image_size=int(size[-1] if size else cfg["input_size"][-1]), image_mean=list(cfg["mean"]),
                    image_std=list(cfg["std"]), interpolation=cfg.get("interpolation", "bicubic"))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(pixel_values)


class HFViTImageEncoder(nn.Module):
    """A transformers ``ViTModel`` (no pooler); ``forward`` returns ``last_hidden_state``."""

    def __init__(self, name: str | None, kwargs: dict | None = None, pretrained=False):
        super().__init__()
        from transformers import ViTConfig, ViTModel

        if pretrained:
            self.model = ViTModel.from_pretrained(name, add_pooling_layer=False)
        else:
            self.model = ViTModel(ViTConfig(**(kwargs or {})), add_pooling_layer=False)
        self.dim = self.model.config.hidden_size
        self._processor_source = name if pretrained else None

    def architecture(self) -> dict:
        return self.model.config.to_diff_dict()

    def data_config(self) -> dict:
        from transformers import AutoImageProcessor

        mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]  # ViTImageProcessor's defaults
        if self._processor_source is not None:
            try:
                proc = AutoImageProcessor.from_pretrained(self._processor_source)
                mean, std = list(proc.image_mean), list(proc.image_std)
            except (OSError, ValueError):
                pass  # no preprocessor_config.json next to the weights: keep ViT's defaults
        return dict(image_size=int(self.model.config.image_size), image_mean=mean, image_std=std,
                    interpolation="bilinear")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state


def build_image_encoder(config) -> nn.Module:
    """The image tower named by ``config.image_encoder_type`` (``locinsert.registry.IMAGE_ENCODERS``)."""
    from ..registry import IMAGE_ENCODERS

    return IMAGE_ENCODERS.create(config.image_encoder_type, config.image_encoder, config.image_encoder_kwargs,
                                 config.image_pretrained)


class ImagePreprocessor:
    """PIL images -> normalised ``pixel_values``: squash-resize to the encoder's input size.

    No centre crop: boxes are predicted for the *whole* image, so the model must see all of it.
    For timm this is ``timm.data.create_transform`` with ``crop_mode="squash"``; for a transformers
    ViT it is ``ViTImageProcessor`` with the same size and statistics.
    """

    def __init__(self, kind: str, image_size: int, mean: Sequence[float], std: Sequence[float],
                 interpolation: str = "bicubic"):
        self.kind = kind
        if kind == "timm":
            import timm.data

            self.transform = timm.data.create_transform(
                input_size=(3, image_size, image_size), interpolation=interpolation, mean=tuple(mean),
                std=tuple(std), crop_pct=1.0, crop_mode="squash")
            self.image_size = int(image_size)
            self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
            self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        else:
            from transformers import ViTImageProcessor

            self.processor = ViTImageProcessor(size={"height": image_size, "width": image_size},
                                               image_mean=list(mean), image_std=list(std))

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if self.kind == "timm":
            return torch.stack([self._at_size(im) if self._is_input_size(im) else self.transform(im)
                                for im in images])
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]

    def _is_input_size(self, im: Image.Image) -> bool:
        return im.mode == "RGB" and im.size == (self.image_size, self.image_size)

    def _at_size(self, im: Image.Image) -> torch.Tensor:
        # An image already at the input size: resizing and cropping it are the identity, so only the
        # transform's to_tensor and normalise steps remain, done here with the same operations (the
        # same numbers) without the transform's per-step overhead, which is most of the cost at 64 px.
        x = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        return x.to(torch.float32).div(255).sub_(self.mean).div_(self.std)


# -- class encoders ----------------------------------------------------------------------------

def _open_clip_text_only(clip: nn.Module) -> nn.Module:
    # Only the text tower is used; dropping the image tower saves most of the memory.
    for name in ("visual", "logit_scale", "logit_bias"):
        if hasattr(clip, name):
            delattr(clip, name)
    return clip


class OpenCLIPTextEncoder(nn.Module):
    """An open_clip text tower; ``forward`` returns the projected, pooled text embedding.

    ``name`` is a built-in open_clip architecture ("ViT-B-32"), ``hf-hub:org/repo`` or
    ``local-dir:/path`` (both read ``open_clip_config.json`` + weights, the same code path), or
    ``None`` with ``model_cfg`` giving the architecture (a random or saved tower).
    """

    def __init__(self, name: str | None, model_cfg: dict | None = None, pretrained=None):
        super().__init__()
        import open_clip

        if name is not None and model_cfg is None:
            schema_name = name.startswith(("hf-hub:", "local-dir:"))
            load = bool(pretrained) or schema_name
            clip = open_clip.create_model(name, pretrained=None if schema_name else (pretrained or None),
                                          load_weights=load, pretrained_text=load)
            self.tokenizer = open_clip.get_tokenizer(name)
            self.model_cfg = _resolved_model_cfg(name)
        else:
            if model_cfg is None:
                raise ValueError("open_clip class encoder needs a model name or a model_cfg")
            self.model_cfg = copy.deepcopy(model_cfg)
            clip = _clip_from_cfg(self.model_cfg)
            text_cfg = self.model_cfg.get("text_cfg", {})
            if text_cfg.get("hf_tokenizer_name"):
                self.tokenizer = open_clip.tokenizer.HFTokenizer(
                    text_cfg["hf_tokenizer_name"], context_length=text_cfg.get("context_length", 77))
            else:
                self.tokenizer = open_clip.tokenizer.SimpleTokenizer(
                    context_length=text_cfg.get("context_length", 77))
        self.clip = _open_clip_text_only(clip)
        self.dim = int(self.model_cfg["embed_dim"])

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        device = next(self.clip.parameters()).device
        tokens = self.tokenizer(list(texts)).to(device)
        return self.clip.encode_text(tokens)


def _resolved_model_cfg(name: str) -> dict:
    """The architecture dict behind an open_clip name, so a saved model can rebuild it offline."""
    import json
    from pathlib import Path

    import open_clip

    if name.startswith("local-dir:"):
        return json.loads((Path(name[len("local-dir:"):]) / "open_clip_config.json").read_text())["model_cfg"]
    if name.startswith("hf-hub:"):
        from open_clip.factory import _get_hf_config

        return _get_hf_config(name[len("hf-hub:"):])["model_cfg"]
    cfg = open_clip.get_model_config(name.replace("/", "-"))
    if cfg is None:
        raise ValueError(f"unknown open_clip architecture {name!r}")
    return copy.deepcopy(cfg)


def _clip_from_cfg(model_cfg: dict) -> nn.Module:
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(model_cfg)
    cfg.pop("custom_text", None)
    custom = model_cfg.get("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "hf_model_name" in cfg.get("text_cfg", {}):
        cfg["text_cfg"]["hf_model_pretrained"] = False
    return (CustomTextCLIP if custom else CLIP)(**cfg)


class HFCLIPTextEncoder(nn.Module):
    """A transformers ``CLIPTextModel``; ``forward`` returns ``pooler_output`` (the EOS token).

    Tokenised with open_clip's copy of the OpenAI CLIP BPE vocabulary (the same ids as
    ``CLIPTokenizer``; shipped with open_clip, so it works offline and is identical before
    saving and after loading).
    """

    CLIP_VOCAB = 49408

    def __init__(self, name: str | None, kwargs: dict | None = None, pretrained=False):
        super().__init__()
        import open_clip
        from transformers import CLIPTextConfig, CLIPTextModel

        if pretrained:
            self.model = CLIPTextModel.from_pretrained(name)
        else:
            self.model = CLIPTextModel(CLIPTextConfig(**(kwargs or {})))
        if self.model.config.vocab_size != self.CLIP_VOCAB:
            raise ValueError(f"hf_clip class encoders must use the CLIP BPE vocabulary ({self.CLIP_VOCAB} tokens), "
                             f"got vocab_size={self.model.config.vocab_size}")
        self.dim = self.model.config.hidden_size
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(
            context_length=min(77, int(self.model.config.max_position_embeddings)))

    def architecture(self) -> dict:
        return self.model.config.to_diff_dict()

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        ids = self.tokenizer(list(texts)).to(next(self.model.parameters()).device)
        return self.model(input_ids=ids, attention_mask=(ids != 0).long()).pooler_output


class ClassEmbedding(nn.Module):
    """A learned table for a closed class vocabulary (``config.classes``); unknown names raise."""

    def __init__(self, classes: Sequence[str], dim: int):
        super().__init__()
        if not classes:
            raise ValueError("class_encoder_type='embedding' needs config.classes (the closed vocabulary)")
        self.classes = list(classes)
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.table = nn.Embedding(len(self.classes), dim)
        nn.init.normal_(self.table.weight, std=0.02)
        self.dim = dim

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        unknown = [t for t in texts if t not in self.index]
        if unknown:
            raise ValueError(f"unknown class {unknown[0]!r}; this model knows {self.classes}")
        ids = torch.tensor([self.index[t] for t in texts], device=self.table.weight.device)
        return self.table(ids)


def build_class_encoder(config) -> nn.Module:
    """The class encoder named by ``config.class_encoder_type`` (``locinsert.registry.CLASS_ENCODERS``)."""
    from ..registry import CLASS_ENCODERS

    if config.class_encoder_type == "embedding":  # a table over the config's own classes
        return CLASS_ENCODERS.create("embedding", config.classes, int(config.class_embed_dim))
    return CLASS_ENCODERS.create(config.class_encoder_type, config.class_encoder, config.class_encoder_kwargs,
                                 config.class_pretrained)
