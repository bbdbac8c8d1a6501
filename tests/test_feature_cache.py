"""Encoder-feature cache: disjoint shards per rank, encoder identity, corruption detected and recomputed."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert.data import FeatureCache
from locinsert.data.feature_cache import content_key


def _images(n=10):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)) for _ in range(n)]


class Encoder:
    """A stand-in frozen encoder: (B, 2, 3) features from pixel statistics; counts the images it saw."""

    def __init__(self, offset=0.0):
        self.seen, self.offset = 0, offset

    def __call__(self, images):
        self.seen += len(images)
        a = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)) for im in images])  # (B, H, W, 3)
        return torch.stack([a.mean((1, 2)), a.amax((1, 2))], 1) + self.offset


def expected(img, offset=0.0):
    return Encoder(offset)([img])[0]


def test_two_ranks_fill_disjoint_shards_that_cover_everything(tmp_path):
    imgs, keys = _images(10), [f"img{i}" for i in range(10)]
    enc0, enc1 = Encoder(), Encoder()
    c0 = FeatureCache(tmp_path, "enc-A", enc0, shard_size=3)
    c1 = FeatureCache(tmp_path, "enc-A", enc1, shard_size=3)
    s0 = c0.fill(keys, imgs, rank=0, world_size=2, progress=False)
    s1 = c1.fill(keys, imgs, rank=1, world_size=2, progress=False)
    # chunks of 3: [0-2] [3-5] [6-8] [9]; rank 0 owns chunks 0 and 2, rank 1 chunks 1 and 3
    assert (s0["computed"], s1["computed"]) == (6, 4) and enc0.seen == 6 and enc1.seen == 4
    assert s0["shards_written"] == 2 and s1["shards_written"] == 2
    manifests = [json.loads(p.read_text()) for p in c0.dir.glob("shard-*.json")]
    sets = [set(m["keys"]) for m in manifests]
    assert sum(map(len, sets)) == 10 and set().union(*sets) == set(keys)  # disjoint and complete
    reader = FeatureCache(tmp_path, "enc-A")  # a fresh process: reads without an encoder
    assert len(reader) == 10
    for k, im in zip(keys, imgs):
        assert torch.allclose(reader.get(k), expected(im))
    assert reader.get_many(keys[:4]).shape == (4, 2, 3)
    # filling again computes nothing
    again = Encoder()
    assert FeatureCache(tmp_path, "enc-A", again, shard_size=3).fill(keys, imgs, progress=False)["computed"] == 0
    assert again.seen == 0
    assert not list(c0.dir.glob(".*tmp*"))  # no temporary files left behind


def test_another_encoder_id_never_sees_the_features(tmp_path):
    imgs, keys = _images(4), ["a", "b", "c", "d"]
    FeatureCache(tmp_path, "vit:weights-1", Encoder()).fill(keys, imgs, progress=False)
    other_enc = Encoder(offset=100.0)
    other = FeatureCache(tmp_path, "vit:weights-2", other_enc)
    assert len(other) == 0 and "a" not in other
    with pytest.raises(KeyError, match="fill"):
        other.get("a")
    assert other.fill(keys, imgs, progress=False)["computed"] == 4 and other_enc.seen == 4
    assert torch.allclose(other.get("a"), expected(imgs[0], 100.0))
    assert torch.allclose(FeatureCache(tmp_path, "vit:weights-1").get("a"), expected(imgs[0]))


def test_truncated_shard_is_detected_and_recomputed(tmp_path):
    imgs, keys = _images(6), [f"k{i}" for i in range(6)]
    FeatureCache(tmp_path, "enc", Encoder(), shard_size=3).fill(keys, imgs, progress=False)
    c = FeatureCache(tmp_path, "enc")
    victim = c.dir / c.shards[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    enc = Encoder()
    c = FeatureCache(tmp_path, "enc", enc, shard_size=3)
    assert len(c) == 3 and any("truncated" in p for p in c.invalid)
    assert c.fill(keys, imgs, progress=False)["computed"] == 3 and enc.seen == 3
    c = FeatureCache(tmp_path, "enc")
    assert len(c) == 6 and all(torch.allclose(c.get(k), expected(im)) for k, im in zip(keys, imgs))


def test_corrupt_shard_of_the_same_size_is_never_used(tmp_path):
    imgs, keys = _images(3), ["x", "y", "z"]
    FeatureCache(tmp_path, "enc", Encoder()).fill(keys, imgs, progress=False)
    c = FeatureCache(tmp_path, "enc")
    shard = c.dir / c.shards[0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the tensor data: the size and the header stay valid
    shard.write_bytes(bytes(data))
    c = FeatureCache(tmp_path, "enc")
    assert "x" in c  # the cheap check at open cannot see it ...
    with pytest.raises(ValueError, match="corrupt"):
        c.get("x")  # ... the hash check on first read does, and the shard is gone
    assert "x" not in c and not shard.exists()
    enc = Encoder()
    c = FeatureCache(tmp_path, "enc", enc)
    assert c.fill(keys, imgs, progress=False)["computed"] == 3
    assert torch.allclose(FeatureCache(tmp_path, "enc").get("z"), expected(imgs[2]))


def test_fill_checks_shards_it_relies_on(tmp_path):
    imgs, keys = _images(3), ["x", "y", "z"]
    FeatureCache(tmp_path, "enc", Encoder()).fill(keys, imgs, progress=False)
    c = FeatureCache(tmp_path, "enc")
    shard = c.dir / c.shards[0]
    data = bytearray(shard.read_bytes())
    data[-2] ^= 0x01
    shard.write_bytes(bytes(data))
    enc = Encoder()
    stats = FeatureCache(tmp_path, "enc", enc).fill(keys, imgs, progress=False)
    assert stats["computed"] == 3 and stats["cached"] == 0


def test_images_by_mapping_or_callable_dtype_and_datasets_transform(tmp_path):
    import datasets

    imgs = _images(4)
    keys = [content_key(im) for im in imgs]
    assert content_key(imgs[0].copy()) == keys[0] and len(set(keys)) == 4
    c = FeatureCache(tmp_path, "enc", Encoder(), dtype=torch.float16)
    c.fill(keys[:2], dict(zip(keys, imgs)), progress=False)
    c.fill(keys, lambda k: imgs[keys.index(k)], progress=False)
    assert len(c) == 4 and c.get(keys[3]).dtype == torch.float16
    ds = datasets.Dataset.from_dict({"key": keys, "label": [0, 1, 2, 3]}).with_transform(c.transform("key"))
    batch = ds[1:3]
    assert batch["label"] == [1, 2] and batch["image_features"].shape == (2, 2, 3)
    assert torch.allclose(batch["image_features"][0].float(), expected(imgs[1]), atol=0.5)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="encoder_id"):
        FeatureCache(tmp_path, "")
    c = FeatureCache(tmp_path, "enc")
    with pytest.raises(ValueError, match="encode_fn"):
        c.fill(["a"], _images(1))
    c = FeatureCache(tmp_path, "enc", Encoder())
    with pytest.raises(ValueError, match="rank"):
        c.fill(["a"], _images(1), rank=2, world_size=2)
    with pytest.raises(ValueError, match="unique"):
        c.fill(["a", "a"], _images(2))
    with pytest.raises(ValueError, match="entries"):
        c.fill(["a", "b"], _images(1))
    c = FeatureCache(tmp_path, "enc", lambda ims: torch.zeros(len(ims) + 1, 2))
    with pytest.raises(ValueError, match="one row per image"):
        c.fill(["a"], _images(1), progress=False)
    with pytest.raises(TypeError, match="encode_fn"):
        FeatureCache.for_model(object(), tmp_path)


def test_for_model_with_the_tiny_preset(tmp_path, model):
    imgs, keys = _images(3), ["p", "q", "r"]
    c = FeatureCache.for_model(model, tmp_path)
    assert c.encoder_id == model.image_encoder_id
    c.fill(keys, imgs, batch_size=2, progress=False)
    with torch.no_grad():
        direct = model.encode_image(model.preprocess(imgs))
    got = FeatureCache(tmp_path, model.image_encoder_id).get_many(keys)
    assert torch.allclose(got, direct, atol=1e-5)
    # the features plug into the model's forward in place of the encoder
    out = model(image_features=got, classes=["cup"] * 3, box_tokens=torch.zeros(3, 4, dtype=torch.long))
    assert torch.isfinite(out.loss)
