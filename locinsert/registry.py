"""Every pluggable part by name: inpainters, removers, segmenters, encoders, baselines, training stages.

A name (``--inpainter cutout``) maps to ``"module:attribute"``, imported only when used: the CLI builds its
choices without torch, and a backend's extras are needed only when it is chosen. A new backend is one line,
``INPAINTERS.register("mine", "locinsert.inpainting.mine:MyInpainter")``.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Iterator


class Registry:
    """Name -> ``"module:attribute"`` table of one kind of part (``kind`` names it in errors: "inpainter")."""

    def __init__(self, kind: str, entries: dict[str, str] | None = None):
        self.kind, self._entries = kind, {}
        for name, target in (entries or {}).items():
            self.register(name, target)

    def register(self, name: str, target: str, *, bind: dict[str, Any] | None = None, **tags: Any) -> None:
        """Add ``name`` -> ``target``; ``bind``: keywords always passed; ``tags``: what ``names`` filters on."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target must be 'module:attribute', got {target!r}")
        self._entries[name] = (target, bind or {}, tags)

    def names(self, **tags: Any) -> tuple[str, ...]:
        """The names in registration order; with ``tags``, those registered with these values."""
        return tuple(n for n, (_, _, t) in self._entries.items() if all(t.get(k) == v for k, v in tags.items()))

    def get(self, name: str) -> Callable:
        """The constructor of ``name``, imported now; ``ValueError`` listing the choices if unknown."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        (module, attribute), bind = self._entries[name][0].split(":"), self._entries[name][1]
        found = getattr(importlib.import_module(module), attribute)
        return functools.partial(found, **bind) if bind else found

    __getitem__ = get

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``get(name)(*args, **kwargs)``."""
        return self.get(name)(*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


_IN, _ENC = "locinsert.inpainting.", "locinsert.modeling.encoders:"

#: ``--inpainter``: draw an object inside a box. ``reference=True``: can insert a given object image.
INPAINTERS = Registry("inpainter")
INPAINTERS.register("cutout", _IN + "cutout:CutoutCompositor", reference=True)
INPAINTERS.register("gligen", _IN + "gligen:GLIGENInpainter")
INPAINTERS.register("powerpaint", _IN + "powerpaint:PowerPaintInpainter")
INPAINTERS.register("diffusers", _IN + "diffusers_inpaint:DiffusersInpainter")
INPAINTERS.register("paint-by-example", _IN + "paint_by_example:PaintByExampleInpainter", reference=True)
INPAINTERS.register("repaint", _IN + "repaint:ReferenceRePaintInpainter", reference=True)
#: ``--remover``: fill an object's mask with what was behind it.
REMOVERS = Registry("remover", {name: _IN + "removal:" + cls for name, cls in (
    ("biharmonic", "BiharmonicFill"), ("powerpaint", "PowerPaintRemover"), ("diffusers", "DiffusersRemover"))})
#: ``--segmenter``: find an object's mask from its name.
SEGMENTERS = Registry("segmenter", {"clipseg": "locinsert.segmentation.clipseg:CLIPSegSegmenter",
                                    "textmask": "locinsert.segmentation.textmask:TextMaskSegmenter"})
#: ``image_encoder_type`` of a ``LocationModelConfig``: ``(name, kwargs, pretrained) -> module``.
IMAGE_ENCODERS = Registry("image_encoder_type", {"timm": _ENC + "TimmImageEncoder",
                                                 "hf_vit": _ENC + "HFViTImageEncoder"})
#: ``class_encoder_type``: ``(name, kwargs, pretrained) -> module``; ``embedding``: ``(classes, dim)``.
CLASS_ENCODERS = Registry("class_encoder_type", {"open_clip": _ENC + "OpenCLIPTextEncoder",
                                                 "hf_clip": _ENC + "HFCLIPTextEncoder",
                                                 "embedding": _ENC + "ClassEmbedding"})
#: ``locinsert eval --model``: placement baselines, ``make(train_queries, num_bins)``.
BASELINES = Registry("baseline", {"random": "locinsert.evaluation.baselines:random_baseline",
                                  "prior": "locinsert.evaluation.baselines:prior_baseline"})
#: ``locinsert train <stage>``: ``main(argv, prog) -> exit code`` of each training run.
TRAINING_STAGES = Registry("training stage")
for _name in ("encoder", "pretrain", "finetune", "dpo"):
    TRAINING_STAGES.register(_name, "locinsert.training.stages:main", bind={"stage": _name})
for _name, _target in (("synthetic", "training.synthetic"), ("textmask", "segmentation.training"),
                       ("removal-lora", "training.removal_lora")):
    TRAINING_STAGES.register(_name, f"locinsert.{_target}:main")
