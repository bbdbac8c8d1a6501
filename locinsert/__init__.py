"""locinsert: spatially aware object insertion.

A location model samples plausible boxes for an object class in an image; a pluggable inpainter
draws the object inside the chosen box and leaves every pixel outside it unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:  # what static tools read; at run time the names load on first use
    from . import (bench, boxes, data, demo, editor, evaluation, images, inpainting, inserter, instructions, metrics,
                   modeling, reference_class, registry, regions, segmentation, training)
    from .modeling import LocationModelConfig, LocationModel, BoxSamples
    from .regions import Region
    from .instructions import parse_instruction
    from .inserter import ObjectInserter
    from .editor import ObjectEditor
    from .data.query import PlacementQuery
    from .images import load_image

# Public names -> the module that defines them. Imported on first use so that `import locinsert`
# stays cheap and the command line starts fast.
_EXPORTS = {
    "LocationModelConfig": "locinsert.modeling",
    "LocationModel": "locinsert.modeling",
    "BoxSamples": "locinsert.modeling",
    "Region": "locinsert.regions",
    "parse_instruction": "locinsert.instructions",
    "ObjectInserter": "locinsert.inserter",
    "ObjectEditor": "locinsert.editor",
    "PlacementQuery": "locinsert.data.query",
    "load_image": "locinsert.images",
}
_SUBMODULES = ("bench", "boxes", "data", "demo", "editor", "evaluation", "images", "inpainting", "inserter",
               "instructions", "metrics", "modeling", "reference_class", "registry", "regions", "segmentation",
               "training")

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
