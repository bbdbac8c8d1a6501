"""Data: PIPE and OPA readers, preference pairs, feature cache and the synthetic placement world."""

from __future__ import annotations

import importlib

from .query import PlacementQuery

_EXPORTS = {
    "load_pipe": "locinsert.data.pipe",
    "load_opa": "locinsert.data.opa",
    "SkipReport": "locinsert.data.report",
    "preference_pairs": "locinsert.data.pairs",
    "FeatureCache": "locinsert.data.feature_cache",
    "hflip": "locinsert.data.augment",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name == "synthetic":
        return importlib.import_module("locinsert.data.synthetic")
    raise AttributeError(f"module 'locinsert.data' has no attribute {name!r}")


__all__ = ["PlacementQuery", "synthetic", *_EXPORTS]
