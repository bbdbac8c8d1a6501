"""Data: PIPE and OPA readers, preference pairs, feature cache and the synthetic placement world."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .query import PlacementQuery

if TYPE_CHECKING:  # the public names: static tools read them here, lazy_exports loads each on first use
    from . import synthetic
    from .query import PlacementQuery
    from .pipe import load_pipe
    from .opa import load_opa
    from .report import SkipReport
    from .pairs import preference_pairs
    from .feature_cache import FeatureCache
    from .augment import hflip

__getattr__, __dir__, __all__ = lazy_exports(__name__)
