"""What the options of every subcommand accept: one vocabulary, checked while the command line is read.

Cheap to import (no torch): ``add_arguments`` of every command reads it.

Sections: numbers and dtypes (``locinsert.argtypes``, re-exported here); choices (from the library's
registries); the one-line parser (``Parser``, also from ``locinsert.argtypes``).
"""

from __future__ import annotations

__all__ = ["Parser", "positive_int", "non_negative_int", "seed", "port", "probability", "open_probability",
           "positive_float", "non_negative_float", "int_in", "float_in", "int_list", "dtype_name", "DTYPE_NAMES",
           "INPAINTER_CHOICES", "REFERENCE_INPAINTER_CHOICES", "REMOVER_CHOICES", "SEGMENTER_CHOICES",
           "BASELINE_CHOICES", "STAGE_CHOICES"]

# -- numbers and dtypes --------------------------------------------------------------------------------
from ..argtypes import (DTYPE_NAMES, Parser, dtype_name, float_in, int_in, int_list, non_negative_float,  # noqa: F401
                        non_negative_int, open_probability, port, positive_float, positive_int, probability,
                        seed)

# -- choices: built from the library's registries (locinsert/registry.py) -----------------------------
# A backend registered there appears here, in --help and in the checks, with no other edit.

from ..registry import BASELINES, INPAINTERS, REMOVERS, SEGMENTERS, TRAINING_STAGES

INPAINTER_CHOICES = INPAINTERS.names()
REFERENCE_INPAINTER_CHOICES = INPAINTERS.names(reference=True)
REMOVER_CHOICES = REMOVERS.names()
SEGMENTER_CHOICES = SEGMENTERS.names()
BASELINE_CHOICES = BASELINES.names()
STAGE_CHOICES = TRAINING_STAGES.names()

