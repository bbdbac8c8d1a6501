"""The region-conditioned location model: p(box | image, class, region) (modeling/region_prefix.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert.cli.main import main as cli
from locinsert.modeling import LocationModel, LocationModelConfig
from locinsert.modeling.region_prefix import WHOLE_IMAGE, RegionEmbedding, check_rects, constraint_rects
from locinsert.modeling.constraints import BoxConstraints
from locinsert.training.datasets import BoxDataset, PairDataset, collate
from locinsert.training.random_regions import region_around, training_regions

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
BOXES = torch.tensor([[2.0, 2.0, 20.0, 20.0], [10.0, 5.0, 30.0, 25.0], [1.0, 14.0, 12.0, 31.0]])


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8"))


def _conditioned(scale: float = 0.5) -> LocationModel:
    torch.manual_seed(0)
    m = LocationModel(LocationModelConfig.preset("tiny", region_conditioning=True)).eval()
    with torch.no_grad():  # stand in for training: a region embedding that is no longer zero
        m.region_embed.net[2].weight.normal_(std=scale)
    return m


def test_enabling_changes_nothing_until_trained(model, image):
    before = model.score(image, "cup", BOXES, region="on the left")
    fresh = LocationModel(model.config).eval()
    fresh.load_state_dict(model.state_dict())
    fresh.enable_region_conditioning()
    assert fresh.config.region_conditioning and isinstance(fresh.region_embed, RegionEmbedding)
    assert torch.equal(fresh.score(image, "cup", BOXES, region="on the left"), before)
    assert fresh.enable_region_conditioning().region_embed is fresh.region_embed  # a no-op the second time


def test_the_region_reaches_the_prediction(image):
    m = _conditioned()
    left = m.score(image, "cup", BOXES, region=(0.0, 0.0, 0.7, 1.0))
    right = m.score(image, "cup", BOXES, region=(0.05, 0.0, 1.0, 1.0))
    both = torch.isfinite(left) & torch.isfinite(right)
    assert both.any() and not torch.allclose(left[both], right[both])
    # The same rectangle as a region and as an explicit forward argument gives the same log p.
    pixels = m.preprocess(image)
    tokens = m.boxes_to_tokens(BOXES[:1], 32, 32)
    out = m(pixel_values=pixels, classes=["cup"], box_tokens=tokens, regions=torch.tensor([[0.0, 0.0, 0.7, 1.0]]))
    assert torch.allclose(out.box_logps[0], left[0], atol=1e-5)


def test_shared_prefix_training_forward_matches_per_box_rows(image):
    """k boxes per image with a region each: the block layout equals k separate one-box forwards."""
    m = _conditioned()
    pixels = m.preprocess([image, image.transpose(Image.FLIP_LEFT_RIGHT)])
    tokens = m.boxes_to_tokens(torch.cat([BOXES[:2], BOXES[1:]]), 32, 32)  # k = 2 blocks of B = 2
    regions = torch.tensor([[0, 0, 0.5, 1], [0.2, 0.1, 0.9, 0.8], WHOLE_IMAGE, [0.5, 0.5, 1, 1]])
    grouped = m(pixel_values=pixels, classes=["cup", "bird", "cup", "bird"], box_tokens=tokens, regions=regions)
    for row in range(4):
        b = row % 2
        one = m(pixel_values=pixels[b:b + 1], classes=[["cup", "bird"][b]], box_tokens=tokens[row:row + 1],
                regions=regions[row:row + 1])
        assert torch.allclose(grouped.box_logps[row], one.box_logps[0], atol=1e-5)


def test_region_mass_asks_the_unconditioned_model(image):
    """region_mass is P(box in region | image, class): the whole-image prefix, whatever the region."""
    m = _conditioned()
    region = (0.0, 0.0, 0.5, 1.0)
    est = m.region_mass(image, "cup", region, num_samples=2048, generator=torch.Generator().manual_seed(0))
    n = m.config.num_bins
    grid = torch.cartesian_prod(*[torch.arange(n)] * 4)
    grid = grid[(grid[:, 2] > grid[:, 0]) & (grid[:, 3] > grid[:, 1])]  # every valid box
    boxes = m.tokens_to_boxes(grid, 32, 32)
    inside = BoxConstraints(32, 32, n, region).satisfied(boxes)
    exact = float(m.score(image, "cup", boxes)[inside].exp().sum())  # no region: the whole-image prefix
    assert abs(float(est) - exact) < 4 * est.stderr + 1e-3


def test_sampling_under_a_region_reads_the_region(image):
    m = _conditioned()
    g = torch.Generator().manual_seed(0)
    s = m.sample(image, "cup", 32, region="on the left", generator=g)
    assert BoxConstraints(32, 32, m.num_bins, "on the left").satisfied(s.boxes).all()
    # log_p of the samples is the region-conditioned model's: score() with the same region agrees
    assert torch.allclose(m.score(image, "cup", s.boxes, region="on the left"), s.log_p, atol=1e-4)


def test_bad_regions_are_named(model, image):
    pixels = model.preprocess(image)
    tokens = model.boxes_to_tokens(BOXES[:1], 32, 32)
    with pytest.raises(ValueError, match="without region conditioning"):
        model(pixel_values=pixels, classes=["cup"], box_tokens=tokens, regions=torch.tensor([WHOLE_IMAGE]))
    m = _conditioned()
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        m(pixel_values=pixels, classes=["cup"], box_tokens=tokens, regions=torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_rects([[0, 0, 2, 1]], 1)
    with pytest.raises(ValueError, match="x2 > x1"):
        check_rects([[0.5, 0, 0.5, 1]], 1)


def test_save_and_load_keep_the_region_embedding(tmp_path, image):
    m = _conditioned()
    m.save_pretrained(tmp_path / "m")
    back = LocationModel.from_pretrained(tmp_path / "m").eval()
    assert back.config.region_conditioning
    assert torch.equal(back.score(image, "cup", BOXES, region="on the left"),
                       m.score(image, "cup", BOXES, region="on the left"))


def test_constraint_rects():
    rects = constraint_rects([BoxConstraints(64, 32, 16, None), BoxConstraints(64, 32, 16, "on the right"),
                              BoxConstraints(64, 32, 16, (16, 8, 48, 24))])
    assert torch.allclose(rects, torch.tensor([WHOLE_IMAGE, (0.5, 0.0, 1.0, 1.0), (0.25, 0.25, 0.75, 0.75)]))


def test_training_regions_contain_the_box_centre():
    rng = np.random.default_rng(0)
    for _ in range(500):
        cx, cy = rng.random(2)
        x1, y1, x2, y2 = region_around(cx, cy, rng)
        assert 0 <= x1 <= cx <= x2 <= 1 and 0 <= y1 <= cy <= y2 <= 1 and x2 > x1 and y2 > y1
    regions = training_regions(BOXES, 32, 32, 1.0, seed=3, index=7)
    centres = (BOXES[:, :2] + BOXES[:, 2:]) / 2 / 32
    assert ((regions[:, :2] <= centres) & (centres <= regions[:, 2:])).all()
    assert torch.equal(regions, training_regions(BOXES, 32, 32, 1.0, seed=3, index=7))  # (seed, index) only
    assert not torch.equal(regions, training_regions(BOXES, 32, 32, 1.0, seed=3, index=8))
    assert torch.equal(training_regions(BOXES, 32, 32, 0.0, seed=3, index=7), torch.tensor([WHOLE_IMAGE] * 3))
    share = np.mean([not torch.equal(training_regions(BOXES[:1], 32, 32, 0.5, 0, i)[0], torch.tensor(WHOLE_IMAGE))
                     for i in range(400)])
    assert 0.4 < share < 0.6


def _pixels(images):
    return torch.zeros(len(images), 3, 8, 8)


def _queries():
    from locinsert.data.synthetic import splits

    return splits.opa_like(4, seed=0, num_bins=16)


@pytest.mark.parametrize("k", [1, 2])
def test_datasets_carry_one_region_per_box(k):
    queries = _queries()
    ds = BoxDataset(queries, 16, _pixels, boxes_per_image=k, region_prob=1.0, region_seed=1, hflip=True)
    batch = collate([ds[i] for i in range(3)])
    assert batch["regions"].shape == (3 * k, 4) and batch["box_tokens"].shape == (3 * k, 4)
    tokens = batch["box_tokens"].float()
    centres = (tokens[:, :2] + tokens[:, 2:] + 1) / 2 / 16  # token bins -> normalised centres
    assert ((batch["regions"][:, :2] <= centres + 1 / 16) & (centres - 1 / 16 <= batch["regions"][:, 2:])).all()
    assert "regions" not in BoxDataset(queries, 16, _pixels, boxes_per_image=k)[0]
    from locinsert.training.datasets import expand_pairs

    pairs = PairDataset(queries, expand_pairs(queries, 2), 16, _pixels, pairs_per_image=k, region_prob=1.0)
    batch = collate([pairs[i] for i in range(2)])
    assert batch["regions"].shape == (2 * k, 4) == batch["chosen_tokens"].shape
    with pytest.raises(ValueError, match="region_prob"):
        BoxDataset(queries, 16, _pixels, region_prob=1.5)


@pytest.mark.slow
def test_finetune_and_dpo_train_a_region_conditioned_model(tmp_path, tiny_model_dir):
    fast = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--save_steps", "2", "--logging_steps", "1",
            "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--synthetic_scenes", "4"]
    ft = tmp_path / "finetune"
    assert cli(["train", "finetune", "--config", str(CONFIGS / "synthetic_finetune.yaml"), "--output_dir", str(ft),
                "--model_name_or_path", tiny_model_dir, "--region_conditioning", "true", "--region_prob", "0.5",
                *fast]) == 0
    model = LocationModel.from_pretrained(ft / "final")
    assert model.config.region_conditioning
    start = LocationModel.from_pretrained(tiny_model_dir)
    assert not torch.equal(model.region_embed.net[2].weight, torch.zeros_like(model.region_embed.net[2].weight))
    assert not start.config.region_conditioning
    dpo = tmp_path / "dpo"
    assert cli(["train", "dpo", "--config", str(CONFIGS / "synthetic_dpo.yaml"), "--output_dir", str(dpo),
                "--model_name_or_path", str(ft / "final"), "--region_prob", "0.5", "--pairs_per_query", "2",
                *fast]) == 0
    summary = json.loads((dpo / "run_summary.json").read_text())
    assert summary["global_step"] == 2 and LocationModel.from_pretrained(dpo / "final").config.region_conditioning


def test_region_prob_needs_a_conditioned_model(tmp_path, tiny_model_dir):
    code = cli(["train", "finetune", "--config", str(CONFIGS / "synthetic_finetune.yaml"), "--output_dir",
                str(tmp_path / "x"), "--model_name_or_path", tiny_model_dir, "--region_prob", "0.5",
                "--max_steps", "1", "--synthetic_scenes", "2"])
    assert code == 2
