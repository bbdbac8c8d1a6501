"""``locinsert demo``: the whole method offline on the synthetic world (``run``), its removal-and-move
section (``removal``) and the segmenter it trains for the app (``textmask``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # the public names: static tools read them here, lazy_exports loads each on first use
    from . import removal, run, textmask
    from .run import run_demo

__getattr__, __dir__, __all__ = lazy_exports(__name__)
