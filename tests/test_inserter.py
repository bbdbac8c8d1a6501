"""ObjectInserter with the real tiny LocationModel (random weights) and the cut-out backend."""

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert import ObjectInserter, Region
from locinsert.boxes import box_iou
from locinsert.inpainting import CutoutCompositor, box_mask
from locinsert.editing.inserter import Candidates, distinct_boxes, overlay, select_box


def disc(size=16):
    a = np.zeros((size, size, 4), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    a[(yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= (size / 2) ** 2] = (0, 220, 0, 255)
    return Image.fromarray(a, "RGBA")


@pytest.fixture
def image():
    return Image.fromarray(np.random.RandomState(0).randint(0, 200, (48, 72, 3), dtype=np.uint8))


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_single_insertion_picks_most_likely_box_in_region(model, image):
    ins = ObjectInserter(model, CutoutCompositor(disc(), fit="stretch"), num_candidates=8)
    out = ins(image, "add a cup on the left", generator=seeded())
    assert out.object == "cup" and out.region.name == "on the left"
    assert out.image.size == image.size and len(out.candidates) == 8
    assert out.candidates.logprobs.argmax() == out.steps[0].index
    assert torch.equal(out.box, out.candidates.boxes[out.steps[0].index])
    cx = (out.candidates.boxes[:, 0] + out.candidates.boxes[:, 2]) / 2
    assert (cx <= 36).all()                               # centre mode, left half of a 72 px image
    m = box_mask(out.box.tolist(), *image.size)
    a, b = np.asarray(image), np.asarray(out.image)
    assert np.array_equal(a[~m], b[~m]) and not np.array_equal(a[m], b[m])


def test_reproducible_from_a_generator(model, image):
    ins = ObjectInserter(model, CutoutCompositor(disc(), fit="stretch"), num_candidates=6, selection="random")
    a = ins(image, "add a dog", generator=seeded(3))
    b = ins(image, "add a dog", generator=seeded(3))
    assert torch.equal(a.candidates.boxes, b.candidates.boxes) and torch.equal(a.box, b.box)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_sequence_sees_previous_edit_and_avoids_previous_boxes(model, image):
    ins = ObjectInserter(model, CutoutCompositor(disc(), fit="stretch"), num_candidates=8)
    out = ins(image, "add a cup on the left, then a lamp", generator=seeded(1))
    assert [s.object for s in out.steps] == ["cup", "lamp"] and out.object == "lamp"
    first, second = out.steps
    inter = box_iou(second.candidates.boxes, first.box[None])
    assert (inter == 0).all()                             # every candidate of step 2 avoids box 1
    m1 = box_mask(first.box.tolist(), *image.size)
    assert np.array_equal(np.asarray(out.image)[m1], np.asarray(first.image)[m1])   # edit 1 survives
    assert out.boxes.shape == (2, 4) and out.image is second.image


def test_region_override_avoid_boxes_and_instruction_objects(model, image):
    from locinsert.editing.instructions import Instruction

    ins = ObjectInserter(model, CutoutCompositor(disc(), fit="stretch"), num_candidates=6)
    keep_free = [[0, 0, 72, 20]]
    out = ins(image, [Instruction("plant", None)], generator=seeded(), region="bottom", avoid=keep_free)
    boxes = out.candidates.boxes
    assert ((boxes[:, 1] + boxes[:, 3]) / 2 >= 24).all()
    assert (box_iou(boxes, torch.tensor(keep_free, dtype=torch.float32)) == 0).all()


def test_bad_inputs_fail_clearly(model, image):
    comp = CutoutCompositor(disc())
    with pytest.raises(TypeError, match="sample"):
        ObjectInserter(object(), comp)
    with pytest.raises(TypeError, match="inpaint"):
        ObjectInserter(model, object())
    with pytest.raises(ValueError, match="selection"):
        ObjectInserter(model, comp, selection="best")
    with pytest.raises(ValueError, match="num_candidates"):
        ObjectInserter(model, comp, num_candidates=0)
    ins = ObjectInserter(model, comp, num_candidates=2)
    with pytest.raises(ValueError, match="no object"):
        ins(image, "add on the left")
    with pytest.raises(ValueError, match="outside"):
        ins(image, "add a cup", region=Region((100, 100, 200, 200)))
    with pytest.raises(TypeError):
        ins(image, 42)


def test_select_box_modes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50.]])
    lps = torch.tensor([-1.0, -1.5, -2.0, -9.0])
    assert select_box(boxes, lps, "logprob") == 0
    assert distinct_boxes(boxes, lps).tolist() == [0, 2, 3]          # box 1 overlaps box 0
    picks = {select_box(boxes, lps, "diverse", seeded(s), diverse_top=2) for s in range(20)}
    assert picks == {0, 2}
    picks = {select_box(boxes, lps, "random", seeded(s)) for s in range(40)}
    assert picks == {0, 1, 2, 3}
    with pytest.raises(ValueError):
        select_box(boxes[:0], lps[:0])


def test_overlay_draws_candidates_and_chosen_box(image):
    c = Candidates(torch.tensor([[5., 5, 30, 30], [40, 10, 60, 40]]), torch.tensor([-1.0, -3.0]))
    img = overlay(image, c, chosen=c.boxes[0], region=Region.parse("left"), labels=["cup"])
    assert img.size == image.size
    a = np.asarray(img)
    assert tuple(a[5, 15]) == (230, 30, 30)                          # chosen box edge is red
    orig = np.asarray(image).astype(int)
    assert a[10, 50, 0] > orig[10, 50, 0] and a[10, 50, 2] < orig[10, 50, 2]   # blended towards yellow
    assert np.array_equal(a[20, 15], np.asarray(image)[20, 15])      # inside untouched
