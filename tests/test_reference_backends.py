"""Reference-guided inpainting (insert *this* object) on tiny random pipelines of the real classes, offline.

Paint-by-Example (``PaintByExamplePipeline``: CLIP image encoder + 9-channel UNet), RePaint
resampling with a reference on ``StableDiffusionInpaintPipeline``, and the cut-out backend, whose
cut-out the reference is. Every backend keeps pixels outside the box byte-identical, and the
reference, not only the seed, decides what is drawn.
"""

import json
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_diffusers import tiny_paint_by_example, tiny_sd_inpaint
from locinsert.inpainting import (CutoutCompositor, DiffusersInpainter, GLIGENInpainter, PaintByExampleInpainter,
                                  ReferenceRePaintInpainter, as_reference, box_mask)
from locinsert.inpainting.repaint import SCHEDULES, count_unet_calls

CASES = [
    ((80, 50), (20.5, 10.2, 45.7, 38.9)),   # wide image, interior, fractional box
    ((48, 72), (36, 40, 48, 72)),           # tall image, box in the bottom-right corner
    ((80, 50), (0.0, 21.0, 1.5, 22.0)),     # tiny (2 x 1 pixels) at the left border
]
BOX = (20.5, 10.2, 45.7, 38.9)


def noise(w, h, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8))


def mug(colour=(220, 30, 30)):
    """An RGBA cut-out: a coloured disc on transparency, with a margin the reference trims away."""
    a = np.zeros((24, 20, 4), np.uint8)
    yy, xx = np.mgrid[:24, :20]
    a[(yy - 13) ** 2 + (xx - 10) ** 2 <= 49] = (*colour, 255)
    return Image.fromarray(a, "RGBA")


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def run(inp, size, box, reference, seed=0):
    img = noise(*size)
    out = inp.inpaint(img, box, "a mug", generator=seeded(seed), reference=reference)
    assert isinstance(out, Image.Image) and out.size == img.size and out.mode == "RGB"
    m = box_mask(box, *size)
    a, b = np.asarray(img), np.asarray(out)
    assert np.array_equal(a[~m], b[~m])            # byte-identical outside the box
    assert not np.array_equal(a[m], b[m])          # something was drawn inside
    return b


@pytest.fixture(scope="module")
def pbe_pipe():
    return tiny_paint_by_example()


@pytest.fixture(scope="module")
def sd_pipe():
    return tiny_sd_inpaint()


# -- references ---------------------------------------------------------------------------------

def test_reference_is_trimmed_to_its_alpha_and_opaque_means_no_alpha(tmp_path):
    ref = as_reference(mug())
    assert ref.has_alpha and ref.size == (15, 15) and ref.image.mode == "RGBA"     # 24x20 canvas, 15 px disc
    assert np.asarray(ref.rgb())[0, 0].tolist() == [255, 255, 255]                  # transparent corner on white
    assert not as_reference(Image.new("RGBA", (9, 7), (1, 2, 3, 255))).has_alpha
    photo = as_reference(np.full((9, 7, 3), 5, np.uint8))
    assert not photo.has_alpha and photo.size == (7, 9)
    mug().save(tmp_path / "mug.png")
    assert as_reference(str(tmp_path / "mug.png")).size == (15, 15)
    assert as_reference(Image.new("L", (4, 4), 9)).image.mode == "RGBA"


@pytest.mark.parametrize("bad, error, match", [
    (None, ValueError, "no reference image"),
    (Image.new("F", (8, 8)), ValueError, "mode 'F'"),
    (Image.new("I;16", (8, 8)), ValueError, "mode 'I;16'"),
    (Image.new("1", (8, 8)), ValueError, "mode '1'"),
    (Image.new("RGBA", (8, 8), (200, 0, 0, 0)), ValueError, "fully transparent"),
    (np.zeros((8, 8), np.uint8), ValueError, r"\(H, W, 3\)"),
    (np.zeros((8, 8, 3), np.float32), ValueError, "uint8"),
    (42, TypeError, "PIL image"),
])
def test_bad_references_are_clear_errors(bad, error, match):
    with pytest.raises(error, match=match):
        as_reference(bad)


def test_missing_or_unreadable_reference_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        as_reference(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        as_reference(tmp_path / "junk.png")


def test_text_only_backends_refuse_a_reference_and_name_those_that_can(sd_pipe):
    for inp in (DiffusersInpainter(sd_pipe, num_inference_steps=1), GLIGENInpainter(sd_pipe)):
        with pytest.raises(ValueError, match="cannot use a reference.*PaintByExampleInpainter.*ReferenceRePaint"):
            inp.inpaint(noise(32, 32), (4, 4, 20, 20), "a mug", reference=mug())


# -- Paint-by-Example ---------------------------------------------------------------------------

@pytest.mark.parametrize("size, box", CASES)
def test_paint_by_example_changes_only_the_box(pbe_pipe, size, box):
    run(PaintByExampleInpainter(pbe_pipe, num_inference_steps=2), size, box, mug())


def test_paint_by_example_reference_decides_and_seed_reproduces(pbe_pipe):
    inp = PaintByExampleInpainter(pbe_pipe, num_inference_steps=2)
    red = run(inp, (80, 50), BOX, mug((220, 30, 30)))
    assert np.array_equal(red, run(inp, (80, 50), BOX, mug((220, 30, 30))))
    assert not np.array_equal(red, run(inp, (80, 50), BOX, mug((30, 30, 220))))       # another object
    assert not np.array_equal(red, run(inp, (80, 50), BOX, mug((220, 30, 30)), seed=1))


def test_paint_by_example_gets_multiples_of_8_the_exemplar_and_no_prompt(pbe_pipe):
    inp = PaintByExampleInpainter(pbe_pipe, num_inference_steps=2)
    assert inp.multiple == 8 and pbe_pipe.vae_scale_factor == 2      # 8 even though the tiny VAE's factor is 2
    seen = []
    original = type(pbe_pipe).__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        return original(self, *args, **kwargs)

    with mock.patch.object(type(pbe_pipe), "__call__", spy):
        inp.inpaint(noise(70, 45), (3, 5, 31, 44), reference=mug())     # no prompt needed
    kw = seen[0]
    assert kw["image"].size == kw["mask_image"].size and all(v % 8 == 0 for v in kw["image"].size)
    assert kw["example_image"].size == (15, 15) and kw["example_image"].mode == "RGB"
    assert "prompt" not in kw and "negative_prompt" not in kw


def test_paint_by_example_needs_a_reference_and_its_own_pipeline(pbe_pipe, sd_pipe):
    with pytest.raises(ValueError, match="pass reference="):
        PaintByExampleInpainter(pbe_pipe).inpaint(noise(32, 32), (4, 4, 20, 20), "a mug")
    with pytest.raises(TypeError, match="PaintByExamplePipeline"):
        PaintByExampleInpainter(sd_pipe)
    with pytest.raises(ValueError, match="negative prompt"):
        PaintByExampleInpainter(pbe_pipe, negative_prompt="blurry")


@pytest.mark.parametrize("layout", ["own save", "hub"])
def test_paint_by_example_loads_by_subfolder(pbe_pipe, tmp_path, layout):
    pbe_pipe.save_pretrained(tmp_path / "pbe")
    index = json.loads((tmp_path / "pbe" / "model_index.json").read_text())
    assert index["image_encoder"] == ["diffusers", "PaintByExampleImageEncoder"]
    if layout == "hub":   # Fantasy-Studio/Paint-by-Example, a diffusers 0.10 export, names its own library
        index["image_encoder"] = ["paint_by_example", "PaintByExampleImageEncoder"]
        index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
        (tmp_path / "pbe" / "model_index.json").write_text(json.dumps(index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = PaintByExampleInpainter.from_pretrained(str(tmp_path / "pbe"), num_inference_steps=2)
    want = PaintByExampleInpainter(pbe_pipe, num_inference_steps=2)
    for name in ("unet", "vae", "image_encoder"):   # every weight comes back exactly
        saved, back = getattr(pbe_pipe, name).state_dict(), getattr(loaded.pipe, name).state_dict()
        assert saved.keys() == back.keys() and all(torch.equal(saved[k], back[k]) for k in saved), name
    a = want.inpaint(noise(80, 50), BOX, reference=mug(), generator=seeded())
    b = loaded.inpaint(noise(80, 50), BOX, reference=mug(), generator=seeded())
    # Same weights, same seed: the same picture, up to one 8-bit step where float rounding in the
    # rebuilt modules lands a pixel on the other side of a quantisation edge.
    assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1


# -- RePaint with a reference -------------------------------------------------------------------

def repaint(pipe, **kw):
    """4 steps, one resampling round per 2-step jump: 6 UNet calls; no guidance unless asked (half the calls)."""
    return ReferenceRePaintInpainter(pipe, **{"num_inference_steps": 4, "jump_length": 2, "jump_n_sample": 2,
                                              "guidance_scale": 1.0, **kw})


@pytest.mark.parametrize("size, box", CASES)
def test_repaint_changes_only_the_box(sd_pipe, size, box):
    run(repaint(sd_pipe, guidance_scale=7.5, negative_prompt="blurry"), size, box, mug())


@pytest.mark.slow
def test_repaint_reference_decides_and_seed_reproduces(sd_pipe):
    inp = repaint(sd_pipe)
    red = run(inp, (80, 50), BOX, mug((220, 30, 30)))
    assert np.array_equal(red, run(inp, (80, 50), BOX, mug((220, 30, 30))))
    assert not np.array_equal(red, run(inp, (80, 50), BOX, mug((30, 30, 220))))
    assert not np.array_equal(red, run(inp, (80, 50), BOX, None))                       # plain RePaint
    assert not np.array_equal(red, run(inp, (80, 50), BOX, mug((220, 30, 30)), seed=1))


def test_repaint_soft_mask_keeps_background_and_follows_the_schedule(sd_pipe):
    from locinsert.inpainting import ContextCrop

    crop = ContextCrop.around(noise(80, 50), BOX, resolution=64, multiple=2)
    ref = as_reference(Image.new("RGB", (10, 14), (200, 40, 40)))                     # opaque: alpha 1 in the box
    paste = repaint(sd_pipe, schedule="paste").sample_latents(crop, "a mug", seeded(), ref)
    outside = paste.hole == 0
    full = (paste.reference_mask == 1).expand_as(paste.latents)
    assert outside.any() and full.any()
    # outside the hole RePaint keeps the known background latent exactly; lambda = 1 keeps the reference
    assert torch.equal(paste.latents[outside.expand_as(paste.latents)], paste.known[outside.expand_as(paste.known)])
    assert torch.equal(paste.latents[full], paste.known[full])
    layout = repaint(sd_pipe, schedule="layout").sample_latents(crop, "a mug", seeded(), ref)
    assert not torch.allclose(layout.latents[full], layout.known[full])                # the model redrew it


def test_repaint_makes_as_many_unet_calls_as_the_schedule_says(sd_pipe):
    assert count_unet_calls(250, 10, 10) == 2410          # RePaint's own setting (diffusers' docs example)
    assert count_unet_calls(50, 5, 2) == 95               # our default
    inp = repaint(sd_pipe)                                # no guidance: one UNet call per denoising step
    with mock.patch.object(type(sd_pipe.unet), "forward", autospec=True, side_effect=type(sd_pipe.unet).forward) as f:
        inp.inpaint(noise(40, 40), (5, 5, 30, 30), "a mug", reference=mug(), generator=seeded())
    assert f.call_count == count_unet_calls(4, 2, 2) == 6


def test_repaint_on_a_text_to_image_unet(sd_pipe):
    from diffusers import StableDiffusionPipeline

    from helpers_diffusers import tiny_unet

    t2i = StableDiffusionPipeline(vae=sd_pipe.vae, text_encoder=sd_pipe.text_encoder, tokenizer=sd_pipe.tokenizer,
                                  unet=tiny_unet(4), scheduler=sd_pipe.scheduler, safety_checker=None,
                                  feature_extractor=None, requires_safety_checker=False)
    run(repaint(t2i), (80, 50), BOX, mug())


def test_repaint_options_are_checked(sd_pipe):
    assert set(SCHEDULES) == {"layout", "linear", "cosine", "paste"}
    assert [SCHEDULES["layout"](s) for s in (1.0, 0.51, 0.5, 0.0)] == [1.0, 1.0, 0.0, 0.0]
    assert SCHEDULES["cosine"](1.0) == pytest.approx(1.0) and SCHEDULES["cosine"](0.0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        repaint(sd_pipe, schedule="sometimes")
    with pytest.raises(ValueError, match="jump_length"):
        repaint(sd_pipe, jump_length=0)
    with pytest.raises(TypeError, match="unexpected arguments"):
        repaint(sd_pipe, strength=0.5)
    with pytest.raises(TypeError, match="Stable Diffusion"):
        ReferenceRePaintInpainter(object.__new__(type("Pipe", (), {"__call__": lambda self: None})))
    custom = repaint(sd_pipe, schedule=lambda s: 0.25)
    run(custom, (80, 50), BOX, mug())


# -- the cut-out backend: the reference is the cut-out -------------------------------------------

def test_cutout_pastes_the_reference_and_refuses_opaque_photos():
    bg = noise(80, 50)
    out = np.asarray(CutoutCompositor().inpaint(bg, (10, 10, 40, 40), reference=mug()))
    box = out[10:40, 10:40]
    ys, xs = np.nonzero((box[..., 0] > 150) & (box[..., 1] < 80) & (box[..., 2] < 80))
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (0, 29, 0, 29)      # the trimmed disc fills the square box
    assert np.array_equal(box[0, 0], np.asarray(bg)[10, 10])               # its transparent corner keeps the background
    # the reference replaces a configured cut-out for that call
    green = Image.fromarray(np.full((8, 8, 4), (0, 220, 0, 255), np.uint8), "RGBA")
    with_default = CutoutCompositor(green, allow_opaque=True)
    assert np.array_equal(np.asarray(with_default.inpaint(bg, (10, 10, 40, 40), "x", reference=mug())), out)
    photo = Image.new("RGB", (12, 12), (1, 2, 3))
    with pytest.raises(ValueError, match="no transparency.*PaintByExampleInpainter"):
        CutoutCompositor().inpaint(bg, (10, 10, 40, 40), reference=photo)
    pasted = np.asarray(CutoutCompositor(allow_opaque=True).inpaint(bg, (10, 10, 40, 40), reference=photo))
    assert (pasted[10:40, 10:40] == (1, 2, 3)).all()                   # a square photo fills the square box
    with pytest.raises(ValueError, match="no cut-out"):
        CutoutCompositor().inpaint(bg, (10, 10, 40, 40), "mug")
