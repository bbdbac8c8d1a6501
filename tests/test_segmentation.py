"""Masks from text: the protocol, CLIPSeg and TextMaskModel on tiny random models, given boxes/masks, bad input."""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from locinsert.segmentation import (BoxSegmenter, CLIPSegSegmenter, MaskSegmenter, TextMaskConfig, TextMaskModel,
                                    TextMaskSegmenter, as_soft_mask, hard_mask, is_empty,
                                    mask_box)

from helpers_diffusers import tiny_clipseg as make_tiny_clipseg


def _image(h=48, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- helpers of the protocol ---------------------------------------------------------------------------

def test_threshold_helpers():
    m = np.zeros((6, 8), np.float32)
    assert is_empty(m) and mask_box(m) is None
    m[1:3, 2:5] = 0.7
    assert not is_empty(m, 0.5) and is_empty(m, 0.8)
    assert mask_box(m) == (2.0, 1.0, 5.0, 3.0)
    assert hard_mask(m, 0.5).sum() == 6
    with pytest.raises(ValueError, match="threshold"):
        hard_mask(m, 1.5)


def test_as_soft_mask_reads_every_format_and_rejects_the_wrong_size():
    b = np.zeros((4, 5), bool)
    b[1, 2] = True
    for m in (b, b.astype(np.uint8) * 255, b.astype(np.uint8), b.astype(np.float32), torch.from_numpy(b),
              Image.fromarray(b.astype(np.uint8) * 255)):
        out = as_soft_mask(m, (5, 4))
        assert out.dtype == np.float32 and out.shape == (4, 5) and out[1, 2] == 1.0 and out.sum() == 1.0
    with pytest.raises(ValueError, match="5x4 but the image is 4x5"):
        as_soft_mask(b, (4, 5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_soft_mask(b.astype(np.float32) * 3, (5, 4))
    with pytest.raises(ValueError, match="0-255"):
        as_soft_mask(b.astype(np.int64) * 300, (5, 4))
    with pytest.raises(TypeError):
        as_soft_mask([[0, 1]], (2, 1))


def test_given_box_and_mask():
    img = _image(10, 12)
    m = BoxSegmenter((2.5, 1, 6, 4)).segment(img, "the cup")
    assert m.shape == (10, 12) and m.dtype == np.float32
    assert m[1:4, 2:6].all() and m.sum() == 12      # the pixels the box touches, nothing else
    with pytest.raises(ValueError, match="outside"):
        BoxSegmenter((0, 0, 20, 5)).segment(img)
    given = np.zeros((10, 12), bool)
    given[5:, :3] = True
    seg = MaskSegmenter(given)
    assert np.array_equal(seg.segment(img, "anything") > 0.5, given)
    assert seg.box(seg.segment(img)) == (0.0, 5.0, 3.0, 10.0)
    with pytest.raises(ValueError, match="image is 20x10"):
        seg.segment(_image(10, 20))


# -- CLIPSeg -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_clipseg(tmp_path_factory):
    """A tiny random CLIPSeg model + processor, saved like a hub checkpoint."""
    path = tmp_path_factory.mktemp("clipseg")
    make_tiny_clipseg(path)
    return str(path)


def test_clipseg_mask_is_the_squashed_logits_resized_back(tiny_clipseg):
    seg = CLIPSegSegmenter.from_pretrained(tiny_clipseg, threshold=0.3)
    img = _image()
    m = seg.segment(img, "the cup")
    assert m.shape == (48, 80) and m.dtype == np.float32 and 0.0 <= m.min() and m.max() <= 1.0
    # by hand: one image per text, sigmoid of (n, S, S) logits, resized to (H, W) ignoring the aspect
    inputs = seg.processor(text=["the cup"], images=[Image.fromarray(img)], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = seg.model(**inputs).logits
    assert logits.shape == (1, 32, 32)
    want = F.interpolate(torch.sigmoid(logits)[:, None], size=(48, 80), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(m, want.numpy(), atol=1e-6)
    assert seg.threshold == 0.3


def test_clipseg_many_texts_match_one_at_a_time(tiny_clipseg):
    seg = CLIPSegSegmenter.from_pretrained(tiny_clipseg, batch_size=2)
    img = _image(40, 30, seed=1)
    texts = ["the cup", "a red chair on the left", "bird"]
    many = seg.segment_many(img, texts)
    assert many.shape == (3, 40, 30)
    for t, m in zip(texts, many):
        np.testing.assert_allclose(m, seg.segment(img, t), atol=1e-5)
    assert not np.allclose(many[0], many[1])  # the text matters


def test_clipseg_bad_input(tiny_clipseg):
    seg = CLIPSegSegmenter.from_pretrained(tiny_clipseg)
    with pytest.raises(ValueError, match="text is empty"):
        seg.segment(_image(), "  ")
    with pytest.raises(TypeError, match="text must be a str"):
        seg.segment(_image(), None)
    with pytest.raises(ValueError, match="file not found"):
        seg.segment("no/such/image.png", "the cup")
    with pytest.raises(ValueError, match="threshold"):
        CLIPSegSegmenter(seg.model, seg.processor, threshold=2)


# -- TextMaskModel ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_textmask():
    torch.manual_seed(0)
    return TextMaskModel(TextMaskConfig.preset("tiny")).eval()


def test_textmask_architecture_follows_the_reference(tiny_textmask):
    m = tiny_textmask
    assert sorted(m.stage_attention) == ["2", "3", "4"]           # cross-attention after stages 2, 3, 4
    assert len(m.decoder) == 4 and all(b.attn is not None for b in m.decoder)  # 4 up-blocks with skips
    base = TextMaskConfig.preset("base")
    assert base.image_encoder == "resnet18" and base.image_pretrained is True
    assert base.text_encoder == "ViT-B-32" and base.text_pretrained == "openai"
    assert base.attention_stages == [2, 3, 4] and base.dice_weight > 0 and base.bce_weight > 0
    with pytest.raises(ValueError, match="unknown preset"):
        TextMaskConfig.preset("huge")
    with pytest.raises(ValueError, match="decoder_channels"):
        TextMaskConfig(decoder_channels=[8])
    with pytest.raises(ValueError, match="attention_stages"):
        TextMaskConfig(encoder_indices=[1, 2, 3], decoder_channels=[8, 8], attention_stages=[4])


def test_textmask_text_conditions_the_mask(tiny_textmask):
    m = tiny_textmask
    x = m.preprocess([_image(32, 32)] * 2)
    with torch.no_grad():
        same = m(x, texts=["the vase", "the table on the left"]).logits
        assert torch.allclose(same[0], same[1])  # residual blocks start as the identity
        gates = [mod.gate for mod in m.modules() if hasattr(mod, "gate")]
        for g in gates:
            g.fill_(1.0)
        try:
            out = m(x, texts=["the vase", "the table on the left"]).logits
        finally:
            for g in gates:
                g.zero_()
    assert out.shape == (2, 32, 32)
    assert not torch.allclose(out[0], out[1], atol=1e-4)


def test_textmask_loss_and_gradients(tiny_textmask):
    m = tiny_textmask
    x = m.preprocess([_image(32, 32)] * 2)
    labels = torch.zeros(2, 32, 32)
    labels[:, 8:20, 4:16] = 1
    m.train()
    try:
        out = m(x, texts=["the vase", "the cup"], labels=labels)
        out.loss.backward()
    finally:
        m.eval()
    assert torch.isfinite(out.loss) and out.loss > 0
    assert m.head[-1].weight.grad is not None and m.stage_attention["4"].attn.in_proj_weight.grad is not None
    assert all(p.grad is None for p in m.text_encoder.parameters())  # the tiny preset's text tower is frozen
    m.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="one text per image"):
        m(x, texts=["only one"])
    with pytest.raises(ValueError, match="text is empty"):
        m(x, texts=["", "the cup"])


def test_textmask_save_load_round_trip(tiny_textmask, tmp_path):
    tiny_textmask.save_pretrained(tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model_type"] == "locinsert_textmask" and not cfg["image_pretrained"] and not cfg["text_pretrained"]
    seg = TextMaskSegmenter.from_pretrained(str(tmp_path / "m"))
    img = _image(50, 70, seed=3)
    a, b = TextMaskSegmenter(tiny_textmask).segment(img, "the vase"), seg.segment(img, "the vase")
    assert a.shape == (50, 70) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert seg.threshold == tiny_textmask.config.threshold
    many = seg.segment_many(img, ["the vase", "the cup"])
    np.testing.assert_allclose(many[0], a, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="config.json"):
        TextMaskModel.from_pretrained(str(tmp_path))


def test_textmask_checkpoint_that_does_not_match_its_config(tiny_textmask, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_textmask.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["head.2.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="does not match its config"):
        TextMaskModel.from_pretrained(str(tmp_path))


def test_nothing_found_is_an_empty_mask_not_an_error(tiny_textmask):
    head = tiny_textmask.head[-1]
    saved = head.bias.detach().clone()
    with torch.no_grad():
        head.bias.fill_(-30.0)  # a model sure that the object is not there
    try:
        seg = TextMaskSegmenter(tiny_textmask)
        m = seg.segment(_image(20, 24), "the unicorn")
    finally:
        with torch.no_grad():
            head.bias.copy_(saved)
    assert m.shape == (20, 24) and m.max() < 1e-6
    assert seg.is_empty(m) and seg.box(m) is None
