"""Editing an image from an instruction: the grammar (``instructions``), insertion (``inserter``), removing and
moving (``editor``), CLIP zero-shot classification of a reference object (``zero_shot``) and the edit metrics
(``metrics``), and the positional-prompt benchmark on the synthetic world (``positional``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # the public names: static tools read them here, lazy_exports loads each on first use
    from . import editor, inserter, instructions, metrics, positional, zero_shot
    from .editor import ObjectEditor
    from .inserter import ObjectInserter
    from .instructions import parse_instruction, parse_instructions

__getattr__, __dir__, __all__ = lazy_exports(__name__)
