"""Every pluggable part of the library, by name: one registry style for inpainters, removers, segmenters,
image and class encoders, baselines and training stages.

A :class:`Registry` maps a name (what a user types: ``--inpainter cutout``) to a constructor given as
``"module:attribute"``. Nothing is imported until a name is used, so the command line builds its
choices from these tables without loading torch, and a backend's optional dependencies are only
needed when it is chosen.

Adding a backend is one line here, next to its kind::

    INPAINTERS.register("my-inpainter", "locinsert.inpainting.mine:MyInpainter")

then ``INPAINTERS.create("my-inpainter", ...)`` builds it, ``locinsert insert --inpainter my-inpainter``
offers it, and ``INPAINTERS.names(reference=True)`` filters by the tags an entry was registered with.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Iterator


class Registry:
    """Name -> constructor table of one kind of part (see the module docstring).

    Args:
        kind: what the entries are, for error messages ("inpainter").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._targets: dict[str, str] = {}
        self._bound: dict[str, dict[str, Any]] = {}
        self._tags: dict[str, dict[str, Any]] = {}

    def register(self, name: str, target: str, *, bind: dict[str, Any] | None = None, **tags: Any) -> None:
        """Add ``name`` -> ``target`` (``"package.module:Attribute"``), with keywords ``bind`` always passed
        to it and optional tags to filter on."""
        if name in self._targets:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target must be 'module:attribute', got {target!r}")
        self._targets[name] = target
        self._bound[name] = dict(bind or {})
        self._tags[name] = tags

    def names(self, **tags: Any) -> tuple[str, ...]:
        """The registered names in registration order; with ``tags``, those registered with these values."""
        return tuple(n for n in self._targets if all(self._tags[n].get(k) == v for k, v in tags.items()))

    def get(self, name: str) -> Callable:
        """The constructor of ``name`` (imported now).

        Raises:
            ValueError: ``name`` is not registered; the message lists the choices.
        """
        if name not in self._targets:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._targets)}")
        module, attribute = self._targets[name].split(":")
        target = getattr(importlib.import_module(module), attribute)
        return functools.partial(target, **self._bound[name]) if self._bound[name] else target

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``get(name)(*args, **kwargs)``."""
        return self.get(name)(*args, **kwargs)

    def __getitem__(self, name: str) -> Callable:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)


#: ``--inpainter``: draw an object inside a box. ``reference=True``: can insert a given object image.
INPAINTERS = Registry("inpainter")
INPAINTERS.register("cutout", "locinsert.inpainting.cutout:CutoutCompositor", reference=True)
INPAINTERS.register("gligen", "locinsert.inpainting.gligen:GLIGENInpainter")
INPAINTERS.register("powerpaint", "locinsert.inpainting.powerpaint:PowerPaintInpainter")
INPAINTERS.register("diffusers", "locinsert.inpainting.diffusers_inpaint:DiffusersInpainter")
INPAINTERS.register("paint-by-example", "locinsert.inpainting.paint_by_example:PaintByExampleInpainter",
                    reference=True)
INPAINTERS.register("repaint", "locinsert.inpainting.repaint:ReferenceRePaintInpainter", reference=True)

#: ``--remover``: fill an object's mask with what was behind it.
REMOVERS = Registry("remover")
REMOVERS.register("biharmonic", "locinsert.inpainting.removal:BiharmonicFill")
REMOVERS.register("powerpaint", "locinsert.inpainting.removal:PowerPaintRemover")
REMOVERS.register("diffusers", "locinsert.inpainting.removal:DiffusersRemover")

#: ``--segmenter``: find an object's mask from its name.
SEGMENTERS = Registry("segmenter")
SEGMENTERS.register("clipseg", "locinsert.segmentation.clipseg:CLIPSegSegmenter")
SEGMENTERS.register("textmask", "locinsert.segmentation.textmask:TextMaskSegmenter")

#: ``image_encoder_type`` of a ``LocationModelConfig``: ``(name, kwargs, pretrained) -> module``.
IMAGE_ENCODERS = Registry("image_encoder_type")
IMAGE_ENCODERS.register("timm", "locinsert.modeling.encoders:TimmImageEncoder")
IMAGE_ENCODERS.register("hf_vit", "locinsert.modeling.encoders:HFViTImageEncoder")

#: ``class_encoder_type``: ``(name, kwargs, pretrained) -> module``; ``embedding``: ``(classes, dim)``.
CLASS_ENCODERS = Registry("class_encoder_type")
CLASS_ENCODERS.register("open_clip", "locinsert.modeling.encoders:OpenCLIPTextEncoder")
CLASS_ENCODERS.register("hf_clip", "locinsert.modeling.encoders:HFCLIPTextEncoder")
CLASS_ENCODERS.register("embedding", "locinsert.modeling.encoders:ClassEmbedding")

#: ``locinsert eval --model``: placement baselines, ``make(train_queries, num_bins)``.
BASELINES = Registry("baseline")
BASELINES.register("random", "locinsert.evaluation.baselines:random_baseline")
BASELINES.register("prior", "locinsert.evaluation.baselines:prior_baseline")

#: ``locinsert train <stage>``: ``main(argv, prog) -> exit code`` of each training run.
TRAINING_STAGES = Registry("training stage")
for _stage in ("encoder", "pretrain", "finetune", "dpo"):
    TRAINING_STAGES.register(_stage, "locinsert.training.stages:main", bind={"stage": _stage})
TRAINING_STAGES.register("synthetic", "locinsert.training.synthetic:main")
TRAINING_STAGES.register("textmask", "locinsert.segmentation.training:main")
TRAINING_STAGES.register("removal-lora", "locinsert.training.removal_lora:main")
