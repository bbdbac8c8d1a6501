"""The encoder stage: a dense-label image tower, its checkpoint, and a location model that starts from it."""

import json
import os

import pytest
import torch

from locinsert.data.synthetic.labels import PARTS
from locinsert.modeling import LocationModel, LocationModelConfig
from locinsert.modeling.dense_encoder import (TIMM_WEIGHTS, DenseEncoderConfig, DenseEncoderModel,
                                              image_encoder_overrides)
from locinsert.training.checkpoints import pickled_files
from locinsert.training.stages import run_stage
from locinsert.training.synthetic import synthetic_stage_args


def _tiny_encoder():
    torch.manual_seed(0)
    return DenseEncoderModel(DenseEncoderConfig.from_location_config(LocationModelConfig.preset("tiny"), PARTS))


def test_head_maps_each_patch_token_to_its_own_pixels():
    m = _tiny_encoder().eval()
    p, c, g = m.patch_size, len(PARTS), m.grid
    assert (p, g) == (8, 4)  # tiny: 32 px, patch 8
    with torch.no_grad():  # pixel (py, px) of every patch gets label (py * p + px) % C; patch tokens ignored
        m.head.weight.zero_()
        bias = torch.zeros(p, p, c)
        for py in range(p):
            for px in range(p):
                bias[py, px, (py * p + px) % c] = 1.0
        m.head.bias.copy_(bias.flatten())
    pred = m(torch.randn(2, 3, 32, 32)).logits.argmax(1)
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    assert torch.equal(pred, ((y % p) * p + (x % p)).remainder(c).expand(2, -1, -1))


def test_labels_are_checked_and_the_loss_learns():
    m = _tiny_encoder().train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, len(PARTS), (4, 32, 32))
    with pytest.raises(ValueError, match="labels must have shape"):
        m(x, labels=y[:, :16])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(30):  # one batch, memorised: the loss must fall well below chance (ln 9 = 2.2)
        loss = m(x, labels=y).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first


def test_balanced_label_weights_lift_rare_parts_and_keep_the_loss_scale():
    from locinsert.data.synthetic.labels import label_map
    from locinsert.data.synthetic.scenes import make_scenes
    from locinsert.training.encoder import balanced_label_weights

    scenes = make_scenes(40, seed=3)
    counts = sum(torch.bincount(torch.from_numpy(label_map(s)).flatten(), minlength=len(PARTS)) for s in scenes)
    share = counts.double() / counts.sum()
    w = torch.tensor(balanced_label_weights(scenes, 0.5), dtype=torch.float64)
    assert len(w) == len(PARTS) and abs(float((w * share).sum()) - 1) < 1e-6  # pixel-weighted mean 1
    rare, common = PARTS.index("vase"), PARTS.index("floor")
    assert w[rare] > 3 * w[common]
    present = share > 0
    # (1 / share) ** 0.5, up to the common scale
    ratio = w[present] * share[present].sqrt()
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-6)
    assert torch.allclose(torch.tensor(balanced_label_weights(scenes, 0.0), dtype=torch.float64),
                          torch.ones(len(PARTS), dtype=torch.float64))


def test_label_weights_weight_the_pixel_loss_and_are_checked():
    m = _tiny_encoder().eval()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, len(PARTS), (2, 32, 32))
    y[0] = 0  # mostly one label, so weighting changes the mean
    plain = m(x, labels=y).loss
    m.config.label_weights = [5.0] + [1.0] * (len(PARTS) - 1)
    logits = m(x).logits
    expect = torch.nn.functional.cross_entropy(logits, y, weight=torch.tensor(m.config.label_weights))
    weighted = m(x, labels=y).loss
    assert torch.allclose(weighted, expect) and not torch.allclose(weighted, plain)
    with pytest.raises(ValueError, match="label_weights must be"):
        DenseEncoderConfig(label_names=list(PARTS), label_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="label_weights must be"):
        DenseEncoderConfig(label_names=list(PARTS), label_weights=[-1.0] * len(PARTS))


def test_label_balance_is_checked():
    from locinsert.training.config import DataArguments

    for bad in (-0.5, 3.0, float("nan")):
        with pytest.raises(ValueError, match="label_balance"):
            DataArguments(label_balance=bad)


def test_saved_tower_loads_frozen_into_a_location_model(tmp_path):
    m = _tiny_encoder()
    m.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", TIMM_WEIGHTS} <= set(os.listdir(tmp_path))
    assert torch.equal(DenseEncoderModel.from_pretrained(tmp_path).head.weight, m.head.weight)

    cfg = LocationModelConfig.preset("tiny")
    overrides = image_encoder_overrides(tmp_path, cfg)
    assert overrides["freeze_image_encoder"] is True
    loc = LocationModel(LocationModelConfig.preset("tiny", **overrides))
    mine, saved = loc.image_encoder.model.state_dict(), m.image_encoder.model.state_dict()
    assert mine.keys() == saved.keys() and all(torch.equal(mine[k], saved[k]) for k in saved)
    assert not any(p.requires_grad for p in loc.image_encoder.parameters())
    assert loc.config.image_pretrained is False  # the weights now live in the location model's checkpoint

    with pytest.raises(ValueError, match="image_encoder_kwargs"):
        image_encoder_overrides(tmp_path, LocationModelConfig.preset("synthetic"))
    with pytest.raises(FileNotFoundError, match="encoder stage"):
        image_encoder_overrides(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "locinsert"}))
    with pytest.raises(ValueError, match="not an image-encoder checkpoint"):
        image_encoder_overrides(tmp_path / "other")


def _stage(stage, out, **kw):
    fields = dict(preset="tiny", synthetic_scenes=16, per_device_train_batch_size=4, disable_tqdm=True,
                  logging_steps=1)
    fields.update(kw)
    return synthetic_stage_args(stage, str(out), budget="quick", **fields)


@pytest.mark.slow
def test_encoder_stage_trains_resumes_and_feeds_pretraining(tmp_path):
    enc = run_stage("encoder", *_stage("encoder", tmp_path, max_steps=2, save_steps=1, label_balance=0.5))
    assert enc.stage == "encoder" and enc.global_step == 2 and enc.num_examples == 16
    weights = DenseEncoderModel.from_pretrained(enc.model_path).config.label_weights  # saved with the model
    assert weights is not None and len(weights) == len(PARTS) and max(weights) > 2 * min(weights)
    final = os.path.join(str(tmp_path), "encoder", "final")
    assert enc.model_path.endswith(os.path.join("encoder", "final")) and os.path.isfile(
        os.path.join(final, TIMM_WEIGHTS))
    for root, _, _ in os.walk(str(tmp_path / "encoder")):
        assert not pickled_files(root)
    # started again with more steps: continues from its last complete checkpoint
    more = run_stage("encoder", *_stage("encoder", tmp_path, max_steps=3, save_steps=1))
    assert more.resumed_from is not None and more.resumed_from.endswith("checkpoint-2") and more.global_step == 3

    pre = run_stage("pretrain", *_stage("pretrain", tmp_path, max_steps=2))
    loc = LocationModel.from_pretrained(pre.model_path)
    saved = DenseEncoderModel.from_pretrained(final).image_encoder.model.state_dict()
    mine = loc.image_encoder.model.state_dict()
    assert loc.config.freeze_image_encoder and all(torch.equal(mine[k], saved[k]) for k in saved)

    with pytest.raises(ValueError, match="synthetic"):
        run_stage("encoder", *_stage("encoder", tmp_path / "x", max_steps=1, dataset="/no/such/pipe"))
