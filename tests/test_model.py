"""LocationModel: presets, forward, sample, score, constraints at the API, save/load."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModel

from locinsert.modeling import BoxSamples, LocationModel, LocationModelConfig
from locinsert.modeling.constraints import BoxConstraints
from locinsert.regions import Region


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)


def test_presets_build_configs_offline():
    for name in ("tiny", "synthetic", "base"):
        cfg = LocationModelConfig.preset(name, pretrained=False)
        assert cfg.model_type == "locinsert"
        assert cfg.vocab_size == cfg.num_bins + 1
    base = LocationModelConfig.preset("base", pretrained=False)
    assert base.num_bins == 1024 and not base.image_pretrained and base.class_pretrained is None
    hub = LocationModelConfig.preset("base")
    assert hub.image_pretrained and hub.class_pretrained == "openai" and hub.decoder_pretrained == "gpt2"
    assert LocationModelConfig.preset("tiny", num_bins=8).num_bins == 8
    with pytest.raises(ValueError, match="unknown preset"):
        LocationModelConfig.preset("huge")


def test_synthetic_preset_shapes():
    m = LocationModel(LocationModelConfig.preset("synthetic"))
    assert m.config.image_size == 64 and m.config.num_bins == 32
    assert m.prefix_length == 16 + 1 + 1  # 4x4 patches of 16 px, the CLS token, BOS carrying the class
    assert m.config.class_as_bos and len(m.decoder.h) == 2
    assert any(p.requires_grad for p in m.image_encoder.parameters())
    assert not any(p.requires_grad for p in m.class_encoder.parameters())
    n = sum(p.numel() for n_, p in m.named_parameters() if not n_.startswith("class_encoder"))
    assert 1e6 < n < 3e6


def test_forward_loss_and_logps(model, image):
    pv = model.preprocess([image, image])
    assert pv.shape == (2, 3, 32, 32)
    tokens = torch.tensor([[1, 2, 5, 9], [0, 0, 15, 15]])
    out = model(pixel_values=pv, classes=["dog", "cup"], box_tokens=tokens)
    assert out.logits.shape == (2, 4, model.config.num_bins)
    logp = torch.log_softmax(out.logits, -1).gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(out.box_logps, logp.sum(-1))
    torch.testing.assert_close(out.loss, -logp.mean())
    out.loss.backward()
    assert model.lm_head.weight.grad is not None
    assert all(p.grad is None for p in model.class_encoder.parameters())  # frozen
    model.zero_grad()
    # cached features give the same result as the encoders (the feature-cache path)
    feats = model.encode_image(pv)
    cls = model.encode_class(["dog", "cup"])
    out2 = model(image_features=feats, class_features=cls, labels=tokens)
    torch.testing.assert_close(out2.box_logps, out.box_logps)


def test_forward_rejects_bad_tokens(model, image):
    pv = model.preprocess(image)
    with pytest.raises(ValueError, match="shape"):
        model(pixel_values=pv, classes=["dog"], box_tokens=torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        model(pixel_values=pv, classes=["dog"], box_tokens=torch.tensor([[1, 2, 3, 16]]))
    with pytest.raises(TypeError, match="integer"):
        model(pixel_values=pv, classes=["dog"], box_tokens=torch.tensor([[1.0, 2, 3, 4]]))
    with pytest.raises(ValueError, match="empty"):
        model(pixel_values=pv, classes=[" "], box_tokens=torch.tensor([[1, 2, 3, 4]]))


def test_class_features_memoised_and_invalidated(model):
    a = model.encode_class(["dog", "cat", "dog"])
    assert len(model._class_memo) >= 2
    torch.testing.assert_close(a[0], a[2])
    assert not torch.allclose(a[0], a[1])
    fresh = model.class_encoder(model.class_texts(["dog"]))
    torch.testing.assert_close(a[0], fresh[0])
    # changing the weights in place must drop the memo
    p = next(model.class_encoder.parameters())
    with torch.no_grad():
        p.mul_(1.5)
    b = model.encode_class(["dog"])
    torch.testing.assert_close(b[0], model.class_encoder(model.class_texts(["dog"]))[0])
    with torch.no_grad():
        p.div_(1.5)


def test_encoder_ids_follow_weights(model):
    i1, c1 = model.image_encoder_id, model.class_encoder_id
    assert i1 != c1 and i1 == model.image_encoder_id
    other = LocationModel(LocationModelConfig.preset("tiny"))
    assert other.image_encoder_id != i1  # different random weights


def test_sample_single_and_batched(model, image):
    s = model.sample(image, "dog", num_samples=20, generator=torch.Generator().manual_seed(1))
    assert isinstance(s, BoxSamples)
    assert s.boxes.shape == (20, 4) and s.logprobs.shape == (20,) and s.tokens.shape == (20, 4)
    assert ((s.boxes[:, 2] > s.boxes[:, 0]) & (s.boxes[:, 3] > s.boxes[:, 1])).all()
    assert (s.boxes[:, [0, 2]] <= 64).all() and (s.boxes[:, [1, 3]] <= 48).all() and (s.boxes >= 0).all()
    s2 = model.sample(image, "dog", num_samples=20, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s.tokens, s2.tokens)  # reproducible
    other = Image.fromarray(image).resize((100, 30))
    many = model.sample([image, other], ["dog", "cup"], num_samples=5)
    assert isinstance(many, list) and len(many) == 2
    assert (many[1].boxes[:, [0, 2]] <= 100).all() and (many[1].boxes[:, [1, 3]] <= 30).all()


def test_sample_logprobs_equal_score(model, image):
    region = Region((10.0, 5.0, 50.0, 40.0))
    s = model.sample(image, "dog", num_samples=30, region=region, min_size=6,
                     generator=torch.Generator().manual_seed(2))
    lp = model.score(image, "dog", s.boxes, region=region, min_size=6)
    torch.testing.assert_close(lp, s.logprobs, atol=1e-4, rtol=1e-4)
    # sampling at another temperature still reports the model's constrained log p
    s_hot = model.sample(image, "dog", num_samples=10, region=region, min_size=6, temperature=3.0, top_k=5)
    torch.testing.assert_close(model.score(image, "dog", s_hot.boxes, region=region, min_size=6),
                               s_hot.logprobs, atol=1e-4, rtol=1e-4)
    # unconstrained score equals the training forward
    raw = model.score(image, "dog", s.boxes, constrained=False)
    out = model(pixel_values=model.preprocess(image).expand(30, -1, -1, -1), classes=["dog"] * 30,
                box_tokens=s.tokens)
    torch.testing.assert_close(raw, out.box_logps, atol=1e-4, rtol=1e-4)
    assert (lp >= raw - 1e-5).all()  # renormalising over fewer tokens can only raise log p


def test_score_outside_region_is_minus_inf(model, image):
    lp = model.score(image, "dog", [[0, 0, 10, 10], [20, 10, 40, 30]], region=Region((15.0, 5.0, 60.0, 45.0)))
    assert lp[0] == float("-inf") and torch.isfinite(lp[1])


REGIONS = [
    Region((8.0, 4.0, 40.0, 30.0)),
    Region((0.5, 0.5, 1.0, 1.0), normalized=True),
    (0.0, 0.0, 0.5, 1.0),
    [30, 20, 64, 48],
    Region.parse("top right"),
    Region(np.pad(np.ones((20, 30), bool), ((10, 18), (20, 14)))),
    Region(np.pad(np.ones((20, 30), bool), ((10, 18), (20, 14))), mode="center"),
    Region(None, avoid=[[10, 10, 40, 40]]),
    Region((0.0, 0.0, 64.0, 48.0), mode="center", avoid=[[20, 10, 44, 38]]),
    "bottom left",
]


@pytest.mark.parametrize("i", range(len(REGIONS)))
def test_every_sample_satisfies_its_region(model, image, i):
    region = REGIONS[i]
    for min_size in (None, 5.0):
        s = model.sample(image, "cup", num_samples=60, region=region, min_size=min_size, temperature=2.0,
                         generator=torch.Generator().manual_seed(i))
        con = BoxConstraints(64, 48, model.config.num_bins, region, min_size)
        assert con.satisfied(s.boxes).all(), (region, min_size)
        assert torch.isfinite(s.logprobs).all()


def test_regions_per_image(model, image):
    out = model.sample([image, image], "dog", num_samples=10, region=[(0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0)])
    assert (out[0].boxes[:, 2] <= 32).all() and (out[1].boxes[:, 0] >= 32).all()
    with pytest.raises(ValueError, match="regions"):
        model.sample([image, image], "dog", region=[(0.0, 0.0, 0.5, 0.5)])


def test_bad_inputs(model, image):
    with pytest.raises(ValueError, match="outside"):
        model.sample(image, "dog", region=(100.0, 100.0, 200.0, 200.0))
    with pytest.raises(ValueError, match="no box"):
        model.sample(image, "dog", region=(10.0, 10.0, 20.0, 20.0), min_size=15)
    with pytest.raises(ValueError, match="empty"):
        model.sample(image, "", num_samples=2)
    with pytest.raises(TypeError, match="uint8"):
        model.sample(image.astype(np.float32), "dog")
    with pytest.raises(ValueError, match="shape"):
        model.sample(np.zeros((8, 8, 5), np.uint8), "dog")
    with pytest.raises(ValueError, match="at least"):
        model.sample(np.zeros((1, 1, 3), np.uint8), "dog")
    with pytest.raises(ValueError, match="classes"):
        model.sample([image, image], ["dog"])
    with pytest.raises(ValueError, match="num_samples"):
        model.sample(image, "dog", num_samples=0)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(image, "dog", temperature=0)
    with pytest.raises(ValueError, match="NaN"):
        model.score(image, "dog", [[0, 0, float("nan"), 4]])
    with pytest.raises(ValueError, match="outside"):
        model.score(image, "dog", [[0, 0, 80, 10]])
    with pytest.raises(ValueError, match="degenerate"):
        model.score(image, "dog", [[10, 0, 5, 10]])
    with pytest.raises(ValueError, match="empty"):
        model.score(image, "  ", [[0, 0, 10, 10]])


def test_save_load_round_trip(model, image, tmp_path):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = LocationModel.from_pretrained(tmp_path)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = model.sample(image, "dog", num_samples=10, generator=g1)
    b = loaded.sample(image, "dog", num_samples=10, generator=g2)
    assert torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(a.logprobs, b.logprobs)
    auto = AutoModel.from_pretrained(tmp_path)
    assert isinstance(auto, LocationModel)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), LocationModelConfig)


def test_closed_vocabulary_embedding(image, tmp_path):
    cfg = LocationModelConfig.preset("tiny", class_encoder_type="embedding", classes=["cup", "chair"],
                                     class_embed_dim=16)
    m = LocationModel(cfg).eval()
    assert m.encode_class(["cup", "chair"]).shape == (2, 16)
    with pytest.raises(ValueError, match="unknown class"):
        m.sample(image, "dog")
    s = m.sample(image, "cup", num_samples=4)
    m.save_pretrained(tmp_path)
    m2 = LocationModel.from_pretrained(tmp_path)
    torch.testing.assert_close(m2.score(image, "cup", s.boxes), s.logprobs, atol=1e-5, rtol=1e-5)


def test_several_boxes_per_image_share_the_image_prefix(model, image):
    """k boxes per image through the shared image prefix = the plain forward of each (image, box)."""
    torch.manual_seed(1)
    pv = model.preprocess([image, np.ascontiguousarray(image[::-1])])
    tokens = torch.randint(0, model.config.num_bins, (3 * 2, 4))
    classes = ["dog", "cup", "cup", "lamp", "dog", "chair"]  # one per box: row j * B + b
    model.zero_grad()
    shared = model(pixel_values=pv, classes=classes, box_tokens=tokens)
    shared.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    plain = model(pixel_values=pv.repeat(3, 1, 1, 1), classes=classes, box_tokens=tokens)
    plain.loss.backward()
    torch.testing.assert_close(shared.box_logps, plain.box_logps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.logits, plain.logits, atol=1e-5, rtol=1e-5)
    assert grads.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)
    model.zero_grad()
    # one class per image is repeated for its k boxes
    per_image = model(pixel_values=pv, classes=["dog", "cup"], box_tokens=tokens)
    again = model(pixel_values=pv.repeat(3, 1, 1, 1), classes=["dog", "cup"] * 3, box_tokens=tokens)
    torch.testing.assert_close(per_image.box_logps, again.box_logps, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        model(pixel_values=pv, classes=["dog"] * 4, box_tokens=tokens)
    with pytest.raises(ValueError, match="one per image, or one per box"):
        model(pixel_values=pv, classes=["dog"] * 3, box_tokens=tokens)


def test_shared_prefix_forward_follows_dropout():
    """In training mode the shared-prefix path applies GPT-2's dropouts (outputs vary); in eval it is exact."""
    from locinsert.modeling.sampling import shared_prefix_forward

    torch.manual_seed(0)
    cfg = LocationModelConfig.preset("tiny", decoder_config={"n_embd": 32, "n_layer": 2, "n_head": 2,
                                                             "n_positions": 64, "resid_pdrop": 0.5,
                                                             "embd_pdrop": 0.5, "attn_pdrop": 0.5})
    m = LocationModel(cfg)
    shared, tails = torch.randn(2, 5, 32), torch.randn(4, 3, 32)
    m.train()
    a, b = shared_prefix_forward(m.decoder, shared, tails), shared_prefix_forward(m.decoder, shared, tails)
    assert not torch.allclose(a, b)
    m.eval()
    out = shared_prefix_forward(m.decoder, shared, tails)
    full = m.decoder(inputs_embeds=torch.cat([shared.repeat(2, 1, 1), tails], 1)).last_hidden_state[:, 5:]
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="do not continue"):
        shared_prefix_forward(m.decoder, shared, torch.randn(3, 3, 32))


def test_class_as_bos_one_token_fewer_same_model_contract(image, tmp_path):
    """class_as_bos: the prefix is one token shorter, and training, scoring, sampling, the shared
    image prefix, region conditioning and save/load agree with each other as for the default."""
    torch.manual_seed(0)
    own = LocationModel(LocationModelConfig.preset("tiny"))
    torch.manual_seed(0)
    m = LocationModel(LocationModelConfig.preset("tiny", class_as_bos=True)).eval()
    assert m.prefix_length == own.prefix_length - 1
    pv = m.preprocess([image, image])
    feats, cls = m.encode_image(pv), m.encode_class(["dog", "cup"])
    assert m.prefix_embeddings(feats, cls).shape[1] == m.prefix_length
    # the class decides the first coordinate's distribution through the merged token
    first = m(image_features=feats, class_features=cls).logits
    assert not torch.allclose(first[0], first[1])
    region = Region((10.0, 5.0, 50.0, 40.0))
    s = m.sample(image, "dog", num_samples=20, region=region, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(m.score(image, "dog", s.boxes, region=region), s.logprobs, atol=1e-4, rtol=1e-4)
    raw = m.score(image, "dog", s.boxes, constrained=False)
    out = m(pixel_values=m.preprocess(image).expand(20, -1, -1, -1), classes=["dog"] * 20, box_tokens=s.tokens)
    torch.testing.assert_close(raw, out.box_logps, atol=1e-4, rtol=1e-4)
    # several boxes per image through the shared image prefix = the plain forward of each
    tokens = torch.randint(0, m.config.num_bins, (3 * 2, 4))
    classes = ["dog", "cup", "cup", "lamp", "dog", "chair"]
    shared = m(pixel_values=pv, classes=classes, box_tokens=tokens)
    plain = m(pixel_values=pv.repeat(3, 1, 1, 1), classes=classes, box_tokens=tokens)
    torch.testing.assert_close(shared.box_logps, plain.box_logps, atol=1e-5, rtol=1e-5)
    assert shared.logits.shape == (6, 4, m.config.num_bins)
    # a region-conditioned model still starts as the unconditioned one
    before = m.score(image, "dog", s.boxes, constrained=False)
    m.enable_region_conditioning()
    torch.testing.assert_close(m.score(image, "dog", s.boxes, constrained=False), before)
    m.save_pretrained(tmp_path)
    loaded = LocationModel.from_pretrained(tmp_path).eval()
    assert loaded.config.class_as_bos and loaded.prefix_length == m.prefix_length
    torch.testing.assert_close(loaded.score(image, "dog", s.boxes, constrained=False), before)
