"""One registry style: every pluggable part by name, lazily imported, and the CLI's choices built from it."""

import subprocess
import sys

import pytest

from locinsert import registry
from locinsert.registry import Registry

ALL = (registry.INPAINTERS, registry.REMOVERS, registry.SEGMENTERS, registry.IMAGE_ENCODERS,
       registry.CLASS_ENCODERS, registry.BASELINES, registry.TRAINING_STAGES)


def test_every_registered_name_resolves_to_a_callable():
    for table in ALL:
        assert table.names()
        for name in table:
            assert callable(table.get(name)), (table.kind, name)


def test_unknown_names_and_bad_entries_are_clear_errors():
    with pytest.raises(ValueError, match="unknown inpainter 'dalle'; choose one of cutout, gligen"):
        registry.INPAINTERS.get("dalle")
    table = Registry("thing")
    table.register("a", "json:dumps", fast=True)
    table.register("b", "json:loads")
    with pytest.raises(ValueError, match="registered twice"):
        table.register("a", "json:dumps")
    with pytest.raises(ValueError, match="module:attribute"):
        table.register("c", "json.dumps")
    assert table.names() == ("a", "b") and table.names(fast=True) == ("a",)
    assert table.create("a", [1]) == "[1]" and "b" in table and "z" not in table


def test_bound_keywords_and_library_tables_are_the_registries():
    from locinsert import inpainting
    from locinsert.evaluation import BASELINES, RandomBoxes, make_baseline

    assert inpainting.BACKENDS is registry.INPAINTERS and inpainting.REMOVERS is registry.REMOVERS
    assert inpainting.BACKENDS["cutout"] is inpainting.CutoutCompositor
    assert BASELINES == ("random", "prior") and isinstance(make_baseline("random", num_bins=8), RandomBoxes)
    from locinsert.training import stages

    main = registry.TRAINING_STAGES.get("dpo")
    assert main.func is stages.main and main.keywords == {"stage": "dpo"}


def test_cli_choices_come_from_the_registries_without_importing_torch():
    code = ("import sys; from locinsert.cli import options; "
            "print(options.INPAINTER_CHOICES, options.REFERENCE_INPAINTER_CHOICES, options.STAGE_CHOICES); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[1] == "False"
    assert "'removal-lora'" in out[0] and "('cutout', 'paint-by-example', 'repaint')" in out[0]
