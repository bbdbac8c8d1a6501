"""Positional instructions -> (object, Region)."""

import pytest

from locinsert import parse_instruction
from locinsert.editing.instructions import Instruction, parse_instructions
from locinsert.regions import Region


def rect(region: Region, W=100, H=100):
    return region.resolve(W, H).rect


@pytest.mark.parametrize("text, obj, box", [
    ("add a red mug on the left side", "red mug", (0, 0, 50, 100)),
    ("Insert a bird near the top.", "bird", (0, 0, 100, 100 / 3)),
    ("put the lamp in the top-right corner", "lamp", (50, 0, 100, 50)),
    ("place an apple in the centre please", "apple", (25, 25, 75, 75)),
    ("draw a dog at the bottom", "dog", (0, 50, 100, 100)),
    ("add a cat in the lower left", "cat", (0, 50, 50, 100)),
    ("a vase on the right", "vase", (50, 0, 100, 100)),
    ("add a cup to the far left", "cup", (0, 0, 50, 100)),
    ("add two small birds in the middle of the image", "two small birds", (25, 25, 75, 75)),
])
def test_location_phrases(text, obj, box):
    got_obj, region = parse_instruction(text)          # unpacks as a 2-tuple
    assert got_obj == obj
    assert rect(region) == pytest.approx(box)
    assert region.mode == "center"


def test_named_tuple_fields():
    ins = parse_instruction("add a red mug on the left")
    assert isinstance(ins, Instruction) and ins.object == "red mug" and ins.region is not None


@pytest.mark.parametrize("text, obj", [("add a dog", "dog"), ("a top hat", "top hat"), ("insert the plant", "plant")])
def test_no_location_means_anywhere(text, obj):
    assert parse_instruction(text) == (obj, None)


def test_unknown_location_keeps_phrase_in_object_or_raises_when_strict():
    obj, region = parse_instruction("add a cup behind the sofa")
    assert (obj, region) == ("cup behind the sofa", None)
    assert parse_instruction("add a cup on the left of the sofa").region is None
    with pytest.raises(ValueError, match="not understood"):
        parse_instruction("add a cup behind the sofa", strict=True)
    assert parse_instruction("add a cup on the left", strict=True).object == "cup"


@pytest.mark.parametrize("text", ["add on the left", "", "   ", "add a", "add an", "insert", "on the top left"])
def test_no_object_is_a_clear_error(text):
    with pytest.raises(ValueError, match="no object"):
        parse_instruction(text)


def test_not_a_string_is_a_type_error():
    with pytest.raises(TypeError):
        parse_instruction(None)


def test_sequences():
    steps = parse_instructions("add a cup on the left, then a lamp on the right")
    assert [s.object for s in steps] == ["cup", "lamp"]
    assert rect(steps[0].region)[2] == 50 and rect(steps[1].region)[0] == 50
    steps = parse_instructions("add a cup; add a dog at the bottom and then put a bird near the top")
    assert [s.object for s in steps] == ["cup", "dog", "bird"]
    assert steps[0].region is None
    assert parse_instructions("add a salt and pepper shaker") == [("salt and pepper shaker", None)]
    steps = parse_instructions("add a cat on the left and a dog on the right")
    assert [s.object for s in steps] == ["cat", "dog"] and rect(steps[1].region)[0] == 50
    with pytest.raises(ValueError, match="no object"):
        parse_instructions("add a cup, then on the left")
