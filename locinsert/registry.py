"""Every pluggable part of the library by name: inpainters, removers, segmenters, image and class encoders,
baselines and training stages.

A :class:`Registry` maps a name (``--inpainter cutout``) to ``"module:attribute"`` and imports it only
when the name is used, so the CLI builds its choices without loading torch and a backend's optional
dependencies are needed only when it is chosen. Adding a backend is one line next to its kind::

    INPAINTERS.register("my-inpainter", "locinsert.inpainting.mine:MyInpainter")
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Iterator


class Registry:
    """Name -> constructor table of one kind of part.

    Args:
        kind: what the entries are, for error messages ("inpainter").
        entries: ``{name: "module:attribute"}`` to register at once.
    """

    def __init__(self, kind: str, entries: dict[str, str] | None = None):
        self.kind = kind
        self._entries: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
        for name, target in (entries or {}).items():
            self.register(name, target)

    def register(self, name: str, target: str, *, bind: dict[str, Any] | None = None, **tags: Any) -> None:
        """Add ``name`` -> ``target``; ``bind``: keywords always passed to it; ``tags``: what ``names`` filters on."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target must be 'module:attribute', got {target!r}")
        self._entries[name] = (target, dict(bind or {}), tags)

    def names(self, **tags: Any) -> tuple[str, ...]:
        """The names in registration order; with ``tags``, those registered with these values."""
        return tuple(n for n, (_, _, t) in self._entries.items() if all(t.get(k) == v for k, v in tags.items()))

    def get(self, name: str) -> Callable:
        """The constructor of ``name``, imported now; ``ValueError`` listing the choices if unknown."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        target, bind, _ = self._entries[name]
        module, attribute = target.split(":")
        found = getattr(importlib.import_module(module), attribute)
        return functools.partial(found, **bind) if bind else found

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``get(name)(*args, **kwargs)``."""
        return self.get(name)(*args, **kwargs)

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


_INPAINTING = "locinsert.inpainting."
_ENCODERS = "locinsert.modeling.encoders:"

#: ``--inpainter``: draw an object inside a box. ``reference=True``: can insert a given object image.
INPAINTERS = Registry("inpainter")
INPAINTERS.register("cutout", _INPAINTING + "cutout:CutoutCompositor", reference=True)
INPAINTERS.register("gligen", _INPAINTING + "gligen:GLIGENInpainter")
INPAINTERS.register("powerpaint", _INPAINTING + "powerpaint:PowerPaintInpainter")
INPAINTERS.register("diffusers", _INPAINTING + "diffusers_inpaint:DiffusersInpainter")
INPAINTERS.register("paint-by-example", _INPAINTING + "paint_by_example:PaintByExampleInpainter", reference=True)
INPAINTERS.register("repaint", _INPAINTING + "repaint:ReferenceRePaintInpainter", reference=True)

#: ``--remover``: fill an object's mask with what was behind it.
REMOVERS = Registry("remover", {name: _INPAINTING + "removal:" + cls for name, cls in (
    ("biharmonic", "BiharmonicFill"), ("powerpaint", "PowerPaintRemover"), ("diffusers", "DiffusersRemover"))})

#: ``--segmenter``: find an object's mask from its name.
SEGMENTERS = Registry("segmenter", {"clipseg": "locinsert.segmentation.clipseg:CLIPSegSegmenter",
                                    "textmask": "locinsert.segmentation.textmask:TextMaskSegmenter"})

#: ``image_encoder_type`` of a ``LocationModelConfig``: ``(name, kwargs, pretrained) -> module``.
IMAGE_ENCODERS = Registry("image_encoder_type", {"timm": _ENCODERS + "TimmImageEncoder",
                                                 "hf_vit": _ENCODERS + "HFViTImageEncoder"})

#: ``class_encoder_type``: ``(name, kwargs, pretrained) -> module``; ``embedding``: ``(classes, dim)``.
CLASS_ENCODERS = Registry("class_encoder_type", {"open_clip": _ENCODERS + "OpenCLIPTextEncoder",
                                                 "hf_clip": _ENCODERS + "HFCLIPTextEncoder",
                                                 "embedding": _ENCODERS + "ClassEmbedding"})

#: ``locinsert eval --model``: placement baselines, ``make(train_queries, num_bins)``.
BASELINES = Registry("baseline", {"random": "locinsert.evaluation.baselines:random_baseline",
                                  "prior": "locinsert.evaluation.baselines:prior_baseline"})

#: ``locinsert train <stage>``: ``main(argv, prog) -> exit code`` of each training run.
TRAINING_STAGES = Registry("training stage")
for _stage in ("encoder", "pretrain", "finetune", "dpo"):
    TRAINING_STAGES.register(_stage, "locinsert.training.stages:main", bind={"stage": _stage})
TRAINING_STAGES.register("synthetic", "locinsert.training.synthetic:main")
TRAINING_STAGES.register("textmask", "locinsert.segmentation.training:main")
TRAINING_STAGES.register("removal-lora", "locinsert.training.removal_lora:main")
