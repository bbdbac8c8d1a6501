"""locinsert: spatially aware object insertion.

A location model samples plausible boxes for an object class in an image; a pluggable inpainter
draws the object inside the chosen box and leaves every pixel outside it unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:  # the public names: static tools read them here, lazy_exports loads each on first use
    from . import (bench, boxes, copypaste, data, demo, editing, evaluation, fit, images, inpainting, modeling,
                   regions, registry, segmentation, training)
    from .modeling import LocationModelConfig, LocationModel, BoxSamples
    from .regions import Region
    from .editing.instructions import parse_instruction
    from .editing.inserter import ObjectInserter
    from .editing.editor import ObjectEditor
    from .fit import FitVerdict, RegionDoesNotFit
    from .data.query import PlacementQuery
    from .images import load_image

__getattr__, __dir__, __all__ = lazy_exports(__name__)
