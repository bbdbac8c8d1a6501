"""locinsert: spatially aware object insertion.

A location model samples plausible boxes for an object class in an image; a pluggable inpainter
draws the object inside the chosen box and leaves every pixel outside it unchanged.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

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
_SUBMODULES = {"boxes", "data", "evaluation", "inpainting", "metrics", "modeling", "training", "regions",
               "images", "instructions", "inserter", "bench", "demo", "reference_class", "segmentation",
               "editor", "copypaste"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"locinsert.{name}")
    raise AttributeError(f"module 'locinsert' has no attribute {name!r}")
