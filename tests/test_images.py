"""load_image: every accepted input becomes an upright RGB PIL image; everything else a clear error."""

import numpy as np
import pytest
from PIL import Image

from locinsert.images import image_size, load_image


def test_arrays_of_every_layout():
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200
    img = load_image(rgb)
    assert img.mode == "RGB" and img.size == (8, 6) and img.getpixel((0, 0)) == (200, 0, 0)
    gray = np.full((6, 8), 77, np.uint8)
    assert load_image(gray).getpixel((3, 3)) == (77, 77, 77)
    assert load_image(gray[..., None]).getpixel((3, 3)) == (77, 77, 77)
    rgba = np.zeros((6, 8, 4), np.uint8)  # fully transparent black -> white
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    deep = np.full((6, 8, 3), 65535, np.uint16)
    assert load_image(deep).getpixel((0, 0)) == (255, 255, 255)


def test_pil_modes_and_paths(tmp_path):
    for mode in ("L", "P", "RGBA", "CMYK", "I;16", "F", "1"):
        im = Image.new(mode, (9, 7))
        out = load_image(im)
        assert out.mode == "RGB" and out.size == (9, 7), mode
    path = tmp_path / "a.png"
    Image.new("RGB", (10, 5), (1, 2, 3)).save(path)
    assert load_image(path).getpixel((0, 0)) == (1, 2, 3)
    assert load_image(str(path)).size == (10, 5)
    assert image_size(path) == (10, 5)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (20, 10), (0, 0, 0))
    im.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif, quality=100)
    out = load_image(path)
    assert out.size == (10, 20)  # shown upright, as a viewer shows it
    assert image_size(path) == (10, 20)


def test_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        load_image(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="at least"):
        load_image(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="at least"):
        load_image(Image.new("RGB", (100, 2)))
    with pytest.raises(ValueError, match="not found"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(bad)
    with pytest.raises(TypeError, match="PIL image"):
        load_image([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="query"):
        load_image(tmp_path / "missing.png", name="query")


@pytest.mark.parametrize("mean, std, interpolation", [((0.5,) * 3, (0.5,) * 3, "bicubic"),
                                                      ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")])
def test_preprocessor_shortcut_at_input_size_gives_the_transforms_numbers(mean, std, interpolation):
    # Images already at the encoder's input size skip timm's resize and crop (identities there); the
    # numbers must be exactly the transform's, and other sizes still go through it.
    import torch

    from locinsert.modeling.encoders import ImagePreprocessor

    pre = ImagePreprocessor("timm", 32, mean, std, interpolation)
    rng = np.random.default_rng(0)
    same = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(5)]
    other = [Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))]   # resized: not the shortcut
    out = pre(same + other)
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
    for i, im in enumerate(same + other):
        assert torch.equal(out[i], pre.transform(im)), i
