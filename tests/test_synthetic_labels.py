"""Per-pixel labels and object masks agree with the rendered scene."""

import numpy as np
import pytest

from locinsert.data import synthetic
from locinsert.data.synthetic.drawing import CRATE, CRATE_EDGE, FRAME, SKY, TABLE_LEG, TABLE_TOP, VASE
from locinsert.data.synthetic.labels import PART_ID


def _colours(scene):
    return {"wall": scene.wall_color, "floor": scene.floor_color, "window_frame": FRAME, "glass": SKY,
            "crate_edge": CRATE_EDGE, "crate": CRATE, "table_leg": TABLE_LEG, "table_top": TABLE_TOP, "vase": VASE}


@pytest.mark.parametrize("seed", range(6))
def test_label_map_matches_the_rendered_colours(seed):
    scene = synthetic.make_scenes(1, seed=seed, size=64 + 32 * (seed % 2))[0]
    img, labels = scene.render(), synthetic.label_map(scene)
    assert labels.shape == img.shape[:2] and labels.dtype == np.uint8
    for part, colour in _colours(scene).items():
        where = labels == PART_ID[part]
        assert (img[where] == np.asarray(colour, dtype=np.uint8)).all(), part
    assert (labels == PART_ID["glass"]).any() and (labels == PART_ID["table_top"]).any()


def test_object_masks_cover_each_thing_inside_its_box():
    scenes = synthetic.make_scenes(20, seed=3)
    seen = set()
    for scene in scenes:
        objects = synthetic.object_masks(scene)
        inst, things = synthetic.instance_map(scene)
        assert len(objects) == len(things) == len(scene.windows) + len(scene.tables) + len(scene.crates) + len(scene.vases)
        union = np.zeros_like(inst, dtype=bool)
        for o in objects:
            seen.add(o.kind)
            ys, xs = np.nonzero(o.mask)
            assert len(ys), o
            x1, y1, x2, y2 = o.box
            assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
            assert not (union & o.mask).any()          # masks are disjoint
            union |= o.mask
        assert (union == (inst > 0)).all()
        vases = synthetic.object_masks(scene, "vase")
        assert [o.index for o in vases] == list(range(len(scene.vases)))
        for o in vases:                                 # vases are drawn last: never occluded
            assert o.mask.sum() == (o.box[2] - o.box[0]) * (o.box[3] - o.box[1])
    assert seen == set(synthetic.THINGS)


def test_object_masks_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'sofa'"):
        synthetic.object_masks(synthetic.make_scene(0), "sofa")
