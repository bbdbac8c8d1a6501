"""remove / move instructions: verbs, where the object is, where it goes, sequences, bad input."""

import pytest

from locinsert.editing.instructions import (Instruction, MoveInstruction, Near, RemoveInstruction, has_verb,
                                    parse_instruction, parse_instructions)


@pytest.mark.parametrize("text, obj, where", [
    ("remove the cup on the left", "cup", "on the left"),
    ("Please erase a red mug.", "red mug", None),
    ("get rid of the chair in the top right corner", "chair", "in the top right corner"),
    ("delete the vase", "vase", None),
    ("take out the bird near the top", "bird", "near the top"),
])
def test_remove_names_the_object_and_where_it_is(text, obj, where):
    ins = parse_instruction(text)
    assert isinstance(ins, RemoveInstruction) and ins.verb == "remove"
    got_obj, region = ins                                   # unpacks as a 2-tuple, like Instruction
    assert got_obj == obj and (region.name if region else None) == where


def test_move_has_a_source_region_and_a_target():
    ins = parse_instruction("move the chair on the left to the right")
    assert isinstance(ins, MoveInstruction) and ins.verb == "move"
    assert ins.object == "chair" and ins.region.name == "on the left" and ins.target.name == "to the right"
    plain = parse_instruction("shift the cup left")
    assert plain.region is None and plain.target.resolve(100, 100).rect == (0.0, 0.0, 50.0, 100.0)
    near = parse_instruction("move the lamp next to the window")
    assert near.target == Near("window") and near.object == "lamp"
    assert parse_instruction("move the cup near a table").target == Near("table")


def test_verbs_are_part_of_equality_but_plain_tuples_still_compare():
    assert parse_instruction("remove the cup") != parse_instruction("add the cup")
    assert parse_instruction("remove the cup") == RemoveInstruction("cup", None)
    assert parse_instruction("add a dog") == ("dog", None) and Instruction("dog", None).verb == "add"


def test_sequences_mix_verbs():
    steps = parse_instructions("remove the cup, then add a plant on the left and move the vase to the right")
    assert [s.verb for s in steps] == ["remove", "add", "move"]
    assert [s.object for s in steps] == ["cup", "plant", "vase"]
    # a part without a verb continues a removal, and only a removal
    steps = parse_instructions("remove the cup and the plate on the right, then add a lamp and a vase")
    assert [(s.verb, s.object) for s in steps] == [("remove", "cup"), ("remove", "plate"), ("add", "lamp"),
                                                    ("add", "vase")]
    assert steps[1].region.name == "on the right"


@pytest.mark.parametrize("text, verb", [("add a cup", True), ("  Please move the vase left", True),
                                        ("erase the mug", True), ("the cup", False), ("addition", False)])
def test_has_verb(text, verb):
    assert has_verb(text) is verb


@pytest.mark.parametrize("text, match", [
    ("remove", "say what to remove"),
    ("remove the", "say what to remove"),
    ("erase on the left", "say what to remove"),
    ("move the cup", "say where to move it"),
    ("move to the left", "say what to move"),
    ("move the cup behind the sofa", "say where to move it"),
])
def test_bad_remove_and_move_instructions_are_clear_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_instruction(text)


def test_object_inserter_refuses_other_verbs():
    import numpy as np

    from locinsert.inpainting import CutoutCompositor
    from locinsert.editing.inserter import ObjectInserter

    class NeverSampled:   # the instruction is refused before any sampling
        def sample(self, *args, **kwargs):
            raise AssertionError("sampled")

    ins = ObjectInserter(NeverSampled(), CutoutCompositor(np.full((4, 4, 4), 255, np.uint8), allow_opaque=True))
    with pytest.raises(ValueError, match="ObjectEditor"):
        ins(np.zeros((32, 32, 3), np.uint8), "remove the cup")
    with pytest.raises(ValueError, match="ObjectEditor"):
        ins(np.zeros((32, 32, 3), np.uint8), [parse_instruction("move the cup to the left")])
