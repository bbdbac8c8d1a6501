"""Removal backends on tiny random pipelines of their real classes, the LoRA loader, the synthetic truth.

The property that matters for all of them: pixels outside the (grown) mask are byte-identical.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_diffusers import tiny_sd_inpaint, tiny_unet
from locinsert.data import synthetic
from locinsert.data.synthetic.removal import (SceneSegmenter, insert_object, removal_examples, scene_without)
from locinsert.images import as_mask
from locinsert.inpainting import BiharmonicFill, DiffusersRemover, PowerPaintRemover, dilate_mask, load_lora
from locinsert.editing.metrics import masked_psnr, masked_ssim


def noise(w, h, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8))


def blob(w, h, box):
    m = np.zeros((h, w), bool)
    x1, y1, x2, y2 = box
    yy, xx = np.mgrid[:h, :w]
    m[((yy - (y1 + y2) / 2) / ((y2 - y1) / 2)) ** 2 + ((xx - (x1 + x2) / 2) / ((x2 - x1) / 2)) ** 2 <= 1] = True
    return m


def assert_only_mask_changed(remover, size=(80, 50), box=(20, 10, 45, 38)):
    img = noise(*size)
    m = blob(*size, box)
    out = remover.remove(img, m, generator=torch.Generator().manual_seed(0))
    assert out.size == img.size and out.mode == "RGB"
    grown = dilate_mask(m, remover.dilate)
    a, b = np.asarray(img), np.asarray(out)
    assert np.array_equal(a[~grown], b[~grown])
    assert not np.array_equal(a[m], b[m])
    return out


@pytest.fixture(scope="module")
def sd_pipe():
    return tiny_sd_inpaint()


# -- masks and the offline fill ----------------------------------------------------------------

def test_as_mask_accepts_bool_float_uint8_pil_and_rejects_wrong_size():
    m = blob(30, 20, (5, 5, 15, 15))
    for form in (m, m.astype(np.float32), m.astype(np.uint8) * 255, Image.fromarray(m.astype(np.uint8) * 255),
                 torch.from_numpy(m)):
        assert np.array_equal(as_mask(form, (30, 20)), m)
    with pytest.raises(ValueError, match="20x30 but the image is 30x20"):
        as_mask(m.T, (30, 20))
    with pytest.raises(ValueError, match="2-D"):
        as_mask(np.zeros((20, 30, 3)), (30, 20))


def test_biharmonic_restores_a_flat_background_and_touches_nothing_else():
    img = np.full((40, 60, 3), (120, 80, 40), np.uint8)
    m = blob(60, 40, (20, 10, 40, 30))
    img[m] = (250, 10, 10)
    out = assert_only_mask_changed(BiharmonicFill(), (60, 40), (20, 10, 40, 30))   # on noise
    out = np.asarray(BiharmonicFill(dilate=0).remove(Image.fromarray(img), m))
    assert np.abs(out[m].astype(int) - (120, 80, 40)).max() <= 1


@pytest.mark.parametrize("bad, match", [(np.zeros((50, 80), bool), "empty"),
                                        (np.ones((10, 10), bool), "10x10 but the image is 80x50"),
                                        (np.ones((50, 80), bool), "whole image")])
def test_remove_rejects_empty_wrong_size_and_total_masks(bad, match):
    with pytest.raises(ValueError, match=match):
        BiharmonicFill().remove(noise(80, 50), bad)


# -- diffusion removers --------------------------------------------------------------------------

def test_diffusers_remover_changes_only_the_mask_and_feeds_the_object_mask(sd_pipe):
    rem = DiffusersRemover(sd_pipe, num_inference_steps=2, dilate=2)
    seen = {}
    generate = rem.inpainter.generate

    def spy(crop, prompt, generator=None):
        seen.update(mask=np.asarray(crop.mask) > 0, prompt=prompt, size=crop.size)
        return generate(crop, prompt, generator)

    rem.inpainter.generate = spy
    assert_only_mask_changed(rem)
    assert seen["prompt"] == "" and seen["mask"].shape == seen["size"][::-1]
    # the pipeline sees an ellipse, not its box: the box's corners are outside the mask
    ys, xs = np.nonzero(seen["mask"])
    assert not seen["mask"][ys.min(), xs.min()] and seen["mask"].mean() < 0.9


def test_powerpaint_remover_uses_ctxt_prompt_obj_negative_and_only_the_mask(sd_pipe):
    pipe = tiny_sd_inpaint()
    torch.manual_seed(3)
    vectors = {t: torch.randn(10, 32) for t in ("p_ctxt", "p_shape", "p_obj")}
    pipe.load_textual_inversion(list(vectors.values()), token=list(vectors), tokenizer=pipe.tokenizer,
                                text_encoder=pipe.text_encoder)
    rem = PowerPaintRemover(pipe, num_inference_steps=2)
    pos, neg = rem.prompts()
    assert pos == "empty scene blur p_ctxt " + " ".join(f"p_ctxt_{i}" for i in range(1, 10))
    assert neg == "p_obj " + " ".join(f"p_obj_{i}" for i in range(1, 10))
    assert rem.inpainter.guidance_scale == 10.0
    # the embeddings hold all 10 P_ctxt vectors (the tokenizer resolves every written-out sub-token)
    ids = pipe.tokenizer(pos).input_ids
    ctxt_ids = pipe.tokenizer.convert_tokens_to_ids(rem._ctxt.split())
    assert sum(i in ctxt_ids for i in ids) == 10
    assert_only_mask_changed(rem)


# -- LoRA loading --------------------------------------------------------------------------------

def _lora_folder(path, unet, prefix=None, seed=0):
    from diffusers import StableDiffusionInpaintPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    layers = get_peft_model_state_dict(unet)
    if prefix is None:
        layers = convert_state_dict_to_diffusers(layers)
        StableDiffusionInpaintPipeline.save_lora_weights(str(path), unet_lora_layers=layers, safe_serialization=True)
    else:   # keys under another model's prefix: load_lora_weights only warns and attaches nothing
        from safetensors.torch import save_file
        path.mkdir(parents=True)
        save_file({prefix + k: v.contiguous() for k, v in layers.items()},
                  str(path / "pytorch_lora_weights.safetensors"))
    return str(path)


def test_load_lora_attaches_and_changes_the_output(tmp_path):
    folder = _lora_folder(tmp_path / "lora", tiny_unet(9))
    base = DiffusersRemover(tiny_sd_inpaint(), num_inference_steps=2)
    tuned = DiffusersRemover(tiny_sd_inpaint(), num_inference_steps=2, lora=folder)
    assert tuned.adapter == "removal" and tuned.pipe.get_list_adapters() == {"unet": ["removal"]}
    img, m = noise(64, 64), blob(64, 64, (16, 16, 48, 48))
    a = np.asarray(base.remove(img, m, generator=torch.Generator().manual_seed(0)))
    b = np.asarray(tuned.remove(img, m, generator=torch.Generator().manual_seed(0)))
    assert not np.array_equal(a, b)


def test_lora_that_attaches_to_nothing_or_does_not_fit_is_an_error(tmp_path):
    dit = _lora_folder(tmp_path / "dit", tiny_unet(9), prefix="transformer.")
    with pytest.raises(ValueError, match="attached to no module"):
        load_lora(tiny_sd_inpaint(), dit)
    # a LoRA for a UNet with another cross-attention width: its shapes do not fit
    from diffusers import UNet2DConditionModel
    torch.manual_seed(0)
    other = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=9,
                                 out_channels=4, cross_attention_dim=16, norm_num_groups=32,
                                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    foreign = _lora_folder(tmp_path / "foreign", other)
    with pytest.raises(ValueError, match="does not fit"):
        load_lora(tiny_sd_inpaint(), foreign)
    with pytest.raises(FileNotFoundError):
        load_lora(tiny_sd_inpaint(), str(tmp_path / "missing" / "lora.safetensors"))


# -- synthetic truth and the metrics --------------------------------------------------------------

def test_scene_without_and_inserted_objects_are_exact_removal_truth():
    for ex in removal_examples(12, seed=1):
        a, t = np.asarray(ex.image), np.asarray(ex.target)
        differs = (a != t).any(-1)
        assert differs.any() and not differs[~ex.mask].any()        # only the object's pixels differ
        assert masked_psnr(ex.target, ex.target, ex.mask) == float("inf")
        assert masked_ssim(ex.target, ex.image, ex.mask) < 1.0
    scene = next(s for s in synthetic.make_scenes(20, seed=2) if len(s.tables) == 2)
    one = scene_without(scene, "table", 0)
    assert len(one.tables) == 1 and len(one.table_tops) == 1
    with pytest.raises(ValueError, match="no index 5"):
        scene_without(scene, "vase", 5)


def test_scene_segmenter_finds_things_and_pasted_objects_only():
    scene = next(s for s in synthetic.make_scenes(20, seed=0) if len(s.crates))
    img, cup = insert_object(Image.fromarray(scene.render()), "cup", (10, 40, 20, 52))
    seg = SceneSegmenter(scene, {"cup": cup})
    assert np.array_equal(seg.segment(img, "cup") > 0, cup)
    assert seg.segment(img, "crates").sum() > 0 and seg.segment(img, "dog").sum() == 0


def test_biharmonic_removal_quality_beats_leaving_the_object():
    examples = removal_examples(16, seed=0)
    filled = [BiharmonicFill().remove(e.image, e.mask) for e in examples]
    before = np.median([masked_psnr(e.target, e.image, e.mask) for e in examples])
    after = np.median([masked_psnr(e.target, f, e.mask) for e, f in zip(examples, filled)])
    assert after > before + 5


def test_biharmonic_clamp_stops_the_overshoot_beside_a_strong_edge():
    # A demo scene where a cup stands on the floor 2 px left of a dark table leg (R: floor 121, leg 80).
    from locinsert.training.synthetic import synthetic_test_queries

    scenes = {q.meta["scene"].scene_id: q.meta["scene"] for q in synthetic_test_queries("quick", 0, 32)}
    scene = [s for s in scenes.values() if len(s.vases) and len(s.windows)][2]
    img, cup = insert_object(Image.fromarray(scene.render()), "cup", (5.12, 51.2, 12.8, 60.8))
    truth = scene.render().astype(int)
    loose = np.asarray(BiharmonicFill(clamp=False).remove(img, cup)).astype(int)
    tight = np.asarray(BiharmonicFill().remove(img, cup)).astype(int)
    assert loose[cup][:, 0].max() > 140                     # a bright halo above every border value
    assert tight[cup][:, 0].max() <= 121
    assert np.abs(tight - truth)[cup].mean() < np.abs(loose - truth)[cup].mean()
