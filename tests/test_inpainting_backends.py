"""Every inpainting backend on a tiny random pipeline of its real diffusers class, offline.

The property that matters for all of them: pixels outside the box are byte-identical to the input,
the output has the input's size, for non-square images, boxes at the border and tiny boxes.
"""

import contextlib
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_diffusers import tiny_flux_fill, tiny_gligen, tiny_sd_inpaint, tiny_text_encoder, tiny_unet
from locinsert.inpainting import (CutoutCompositor, DiffusersInpainter, GLIGENInpainter, PowerPaintInpainter,
                                  box_mask)
from locinsert.inpainting.powerpaint import V1_NEGATIVE, task_token_text

CASES = [
    ((80, 50), (20.5, 10.2, 45.7, 38.9)),   # wide image, interior, fractional box
    ((48, 72), (36, 40, 48, 72)),           # tall image, box in the bottom-right corner
    ((80, 50), (0.0, 21.0, 1.5, 22.0)),     # tiny (2 x 1 pixels) at the left border
]


def noise(w, h, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8))


def assert_only_box_changed(inpainter, size, box, prompt="a red cup"):
    img = noise(*size)
    out = inpainter.inpaint(img, box, prompt, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, Image.Image) and out.size == img.size and out.mode == "RGB"
    m = box_mask(box, *size)
    a, b = np.asarray(img), np.asarray(out)
    assert np.array_equal(a[~m], b[~m])
    assert not np.array_equal(a[m], b[m])   # something was drawn
    return out


@contextlib.contextmanager
def spy_calls(pipe):
    """Record the keyword arguments of every call of ``pipe``'s class while the block runs."""
    cls, calls = type(pipe), []
    original = cls.__call__

    def record(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    with mock.patch.object(cls, "__call__", record):
        yield calls


@pytest.fixture(scope="module")
def sd_pipe():
    return tiny_sd_inpaint()


@pytest.fixture(scope="module")
def gligen_pipe():
    return tiny_gligen()


@pytest.fixture(scope="module")
def flux_pipe():
    return tiny_flux_fill()


# -- DiffusersInpainter (SD inpainting) -------------------------------------------------------

@pytest.mark.parametrize("size, box", CASES)
def test_sd_inpaint_changes_only_the_box(sd_pipe, size, box):
    assert_only_box_changed(DiffusersInpainter(sd_pipe, num_inference_steps=1, feather=1), size, box)


def test_sd_inpaint_runs_at_native_grid_and_is_reproducible(sd_pipe):
    inp = DiffusersInpainter(sd_pipe, num_inference_steps=1)
    assert inp.multiple == sd_pipe.vae_scale_factor and inp.resolution == 32 * sd_pipe.vae_scale_factor
    img = noise(120, 40)
    with spy_calls(sd_pipe) as calls:
        a = inp.inpaint(img, (10, 5, 60, 35), "a dog", generator=torch.Generator().manual_seed(3))
    b = inp.inpaint(img, (10, 5, 60, 35), "a dog", generator=torch.Generator().manual_seed(3))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    call = calls[0]
    assert call["height"] % inp.multiple == 0 and call["width"] % inp.multiple == 0
    assert call["image"].size == call["mask_image"].size == (call["width"], call["height"])
    assert call["prompt"] == "a dog"


def test_diffusers_from_pretrained_autopipeline_roundtrip(sd_pipe, tmp_path):
    sd_pipe.save_pretrained(tmp_path / "sd")
    inp = DiffusersInpainter.from_pretrained(str(tmp_path / "sd"), dtype=torch.float32, device="cpu",
                                             num_inference_steps=1)
    assert type(inp.pipe).__name__ == "StableDiffusionInpaintPipeline"
    assert inp.pipe.unet.dtype == torch.float32
    assert_only_box_changed(inp, (64, 48), (8, 8, 40, 40))


# -- FluxFillPipeline ---------------------------------------------------------------------------

@pytest.mark.parametrize("size, box", CASES)
def test_flux_fill_changes_only_the_box(flux_pipe, size, box):
    assert_only_box_changed(DiffusersInpainter(flux_pipe, num_inference_steps=1, resolution=32), size, box)


def test_flux_fill_snaps_to_twice_the_vae_factor(flux_pipe):
    inp = DiffusersInpainter(flux_pipe, num_inference_steps=1, resolution=30)
    assert inp.multiple == 2 * flux_pipe.vae_scale_factor          # 16 for FLUX.1 Fill (vae factor 8)
    assert DiffusersInpainter(flux_pipe).resolution == flux_pipe.default_sample_size * flux_pipe.vae_scale_factor
    with spy_calls(flux_pipe) as calls:
        inp.inpaint(noise(90, 40), (5, 5, 50, 39), "a lamp", generator=torch.Generator().manual_seed(0))
    h, w = calls[0]["height"], calls[0]["width"]
    assert h % inp.multiple == 0 and w % inp.multiple == 0 and w > h


def test_flux_fill_from_pretrained_picks_fluxfill_not_autopipeline(flux_pipe, tmp_path):
    flux_pipe.save_pretrained(tmp_path / "flux")
    inp = DiffusersInpainter.from_pretrained(str(tmp_path / "flux"), num_inference_steps=1, resolution=16)
    assert type(inp.pipe).__name__ == "FluxFillPipeline"
    assert_only_box_changed(inp, (40, 30), (10, 5, 30, 25))


# -- GLIGEN -----------------------------------------------------------------------------------

@pytest.mark.parametrize("size, box", CASES)
def test_gligen_changes_only_the_box(gligen_pipe, size, box):
    assert_only_box_changed(GLIGENInpainter(gligen_pipe, num_inference_steps=1), size, box)


def test_gligen_gets_square_crop_at_vae_sample_size_and_normalised_box(gligen_pipe):
    inp = GLIGENInpainter(gligen_pipe, num_inference_steps=1)
    with spy_calls(gligen_pipe) as calls:
        inp.inpaint(noise(150, 60), (100, 10, 140, 50), "a vase", generator=torch.Generator().manual_seed(0))
    call = calls[0]
    S = gligen_pipe.vae.config.sample_size
    assert call["height"] == call["width"] == S and call["gligen_inpaint_image"].size == (S, S)
    (bx,) = call["gligen_boxes"]
    assert all(0.0 <= v <= 1.0 for v in bx) and bx[2] > bx[0] and bx[3] > bx[1]
    # A 40 px box in a window 2x its size covers about half the window.
    assert abs((bx[2] - bx[0]) - 0.5) < 0.05
    assert call["gligen_phrases"] == ["a vase"] and call["gligen_scheduled_sampling_beta"] == 1.0


def test_gligen_rejects_non_inpainting_unet(gligen_pipe):
    from diffusers import StableDiffusionGLIGENPipeline

    gen = StableDiffusionGLIGENPipeline(vae=gligen_pipe.vae, text_encoder=gligen_pipe.text_encoder,
                                        tokenizer=gligen_pipe.tokenizer, unet=tiny_unet(4, "gated"),
                                        scheduler=gligen_pipe.scheduler, safety_checker=None,
                                        feature_extractor=None, requires_safety_checker=False)
    with pytest.raises(ValueError, match="9-channel"):
        GLIGENInpainter(gen)


def test_gligen_from_pretrained_roundtrip(gligen_pipe, tmp_path):
    gligen_pipe.save_pretrained(tmp_path / "gligen")
    inp = GLIGENInpainter.from_pretrained(str(tmp_path / "gligen"), dtype="float32", num_inference_steps=1)
    assert type(inp.pipe).__name__ == "StableDiffusionGLIGENPipeline"
    assert_only_box_changed(inp, (70, 40), (30, 5, 60, 35))


# -- PowerPaint v1 -------------------------------------------------------------------------------

def _official_powerpaint_folder(tmp_path, sd_pipe):
    """The JunhaoZhuang/PowerPaint-v1 layout, with tiny weights: base pipeline + two safetensors files."""
    from safetensors.torch import save_file

    sd_pipe.save_pretrained(tmp_path / "base")
    pp = tmp_path / "powerpaint"
    (pp / "unet").mkdir(parents=True)
    (pp / "text_encoder").mkdir()
    unet = tiny_unet(9, seed=1)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(pp / "unet" / "unet.safetensors"))
    # The real file uses transformers 4 names: a "text_model." prefix and a wrapped token embedding.
    te = {("" if k.startswith("text_model.") else "text_model.") + k: v
          for k, v in tiny_text_encoder(seed=1).state_dict().items()}
    key = "text_model.embeddings.token_embedding"
    te[f"{key}.wrapped.weight"] = te.pop(f"{key}.weight")
    torch.manual_seed(5)
    vectors = {name: torch.randn(10, 32) for name in ("P_ctxt", "P_shape", "P_obj")}
    for name, v in vectors.items():
        te[f"{key}.trainable_embeddings.{name}"] = v
    te["text_model.embeddings.position_ids"] = torch.arange(77)[None]   # old transformers saved this buffer
    save_file({k: v.contiguous() for k, v in te.items()}, str(pp / "text_encoder" / "text_encoder.safetensors"))
    return str(pp), str(tmp_path / "base"), unet, vectors


@pytest.fixture(scope="module")
def powerpaint(sd_pipe, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pp")
    pp, base, unet, vectors = _official_powerpaint_folder(tmp, sd_pipe)
    inp = PowerPaintInpainter.from_pretrained(pp, base=base, num_inference_steps=1)
    return inp, unet, vectors


def test_powerpaint_official_layout_loads_weights_and_lowercase_task_tokens(powerpaint):
    inp, unet, vectors = powerpaint
    for name, p in unet.state_dict().items():
        assert torch.equal(inp.pipe.unet.state_dict()[name], p)
    tok = inp.pipe.tokenizer
    text = task_token_text(tok, "P_obj")
    assert text.split() == ["p_obj"] + [f"p_obj_{i}" for i in range(1, 10)]
    ids = tok.convert_tokens_to_ids(text.split())
    emb = inp.pipe.text_encoder.get_input_embeddings().weight
    assert torch.allclose(emb[ids], vectors["P_obj"])
    # The tokenizer resolves every sub-token of the written-out prompt (no silent truncation to 1 vector).
    enc = tok(inp.prompts("a cup")[0]).input_ids
    assert sum(i in ids for i in enc) == 10


def test_powerpaint_object_embedding_matches_diffusers_textual_inversion(powerpaint):
    inp, _, _ = powerpaint
    ours, ours_neg = inp.encode("a cup")
    # diffusers expands a lowercase textual-inversion token to its 10 vectors itself: same embedding.
    ref, ref_neg = inp.pipe.encode_prompt("a cup p_obj", "cpu", 1, True, negative_prompt=f"{V1_NEGATIVE} p_obj")
    assert torch.allclose(ours, ref, atol=1e-6) and torch.allclose(ours_neg, ref_neg, atol=1e-6)


def test_powerpaint_fitting_degree_blends_shape_and_context(powerpaint):
    inp, _, _ = powerpaint
    shaped = PowerPaintInpainter(inp.pipe, task="shape", fitting_degree=0.3)
    pa, pb, na, nb = shaped.embed(list(shaped.prompts("a cup")))
    pe, ne = shaped.encode("a cup")
    assert torch.allclose(pe[0], 0.3 * pa + 0.7 * pb, atol=1e-6)
    assert torch.allclose(ne[0], 0.3 * na + 0.7 * nb, atol=1e-6)
    assert not torch.allclose(pa, pb)
    with pytest.raises(ValueError, match="fitting_degree"):
        PowerPaintInpainter(inp.pipe, fitting_degree=1.5)


@pytest.mark.parametrize("size, box", CASES)
def test_powerpaint_changes_only_the_box(powerpaint, size, box):
    assert_only_box_changed(powerpaint[0], size, box)


def test_powerpaint_converted_layout_with_capitalised_tokens(tmp_path):
    """Sanster-style folder: tokens P_obj_0..P_obj_9 already in the tokenizer (capitalised)."""
    pipe = tiny_sd_inpaint()
    names = [f"{t}_{i}" for t in ("P_ctxt", "P_shape", "P_obj") for i in range(10)]
    pipe.tokenizer.add_tokens(names)
    pipe.text_encoder.resize_token_embeddings(len(pipe.tokenizer))
    pipe.save_pretrained(tmp_path / "converted")
    inp = PowerPaintInpainter.from_pretrained(str(tmp_path / "converted"), num_inference_steps=1)
    text = task_token_text(inp.pipe.tokenizer, "p_obj")
    assert text.split() == [f"P_obj_{i}" for i in range(10)]
    want = inp.pipe.tokenizer.convert_tokens_to_ids(text.split())
    assert len(set(want)) == 10 and all(i >= 514 for i in want)
    assert sum(i in want for i in inp.pipe.tokenizer(inp.prompts("a cup")[0]).input_ids) == 10
    assert_only_box_changed(inp, (60, 40), (5, 5, 30, 30))


def test_powerpaint_without_task_tokens_or_weights_is_a_clear_error(sd_pipe, tmp_path):
    with pytest.raises(ValueError, match="task token"):
        PowerPaintInpainter(sd_pipe)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a diffusers pipeline"):
        PowerPaintInpainter.from_pretrained(str(tmp_path / "empty"))


# -- CutoutCompositor ------------------------------------------------------------------------------

def disc(size=20, color=(0, 200, 0)):
    a = np.zeros((size, size, 4), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= (size / 2) ** 2
    a[inside] = (*color, 255)
    return Image.fromarray(a, "RGBA")


@pytest.mark.parametrize("size, box", CASES)
def test_cutout_changes_only_the_box(size, box):
    assert_only_box_changed(CutoutCompositor(disc(), fit="stretch"), size, box)


def test_cutout_keeps_aspect_anchored_bottom_and_respects_alpha():
    bg = Image.new("RGB", (100, 60), (10, 10, 10))
    out = np.asarray(CutoutCompositor(disc(), fit="contain").inpaint(bg, (10, 10, 70, 50), "ball"))
    green = (out[..., 1] > 100)
    ys, xs = np.nonzero(green)
    assert ys.max() == 49 and ys.min() >= 10          # a 40 px disc standing on the box bottom
    assert abs((xs.max() + xs.min()) / 2 - 39.5) <= 1  # centred horizontally
    assert (out[11, 11] == 10).all()                   # transparent corner of the box keeps the background


def test_cutout_callable_per_class_uses_synthetic_sprites():
    from locinsert.data.synthetic import sprite

    comp = CutoutCompositor(sprite, allow_opaque=True)
    out = assert_only_box_changed(comp, (64, 64), (10, 30, 30, 60), prompt="chair")
    assert out.size == (64, 64)
    with pytest.raises(ValueError):
        comp.inpaint(noise(64, 64), (0, 0, 10, 10), "unicorn")   # no sprite for that class


def test_cutout_rejects_images_without_transparency(tmp_path):
    with pytest.raises(ValueError, match="no alpha"):
        CutoutCompositor(Image.new("RGB", (10, 10)))
    with pytest.raises(ValueError, match="fully opaque"):
        CutoutCompositor(Image.new("RGBA", (10, 10), (1, 2, 3, 255)))
    with pytest.raises(ValueError, match="fully transparent"):
        CutoutCompositor(Image.new("RGBA", (10, 10), (1, 2, 3, 0)))
    with pytest.raises(ValueError, match="file not found"):
        CutoutCompositor(str(tmp_path / "missing.png"))
    with pytest.raises(TypeError):
        CutoutCompositor(42)
    disc().save(tmp_path / "disc.png")
    assert CutoutCompositor(str(tmp_path / "disc.png")).cutout.mode == "RGBA"


# -- bad inputs, any backend ----------------------------------------------------------------------

@pytest.mark.parametrize("box, match", [((0, 0, 200, 10), "outside"), ((10, 10, 10, 20), "degenerate"),
                                        ((5, 5, 3, 8), "degenerate"), ((-1, 0, 5, 5), "outside")])
def test_bad_boxes_are_clear_errors(box, match):
    with pytest.raises(ValueError, match=match):
        CutoutCompositor(disc()).inpaint(noise(80, 50), box, "ball")


def test_bad_prompt_and_pipeline_are_clear_errors(sd_pipe):
    with pytest.raises(ValueError, match="prompt is empty"):
        CutoutCompositor(disc()).inpaint(noise(30, 30), (1, 1, 9, 9), "  ")
    with pytest.raises(TypeError, match="prompt"):
        DiffusersInpainter(sd_pipe).inpaint(noise(30, 30), (1, 1, 9, 9), None)
    with pytest.raises(TypeError, match="pipeline"):
        GLIGENInpainter(None)
