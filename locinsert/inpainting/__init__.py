"""Inpainters: draw an object inside a box and leave every pixel outside it unchanged.

All backends share ``inpaint(image, box, prompt, generator=None, reference=None) -> PIL.Image``
(``base.Inpainter``):

- ``GLIGENInpainter``: box-grounded SD inpainting (``StableDiffusionGLIGENPipeline``);
- ``PowerPaintInpainter``: PowerPaint-v1 weights on the stock ``StableDiffusionInpaintPipeline``;
- ``DiffusersInpainter``: any ``AutoPipelineForInpainting`` checkpoint, or ``FluxFillPipeline``;
- ``CutoutCompositor``: pastes an RGBA cut-out (offline, no model).

``reference=`` (a photo or cut-out of the very object to insert, ``reference.py``) is taken by
``PaintByExampleInpainter`` (exemplar-conditioned), ``ReferenceRePaintInpainter`` (RePaint
resampling with the reference in the hole, on any SD inpainting pipeline) and ``CutoutCompositor``
(the reference is the cut-out); the text-only backends answer it with a ``ValueError``.

Removal backends share ``remove(image, mask, generator=None) -> PIL.Image`` (``removal.Remover``):
``BiharmonicFill`` (offline), ``DiffusersRemover`` (any inpainting pipeline, empty prompt, optional
LoRA via ``load_lora``) and ``PowerPaintRemover`` (PowerPaint v1's ``P_ctxt`` removal task).

diffusers is imported only when a backend loads a pipeline or runs one.
"""

from .base import ContextCrop, DiffusionInpainter, Inpainter, box_mask, paste_inside, pixel_box
from .cutout import CutoutCompositor, as_cutout
from .diffusers_inpaint import DiffusersInpainter
from .gligen import GLIGENInpainter
from .lora import load_lora
from .paint_by_example import PaintByExampleInpainter
from .powerpaint import PowerPaintInpainter
from .reference import Reference, as_reference
from .removal import REMOVERS, BiharmonicFill, DiffusersRemover, PowerPaintRemover, Remover, dilate_mask
from .repaint import SCHEDULES, ReferenceRePaintInpainter
from ..registry import INPAINTERS

#: ``--inpainter`` names of the command line (``locinsert.registry.INPAINTERS``).
BACKENDS = INPAINTERS

__all__ = ["Inpainter", "DiffusionInpainter", "ContextCrop", "GLIGENInpainter", "PowerPaintInpainter",
           "DiffusersInpainter", "CutoutCompositor", "as_cutout", "PaintByExampleInpainter",
           "ReferenceRePaintInpainter", "SCHEDULES", "Reference", "as_reference", "paste_inside", "pixel_box", "box_mask",
           "BACKENDS", "Remover", "BiharmonicFill", "DiffusersRemover", "PowerPaintRemover", "REMOVERS",
           "dilate_mask", "load_lora"]
