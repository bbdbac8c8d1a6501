"""What the options of every subcommand accept: one vocabulary, checked while the command line is read.

Cheap to import (no torch): ``add_arguments`` of every command reads it. Numbers, dtypes and the
one-line ``Parser`` come from ``locinsert.argtypes``; the choices from the library's registries, so a
backend registered there appears here, in ``--help`` and in the checks, with no other edit.
"""

from __future__ import annotations

from .. import argtypes
from ..argtypes import *  # noqa: F401,F403 (the vocabulary, re-exported)
from ..registry import BASELINES, INPAINTERS, REMOVERS, SEGMENTERS, TRAINING_STAGES

__all__ = argtypes.__all__ + ["INPAINTER_CHOICES", "REFERENCE_INPAINTER_CHOICES", "REMOVER_CHOICES",
                              "SEGMENTER_CHOICES", "BASELINE_CHOICES", "STAGE_CHOICES"]

INPAINTER_CHOICES = INPAINTERS.names()
REFERENCE_INPAINTER_CHOICES = INPAINTERS.names(reference=True)
REMOVER_CHOICES = REMOVERS.names()
SEGMENTER_CHOICES = SEGMENTERS.names()
BASELINE_CHOICES = BASELINES.names()
STAGE_CHOICES = TRAINING_STAGES.names()
