"""Horizontal flips: boxes mirror with the pixels."""

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert.data import PlacementQuery, hflip
from locinsert.data.augment import hflip_boxes, hflip_query, random_hflip


def _image_with_box(w=40, h=30, box=(5, 10, 15, 20)):
    a = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    a[y1:y2, x1:x2] = 255
    return a


def _bright_box(img):
    a = np.asarray(img)[..., 0] > 127
    ys, xs = np.nonzero(a)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_hflip_moves_boxes_with_the_pixels():
    img, boxes = hflip(_image_with_box(), [[5, 10, 15, 20]])
    assert boxes.tolist() == [[25.0, 10.0, 35.0, 20.0]]  # x1' = W - x2, x2' = W - x1
    assert _bright_box(img) == [25, 10, 35, 20]
    assert hflip_boxes(hflip_boxes(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 40), 40).tolist() == [[1, 2, 3, 4]]
    assert hflip(Image.new("RGB", (8, 8)))[1] is None


def test_random_hflip_is_reproducible_and_respects_p():
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = [random_hflip(_image_with_box(), [[5, 10, 15, 20]], p=0.5, generator=g1)[2] for _ in range(20)]
    b = [random_hflip(_image_with_box(), [[5, 10, 15, 20]], p=0.5, generator=g2)[2] for _ in range(20)]
    assert a == b and 0 < sum(a) < 20
    _, boxes, flipped = random_hflip(_image_with_box(), [[5, 10, 15, 20]], p=0.0)
    assert not flipped and boxes.tolist() == [[5, 10, 15, 20]]
    with pytest.raises(ValueError, match="p must"):
        random_hflip(_image_with_box(), None, p=2)


def test_hflip_query_mirrors_labels_and_image_lazily():
    q = PlacementQuery("cup", [[5, 10, 15, 20]], [[0, 0, 40, 5]], image_source=_image_with_box(),
                       width=40, height=30, query_id="q1")
    f = hflip_query(q)
    assert f.positives.tolist() == [[25, 10, 35, 20]] and f.negatives.tolist() == [[0, 0, 40, 5]]
    assert f._image is None and f.query_id == "q1:hflip" and f.meta["hflip"]
    assert _bright_box(f.image) == [25, 10, 35, 20]
    assert q.positives.tolist() == [[5, 10, 15, 20]]  # the original is untouched
    with pytest.raises(ValueError, match="width"):
        hflip_boxes([[0, 0, 1, 1]], 0)


def test_hflip_query_mirrors_the_synthetic_scene_too():
    from locinsert.data import synthetic
    from locinsert.data.augment import hflip_query

    for q in synthetic.opa_like(5, seed=3):
        f = hflip_query(q)
        scene = f.meta["scene"]
        assert synthetic.is_plausible(scene, f.category, f.positives).all()
        assert not synthetic.is_plausible(scene, f.category, f.negatives).any()
        assert np.array_equal(np.asarray(f.image), np.asarray(q.image)[:, ::-1])
