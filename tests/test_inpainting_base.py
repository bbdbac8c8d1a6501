"""The shared inpainting logic: pixel boxes, context windows, pasting inside the box only."""

import numpy as np
import pytest
from PIL import Image

from locinsert.inpainting import ContextCrop, box_mask, paste_inside, pixel_box
from locinsert.inpainting.base import check_box, snap


def noise(w, h, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8))


def test_pixel_box_covers_touched_pixels_and_is_never_empty():
    assert pixel_box((10.2, 5.0, 20.0, 7.5), 100, 50) == (10, 5, 20, 8)
    assert pixel_box((3.2, 3.3, 3.4, 3.5), 100, 50) == (3, 3, 4, 4)
    assert pixel_box((0, 0, 100, 50), 100, 50) == (0, 0, 100, 50)
    assert box_mask((99.5, 49.5, 100, 50), 100, 50).sum() == 1


@pytest.mark.parametrize("box, message", [
    ((10, 10, 10, 20), "degenerate"), ((20, 10, 10, 20), "degenerate"),
    ((-5, 0, 10, 10), "outside"), ((0, 0, 101, 10), "outside"), ((0, 0, float("nan"), 3), "NaN"),
])
def test_check_box_rejects_bad_boxes(box, message):
    with pytest.raises(ValueError, match=message):
        check_box(box, 100, 50)


def test_snap_rounds_to_positive_multiple():
    assert snap(517, 8) == 520 and snap(3, 16) == 16 and snap(100, 64) == 128


@pytest.mark.parametrize("size", [(80, 50), (40, 90)])
@pytest.mark.parametrize("box", [(30, 10, 50, 30), (0, 0, 12, 9), (70.5, 40.2, 80, 50), (5, 5, 5.5, 6)])
def test_paste_changes_only_the_box(size, box):
    W, H = size
    box = (min(box[0], W - 2), min(box[1], H - 2), min(box[2], W), min(box[3], H))
    img, gen = noise(W, H, 0), noise(W, H, 1)
    px = pixel_box(box, W, H)
    patch = gen.crop(px)
    m = box_mask(box, W, H)
    for feather in (0, 2):
        out = paste_inside(img, patch, box, feather=feather)
        a, b = np.asarray(img), np.asarray(out)
        assert out.size == img.size
        assert np.array_equal(a[~m], b[~m])
    hard = np.asarray(paste_inside(img, patch, box))
    assert np.array_equal(hard[m].reshape(-1, 3), np.asarray(patch).reshape(-1, 3))


def test_feather_blends_edge_inside_the_box_and_keeps_centre():
    img, gen = Image.new("RGB", (60, 60), (0, 0, 0)), Image.new("RGB", (40, 40), (200, 200, 200))
    out = np.asarray(paste_inside(img, gen, (10, 10, 50, 50), feather=6))
    assert out[30, 30, 0] == 200                    # centre is the patch
    assert 0 < out[16, 30, 0] < 200                 # seam is a blend, inside the box
    assert out[10, 30, 0] < out[20, 30, 0]          # ramps up towards the centre
    assert out[9, 30, 0] == 0                       # outside untouched


def test_alpha_shape_is_checked():
    with pytest.raises(ValueError, match="alpha"):
        paste_inside(noise(20, 20), noise(5, 5), (0, 0, 5, 5), alpha=np.ones((4, 4)))


@pytest.mark.parametrize("square", [True, False])
@pytest.mark.parametrize("size, box", [
    ((200, 120), (90, 50, 110, 70)),      # interior
    ((200, 120), (0, 0, 30, 20)),         # top-left corner
    ((200, 120), (150, 10, 200, 120)),    # full height at the right border
    ((200, 120), (60, 60, 61, 61)),       # one pixel
    ((60, 300), (0, 250, 60, 300)),       # tall image, full width box
])
def test_context_crop_contains_box_and_maps_back(size, box, square):
    W, H = size
    img = noise(W, H)
    crop = ContextCrop.around(img, box, resolution=64, multiple=8, context=2.0, square=square)
    wx1, wy1, wx2, wy2 = crop.window
    x1, y1, x2, y2 = pixel_box(box, W, H)
    assert wx1 <= x1 and wy1 <= y1 and wx2 >= x2 and wy2 >= y2
    assert crop.image.size == crop.size == crop.mask.size
    if square:
        assert crop.size == (64, 64) and wx2 - wx1 == wy2 - wy1
    else:
        assert crop.size[0] % 8 == 0 and crop.size[1] % 8 == 0
        assert 0 <= wx1 and 0 <= wy1 and wx2 <= W and wy2 <= H   # free aspect never pads
    # The mask covers the box in native pixels.
    nx1, ny1, nx2, ny2 = crop.box
    m = np.asarray(crop.mask) > 0
    assert m[int(ny1):int(np.ceil(ny2)), int(nx1):int(np.ceil(nx2))].all()
    assert all(0.0 <= v <= 1.0 for v in crop.normalized_box())
    # Round trip: the unmodified crop maps back to (nearly) the original box pixels.
    patch = crop.box_patch(crop.image)
    assert patch.size == (x2 - x1, y2 - y1)


def test_square_window_larger_than_image_is_mirror_padded():
    img = noise(100, 40)
    crop = ContextCrop.around(img, (10, 0, 90, 40), resolution=32, square=True)
    wx1, wy1, wx2, wy2 = crop.window
    assert wy1 < 0 and wy2 > 40 and wx2 - wx1 == wy2 - wy1 >= 80


def test_load_pipeline_uses_the_dtype_keyword_of_the_installed_diffusers(monkeypatch):
    import diffusers
    import torch

    from locinsert.inpainting.base import load_pipeline

    class Recorder:
        @classmethod
        def from_pretrained(cls, model_id, **kwargs):
            cls.got = (model_id, kwargs)
            return cls()

    monkeypatch.setattr(diffusers, "__version__", "0.42.1")
    load_pipeline(Recorder, "some/id", dtype="float16")
    assert Recorder.got == ("some/id", {"dtype": torch.float16})
    monkeypatch.setattr(diffusers, "__version__", "0.35.2")
    load_pipeline(Recorder, "some/id", dtype=torch.bfloat16, variant="fp16")
    assert Recorder.got == ("some/id", {"torch_dtype": torch.bfloat16, "variant": "fp16"})
    load_pipeline(Recorder, "some/id")
    assert Recorder.got == ("some/id", {})
