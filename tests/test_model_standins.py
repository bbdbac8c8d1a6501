"""Pretrained encoders load through the same code path a hub id takes, using tiny local stand-ins.

timm: ``image_pretrained=<file>`` goes through timm's own pretrained loader
(``pretrained_cfg_overlay=dict(file=...)``); transformers ViT / CLIP text / GPT-2:
``from_pretrained(<folder>)``; open_clip: ``local-dir:<folder>``, the same loader as ``hf-hub:``.
After construction the weights live in the LocationModel checkpoint: a saved model reloads with
the stand-in folders deleted.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from locinsert.modeling import LocationModel, LocationModelConfig

IMAGE = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
TIMM_KW = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
OC_CFG = dict(embed_dim=24, vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=16, head_width=16),
              text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))


def _same(a: torch.nn.Module, b: torch.nn.Module, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if not any(k.startswith(s) for s in skip)]
    assert keys and all(k in sb and torch.equal(sa[k], sb[k]) for k in keys)


def _round_trip(model, tmp_path, remove):
    out = tmp_path / "saved"
    model.save_pretrained(out)
    for path in remove:
        shutil.rmtree(path)
    loaded = LocationModel.from_pretrained(out)
    _same(model, loaded)
    box = torch.tensor([[5.0, 5.0, 30.0, 35.0]])
    torch.testing.assert_close(loaded.score(IMAGE, "cup", box), model.score(IMAGE, "cup", box))
    return loaded


def test_timm_weights_file(tmp_path):
    import timm

    torch.manual_seed(0)
    src = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **TIMM_KW)
    (tmp_path / "vit").mkdir()
    save_file(src.state_dict(), str(tmp_path / "vit" / "model.safetensors"))
    cfg = LocationModelConfig.preset("tiny", image_pretrained=str(tmp_path / "vit" / "model.safetensors"))
    model = LocationModel(cfg).eval()
    _same(src, model.image_encoder.model)
    assert not model.config.image_pretrained and "image" in model.config.weights_source
    _round_trip(model, tmp_path, [tmp_path / "vit"])


def test_transformers_vit_and_clip_text(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModel, ViTConfig, ViTModel

    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=64), add_pooling_layer=False)
    vit.save_pretrained(tmp_path / "vit")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=77))
    text.save_pretrained(tmp_path / "clip")
    cfg = LocationModelConfig.preset(
        "tiny", image_encoder_type="hf_vit", image_encoder=str(tmp_path / "vit"), image_pretrained=True,
        image_encoder_kwargs=None, class_encoder_type="hf_clip", class_encoder=str(tmp_path / "clip"),
        class_pretrained=True, class_encoder_kwargs=None)
    model = LocationModel(cfg).eval()
    _same(vit, model.image_encoder.model)
    _same(text, model.class_encoder.model)
    assert model.config.image_size == 32 and model.prefix_length == 16 + 1 + 2
    feats = model.encode_class(["cup", "chair"])
    assert feats.shape == (2, 32) and not torch.allclose(feats[0], feats[1])
    s = model.sample(IMAGE, "cup", num_samples=5)
    torch.testing.assert_close(model.score(IMAGE, "cup", s.boxes), s.logprobs, atol=1e-5, rtol=1e-5)
    _round_trip(model, tmp_path, [tmp_path / "vit", tmp_path / "clip"])


def test_open_clip_local_dir(tmp_path):
    import open_clip
    from open_clip.model import CLIP

    torch.manual_seed(0)
    clip = CLIP(**OC_CFG)
    folder = tmp_path / "oc"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": OC_CFG, "preprocess_cfg": {}}))
    save_file(clip.state_dict(), str(folder / "open_clip_model.safetensors"))
    cfg = LocationModelConfig.preset("tiny", class_encoder=f"local-dir:{folder}", class_encoder_kwargs=None)
    model = LocationModel(cfg).eval()
    tok = open_clip.get_tokenizer(f"local-dir:{folder}")
    with torch.no_grad():
        want = clip.encode_text(tok(["a photo of a cup"]))
    torch.testing.assert_close(model.encode_class(["cup"]), want)
    # the config now carries the architecture, so the saved model rebuilds without the folder
    assert model.config.class_encoder is None and model.config.class_encoder_kwargs["embed_dim"] == 24
    _round_trip(model, tmp_path, [folder])


@pytest.mark.slow
def test_pretrained_gpt2_body(tmp_path):
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    gpt = GPT2Model(GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2, n_positions=32))
    gpt.save_pretrained(tmp_path / "gpt")
    model = LocationModel(LocationModelConfig.preset("tiny", decoder_pretrained=str(tmp_path / "gpt"))).eval()
    _same(gpt, model.decoder, skip=("wte.",))
    assert model.decoder.wte.weight.shape[0] == model.config.num_bins + 1
    assert model.config.decoder_pretrained is None
    _round_trip(model, tmp_path, [tmp_path / "gpt"])


@pytest.mark.slow
def test_hub_names_are_not_fetched_offline():
    # base with hub weights needs the network; offline it must fail loudly, not silently go random
    cfg = LocationModelConfig.preset("base")
    with pytest.raises(Exception):
        LocationModel(cfg)
