"""Region: rectangles (pixel / normalised), masks, centre mode, avoid boxes, phrases, and clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert.regions import LOCATION_PATTERN, Region, as_region, phrase_to_box


def test_pixel_and_normalised_rectangles():
    r = Region((10.0, 20.0, 110.0, 220.0)).resolve(200, 100)
    assert r.rect == (10.0, 20.0, 110.0, 100.0)  # clipped to the image
    n = Region((0.5, 0.0, 1.0, 0.5)).resolve(200, 100)
    assert n.rect == (100.0, 0.0, 200.0, 50.0)
    # a small pixel box can be forced to mean pixels
    p = Region((0.0, 0.0, 1.0, 1.0), normalized=False).resolve(200, 100)
    assert p.rect == (0.0, 0.0, 1.0, 1.0)
    assert r.mode == "inside" and r.area_mask().sum() == 100 * 80
    assert Region((10.0, 20.0, 110.0, 220.0)).resolve(200, 100).bounds() == (10.0, 20.0, 110.0, 100.0)


def test_masks_resize_and_bounds():
    m = np.zeros((10, 20), bool)
    m[2:5, 4:8] = True
    r = Region(m).resolve(40, 20)  # resized nearest to the image
    assert r.mask.shape == (20, 40) and r.mask.sum() == 4 * 3 * 4
    assert r.bounds() == (8.0, 4.0, 16.0, 10.0)
    assert Region(Image.fromarray(m.astype(np.uint8) * 255)).resolve(20, 10).mask.sum() == 12
    assert Region(torch.from_numpy(m)).resolve(20, 10).mask.sum() == 12


def test_avoid_and_whole_image():
    r = Region(None, avoid=[[1, 2, 3, 4]])
    res = r.resolve(10, 10)
    assert res.rect is None and res.mask is None and res.avoid.shape == (1, 4)
    assert res.area_mask().all()
    r2 = Region((0.0, 0.0, 0.5, 1.0)).with_avoid([[5, 5, 6, 6]]).with_avoid([[7, 7, 8, 8]])
    assert len(r2.avoid) == 2 and r2.rect == (0.0, 0.0, 0.5, 1.0)


@pytest.mark.parametrize("phrase,box", [
    ("left", (0.0, 0.0, 0.5, 1.0)),
    ("on the left side", (0.0, 0.0, 0.5, 1.0)),
    ("top left corner", (0.0, 0.0, 0.5, 0.5)),
    ("upper right", (0.5, 0.0, 1.0, 0.5)),
    ("in the middle", (0.25, 0.25, 0.75, 0.75)),
    ("near the top", (0.0, 0.0, 1.0, 1 / 3)),
    ("bottom", (0.0, 0.5, 1.0, 1.0)),
])
def test_phrases(phrase, box):
    assert phrase_to_box(phrase) == pytest.approx(box)
    r = Region.parse(phrase)
    assert r.mode == "center" and r.normalized and r.name == phrase


def test_unknown_phrases():
    assert phrase_to_box("on the moon") is None
    assert phrase_to_box("left right") is None
    with pytest.raises(ValueError, match="unknown position"):
        Region.parse("somewhere nice")
    with pytest.raises(ValueError, match="empty"):
        Region.parse("  ")


def test_location_pattern_finds_trailing_phrase():
    m = LOCATION_PATTERN.search("add a red mug on the left side")
    assert m and m.group(0).strip() == "on the left side"
    assert LOCATION_PATTERN.search("add a red mug") is None


def test_as_region():
    assert as_region(None) is None
    r = Region((1.0, 2.0, 3.0, 4.0))
    assert as_region(r) is r
    assert as_region("top").rect == (0.0, 0.0, 1.0, 0.5)
    assert as_region([0, 0, 5, 5]).rect == (0.0, 0.0, 5.0, 5.0)
    assert as_region(np.ones((4, 4), bool)).mask is not None


def test_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        Region((5.0, 5.0, 5.0, 9.0))
    with pytest.raises(ValueError, match="empty"):
        Region(np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="outside"):
        Region((300.0, 300.0, 400.0, 400.0)).resolve(100, 100)
    with pytest.raises(ValueError, match="mode"):
        Region((0.0, 0.0, 1.0, 1.0), mode="near")
    with pytest.raises(ValueError, match="one xyxy box"):
        Region([[0, 0, 1, 1], [0, 0, 2, 2]])
    with pytest.raises(ValueError, match="NaN"):
        Region((0.0, 0.0, float("nan"), 1.0))
    tiny = np.zeros((100, 100), bool)
    tiny[0, 0] = True
    with pytest.raises(ValueError, match="allows no pixel"):
        Region(tiny).resolve(10, 10)  # the single pixel vanishes when resized down
