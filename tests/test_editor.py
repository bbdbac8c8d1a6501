"""ObjectEditor on synthetic scenes with their exact masks, the real tiny LocationModel and real fills."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert.boxes import mask_box
from locinsert.data import synthetic
from locinsert.data.synthetic.removal import SceneSegmenter, insert_object, scene_without
from locinsert.editing.editor import ObjectEditor, ObjectNotFound, edit_overlay
from locinsert.inpainting import BiharmonicFill, CutoutCompositor, dilate_mask
from locinsert.editing.instructions import Near


@pytest.fixture(scope="module")
def scene():
    return next(s for s in synthetic.make_scenes(30, seed=4) if len(s.vases) == 1 and len(s.windows) >= 1)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def two_cups(scene):
    """The scene with a cup low on the left and one low on the right; the segmenter sees both."""
    img = Image.fromarray(scene.render())
    img, left = insert_object(img, "cup", (6, 50, 14, 60))
    img, right = insert_object(img, "cup", (48, 50, 56, 60))
    return img, left, right, SceneSegmenter(scene, {"cup": left | right})


def test_remove_fills_the_true_mask_and_nothing_else(scene):
    img = Image.fromarray(scene.render())
    truth = np.asarray(scene_without(scene, "vase", 0).render())
    ed = ObjectEditor(segmenter=SceneSegmenter(scene))
    out = ed(img, "remove the vase", generator=seeded())
    vase = synthetic.object_masks(scene, "vase")[0].mask
    assert out.found and len(out.steps) == 1 and out.steps[0].verb == "remove"
    assert np.array_equal(out.mask, vase)
    assert out.box.tolist() == list(mask_box(vase))
    a, b = np.asarray(img), np.asarray(out.image)
    grown = dilate_mask(vase, ed.remover.dilate)
    assert np.array_equal(a[~grown], b[~grown])
    # closer to the scene without the vase than the input was
    assert np.abs(b[vase].astype(int) - truth[vase]).mean() < np.abs(a[vase].astype(int) - truth[vase]).mean()
    json.dumps(out.to_dict())


def test_remove_keeps_only_the_part_in_the_named_region(scene):
    img, left, right, seg = two_cups(scene)
    out = ObjectEditor(segmenter=seg)(img, "remove the cup on the left")
    assert np.array_equal(out.mask, left)
    a, b = np.asarray(img), np.asarray(out.image)
    assert np.array_equal(a[right], b[right]) and not np.array_equal(a[left], b[left])


def test_nothing_found_is_an_outcome_or_with_strict_an_error(scene):
    img = Image.fromarray(scene.render())
    ed = ObjectEditor(segmenter=SceneSegmenter(scene))
    out = ed(img, "remove the dog")
    assert not out.found and out.not_found == ["dog"] and out.box is None and not out.mask.any()
    assert np.array_equal(np.asarray(out.image), np.asarray(img))
    assert out.to_dict()["steps"][0]["found"] is False and "not found" in out.steps[0].message
    with pytest.raises(ObjectNotFound, match="'dog'"):
        ObjectEditor(segmenter=SceneSegmenter(scene), strict=True)(img, "remove the dog")


def test_move_cuts_out_fills_and_places_under_the_target_away_from_the_old_place(model, scene):
    img, left, right, seg = two_cups(scene)
    seg.objects["cup"] = left
    ed = ObjectEditor(model, segmenter=seg, num_candidates=8)
    out = ed(img, "move the cup to the right", generator=seeded(1))
    step = out.steps[0]
    assert out.found and step.verb == "move" and np.array_equal(step.mask, left)
    x1, y1, x2, y2 = step.box.tolist()
    assert (x1 + x2) / 2 >= 32                                        # centre in the right half
    ox1, oy1, ox2, oy2 = step.source_box.tolist()
    assert x2 <= ox1 or x1 >= ox2 or y2 <= oy1 or y1 >= oy2           # away from the old place
    b = np.asarray(out.image)
    assert not np.array_equal(b[left], np.asarray(img)[left])          # the hole is filled
    cup_red = (b[..., 0] > 180) & (b[..., 1] < 90)
    assert cup_red[int(y1):int(y2), int(x1):int(x2)].any()             # the cut-out is at the new box
    d = out.to_dict()["steps"][0]
    assert d["source_box"] == [round(v, 2) for v in step.source_box.tolist()] and d["target"]["phrase"] == "to the right"
    assert edit_overlay(out).size == img.size


def test_move_next_to_a_found_anchor(model, scene):
    img, left, _, seg = two_cups(scene)
    seg.objects["cup"] = left
    out = ObjectEditor(model, segmenter=seg, num_candidates=8)(img, "move the cup next to the window", seeded(2))
    win = synthetic.object_masks(scene, "window")
    assert out.found and out.steps[0].target == Near("window")
    cx = sum(out.box.tolist()[0::2]) / 2
    lo = min(o.box[0] - (o.box[2] - o.box[0]) for o in win)
    hi = max(o.box[2] + (o.box[2] - o.box[0]) for o in win)
    assert lo - 1 <= cx <= hi + 1
    missing = ObjectEditor(model, segmenter=seg)(img, "move the cup next to the piano", seeded(2))
    assert not missing.found and "piano" in missing.steps[0].message
    assert np.array_equal(np.asarray(missing.image), np.asarray(img))


def test_sequence_mixes_verbs_and_redraw_uses_the_inpainter(model, scene):
    img, left, right, seg = two_cups(scene)
    ed = ObjectEditor(model, CutoutCompositor(synthetic.sprite, allow_opaque=True), seg, num_candidates=8)
    out = ed(img, "remove the vase, then add a plant on the left", generator=seeded(3))
    assert [s.verb for s in out.steps] == ["remove", "add"] and out.found
    assert len(out.boxes) == 2 and out.steps[1].candidates is not None
    calls = []

    class Spy(CutoutCompositor):
        def inpaint(self, image, box, prompt, generator=None):
            calls.append(prompt)
            return super().inpaint(image, box, prompt, generator)

    seg.objects["cup"] = right
    red = ObjectEditor(model, Spy(synthetic.sprite, allow_opaque=True), seg, move_by="redraw", num_candidates=4)
    red(img, "move the cup to the left", generator=seeded(4))
    assert calls == ["cup"]


def test_bad_input_is_a_clear_error(model, scene):
    img = Image.fromarray(scene.render())
    ed = ObjectEditor(segmenter=SceneSegmenter(scene))
    with pytest.raises(ValueError, match="but the image is 64x64"):
        ed.remove(img, mask=np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="say what to remove"):
        ed(img, "remove")
    with pytest.raises(ValueError, match="no segmenter"):
        ObjectEditor()(img, "remove the vase")
    with pytest.raises(ValueError, match="location model"):
        ed(img, "move the vase to the left")

    class Wrong:
        def segment(self, image, text):
            return np.zeros((8, 8), np.float32)

    with pytest.raises(ValueError, match="segmenter returned"):
        ObjectEditor(segmenter=Wrong())(img, "remove the vase")
    with pytest.raises(TypeError, match="segment"):
        ObjectEditor(segmenter=object())
    with pytest.raises(ValueError, match="move_by"):
        ObjectEditor(model, move_by="teleport")
    with pytest.raises(ValueError, match="threshold"):
        ObjectEditor(segmenter=SceneSegmenter(scene), threshold=1.5)


def test_threshold_defaults_to_the_segmenters_own(scene):
    class Soft:
        threshold = 0.3

        def segment(self, image, text):
            m = np.zeros((64, 64), np.float32)
            m[10:20, 10:20] = 0.4                    # above the segmenter's 0.3, below 0.5
            return m

    img = Image.fromarray(scene.render())
    assert ObjectEditor(segmenter=Soft()).remove(img, "thing").found
    assert not ObjectEditor(segmenter=Soft(), threshold=0.5).remove(img, "thing").found


def test_given_mask_skips_the_segmenter(scene):
    img = Image.fromarray(scene.render())
    m = np.zeros((64, 64), bool)
    m[5:12, 5:12] = True
    out = ObjectEditor(remover=BiharmonicFill()).remove(img, "thing", mask=m)
    assert out.found and np.array_equal(out.mask, m) and out.box.tolist() == [5.0, 5.0, 12.0, 12.0]


def test_editor_with_a_real_clipseg_segmenter(tmp_path, scene):
    from helpers_diffusers import tiny_clipseg
    from locinsert.segmentation import CLIPSegSegmenter

    tiny_clipseg(tmp_path / "clipseg")
    seg = CLIPSegSegmenter.from_pretrained(str(tmp_path / "clipseg"))
    img = Image.fromarray(scene.render())
    soft = seg.segment(img, "vase")
    t = float(np.quantile(soft, 0.9))
    out = ObjectEditor(segmenter=seg, threshold=t)(img, "remove the vase on the left")
    assert out.found and out.mask.any() and not (out.mask & ~(soft > t)).any()
    ys, xs = np.nonzero(out.mask)
    assert xs.mean() < 40                              # parts centred in the left half only
    a, b = np.asarray(img), np.asarray(out.image)
    grown = dilate_mask(out.mask, 1)
    assert np.array_equal(a[~grown], b[~grown])
    assert not ObjectEditor(segmenter=seg, threshold=0.9999)(img, "remove the vase").found
