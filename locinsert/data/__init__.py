"""Data: PIPE and OPA readers, preference pairs, feature cache and the synthetic placement world."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .query import PlacementQuery

if TYPE_CHECKING:  # what static tools read; at run time the names load on first use
    from . import synthetic
    from .pipe import load_pipe
    from .opa import load_opa
    from .report import SkipReport
    from .pairs import preference_pairs
    from .feature_cache import FeatureCache
    from .augment import hflip

_EXPORTS = {
    "PlacementQuery": "locinsert.data.query",
    "load_pipe": "locinsert.data.pipe",
    "load_opa": "locinsert.data.opa",
    "SkipReport": "locinsert.data.report",
    "preference_pairs": "locinsert.data.pairs",
    "FeatureCache": "locinsert.data.feature_cache",
    "hflip": "locinsert.data.augment",
}
_SUBMODULES = ("synthetic",)

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
