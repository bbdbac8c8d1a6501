"""Vocabularies of the command line, shared by every subcommand.

Cheap to import (no torch): ``add_arguments`` of every command reads it.
"""

from __future__ import annotations

# -- choices: built from the library's registries (locinsert/registry.py) -----------------------------
# A backend registered there appears here, in --help and in the checks, with no other edit.

from ..registry import BASELINES, INPAINTERS, REMOVERS, SEGMENTERS, TRAINING_STAGES

INPAINTER_CHOICES = INPAINTERS.names()
REFERENCE_INPAINTER_CHOICES = INPAINTERS.names(reference=True)
REMOVER_CHOICES = REMOVERS.names()
SEGMENTER_CHOICES = SEGMENTERS.names()
BASELINE_CHOICES = BASELINES.names()
STAGE_CHOICES = TRAINING_STAGES.names()
