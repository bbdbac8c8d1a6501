"""Placement heatmaps: exact maps from given boxes, the model's map under a region, the overlay, the CLI."""

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert.modeling.heatmap import boxes_heatmap, default_bandwidth, heatmap_overlay


def test_centre_map_is_a_boundary_corrected_gaussian_per_box():
    h = boxes_heatmap([[10, 20, 30, 40]], 64, 48, bandwidth=3.0)
    assert h.shape == (48, 64) and h.dtype == torch.float32
    assert abs(float(h.sum()) - 1) < 1e-6
    y, x = np.unravel_index(int(h.argmax()), h.shape)
    assert (x, y) in {(19, 29), (20, 29), (19, 30), (20, 30)}              # the box centre (20, 30)
    # Separable and symmetric around the centre: the column sums are the 1-D kernel itself.
    cols = h.sum(0)
    assert torch.allclose(cols[19 - 5], cols[20 + 5], atol=1e-7)
    # A centre at the border keeps all its mass inside the image (renormalised kernel).
    edge = boxes_heatmap([[0, 0, 2, 2]], 64, 48, bandwidth=8.0)
    assert abs(float(edge.sum()) - 1) < 1e-6 and edge[0, 0] == edge.max()


def test_centre_map_weights_are_the_mass_of_each_box():
    boxes = [[0, 0, 10, 10], [50, 30, 60, 40]]
    h = boxes_heatmap(boxes, 64, 48, bandwidth=1.0, weights=[3, 1])
    assert abs(float(h[:, :32].sum()) - 0.75) < 1e-4 and abs(float(h[:, 32:].sum()) - 0.25) < 1e-4
    even = boxes_heatmap(boxes, 64, 48, bandwidth=1.0)
    assert abs(float(even[:, :32].sum()) - 0.5) < 1e-4


def test_cover_map_is_the_share_of_boxes_covering_each_pixel():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 6.0]])
    h = boxes_heatmap(boxes, 8, 8, kind="cover")
    expected = torch.zeros(8, 8)
    expected[0:4, 0:4] += 1
    expected[2:6, 2:6] += 1
    assert torch.allclose(h, expected / expected.sum())
    blurred = boxes_heatmap(boxes, 8, 8, kind="cover", bandwidth=1.0)
    assert abs(float(blurred.sum()) - 1) < 1e-6 and blurred[7, 7] > 0 and h[7, 7] == 0
    thin = boxes_heatmap([[3.2, 1.0, 3.4, 7.0]], 8, 8, kind="cover")   # thinner than a pixel
    assert float(thin[:, 3].sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="area"), "kind must be one of"),
    (dict(bandwidth=0), "bandwidth"),
    (dict(weights=[1, 2, 3]), "weights"),
    (dict(weights=[-1]), "weights"),
])
def test_boxes_heatmap_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        boxes_heatmap([[1, 1, 5, 5]], 8, 8, **kwargs)


def test_boxes_heatmap_rejects_bad_sizes_and_no_boxes():
    with pytest.raises(ValueError, match="positive integers"):
        boxes_heatmap([[1, 1, 5, 5]], 0, 8)
    with pytest.raises(ValueError, match="no boxes"):
        boxes_heatmap(torch.zeros(0, 4), 8, 8)


def test_default_bandwidth_is_six_percent_but_at_least_a_bin():
    assert default_bandwidth(200, 100) == pytest.approx(6.0)
    assert default_bandwidth(64, 64, num_bins=8) == pytest.approx(8.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from locinsert import LocationModel, LocationModelConfig

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("heat") / "ckpt"
    LocationModel(LocationModelConfig.preset("tiny")).save_pretrained(folder)
    return LocationModel.from_pretrained(folder)


def test_model_heatmap_follows_the_samples_and_the_region(tiny):
    image = np.random.RandomState(0).randint(0, 255, (48, 64, 3), dtype=np.uint8)
    g = torch.Generator().manual_seed(0)
    h = tiny.heatmap(image, "cup", region="top left", num_samples=64, generator=g, bandwidth=0.5)
    assert h.shape == (48, 64) and abs(float(h.sum()) - 1) < 1e-5
    # Every sampled centre lies in the top-left quarter [0, 32] x [0, 24] (its edges included).
    assert float(h[:25, :33].sum()) > 0.99 and float(h[:, 34:].sum()) < 1e-6
    # The same seed gives the same samples, so the map is exactly their smoothed centres.
    s = tiny.sample(image, "cup", num_samples=64, region="top left", generator=torch.Generator().manual_seed(0))
    assert torch.allclose(h, boxes_heatmap(s.boxes, 64, 48, bandwidth=0.5))
    with pytest.raises(ValueError, match="num_samples"):
        tiny.heatmap(image, "cup", num_samples=0)


def test_overlay_colours_only_where_there_is_mass():
    image = np.full((20, 30, 3), 100, np.uint8)
    heat = torch.zeros(20, 30)
    heat[5:10, 5:10] = 1.0
    out = np.asarray(heatmap_overlay(image, heat / heat.sum()))
    assert out.shape == (20, 30, 3)
    assert np.array_equal(out[15:, 15:], image[15:, 15:]) and not np.array_equal(out[5:10, 5:10], image[5:10, 5:10])
    with pytest.raises(ValueError, match="shape"):
        heatmap_overlay(image, torch.zeros(10, 10))
    with pytest.raises(ValueError, match="non-negative"):
        heatmap_overlay(image, -torch.ones(20, 30))


def test_cli_propose_writes_a_heatmap(tmp_path, capsys):
    from locinsert.cli.main import main

    path = tmp_path / "room.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 200, (48, 64, 3), dtype=np.uint8)).save(path)
    heat = tmp_path / "maps" / "cup_heat.png"
    assert main(["propose", str(path), "--object", "cup", "--where", "right", "-n", "3", "--model", "tiny",
                 "--out", str(tmp_path / "props"), "--heatmap", str(heat), "--heatmap-samples", "32"]) == 0
    assert "heatmap (32 samples)" in capsys.readouterr().out
    drawn = np.asarray(Image.open(heat).convert("RGB")).astype(int)
    original = np.asarray(Image.open(path).convert("RGB")).astype(int)
    changed = np.abs(drawn - original).sum(-1) > 0
    assert drawn.shape == original.shape and changed[:, 32:].sum() > changed[:, :32].sum()
    assert main(["propose", str(path), "--object", "cup", "--model", "tiny", "--out", str(tmp_path / "p2"),
                 "--heatmap", str(heat), "--heatmap-samples", "0"]) == 2


def test_docs_heatmap_snippet_runs(tmp_path, monkeypatch, capsys):
    from helpers_docs import snippet

    code = snippet("guides/app.md", "heatmap")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/guides/app.md heatmap", "exec"), {})
    assert "torch.Size([96, 128]) 1.0" in capsys.readouterr().out
    assert Image.open(tmp_path / "cup_heat.png").size == (128, 96)
