"""Box maths: formats, normalisation, coordinate tokens, IoU, clipping, validity, and the bin-count measurement."""

import csv
import json
from pathlib import Path

import pytest
import torch

from locinsert import boxes as B

OPA_TEST = Path(__file__).parent / "fixtures" / "opa_labels" / "test_data_pair.csv"


def test_format_round_trips():
    b = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 1.0, 2.0]])
    torch.testing.assert_close(B.xywh_to_xyxy(B.xyxy_to_xywh(b)), b)
    torch.testing.assert_close(B.cxcywh_to_xyxy(B.xyxy_to_cxcywh(b)), b)
    assert B.xyxy_to_xywh(b)[0].tolist() == [10, 20, 40, 60]
    assert B.xyxy_to_cxcywh(b)[0].tolist() == [30, 50, 40, 60]
    n = B.normalize(b, 100, 200)
    torch.testing.assert_close(n[0], torch.tensor([0.1, 0.1, 0.5, 0.4]))
    torch.testing.assert_close(B.denormalize(n, 100, 200), b)


def test_tokens_are_bin_centres():
    assert B.quantize(torch.tensor([0.0, 0.249, 0.25, 0.999, 1.0]), 4).tolist() == [0, 0, 1, 3, 3]
    assert B.dequantize(torch.tensor([0, 3]), 4).tolist() == [0.125, 0.875]
    tok = B.boxes_to_tokens(torch.tensor([[0.0, 0.0, 100.0, 50.0]]), 100, 50, 10)
    assert tok.tolist() == [[0, 0, 9, 9]]
    back = B.tokens_to_boxes(tok, 100, 50, 10)
    assert back.tolist() == [[5.0, 2.5, 95.0, 47.5]]


def test_round_trip_error_at_most_half_a_bin():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 300
    wh = torch.rand(500, 2, generator=g) * 200 + 45  # wider than two bins even at 32 bins
    b = B.clip_boxes(torch.cat([xy, xy + wh], 1), 640, 480)
    for nb in (32, 1024):
        back = B.tokens_to_boxes(B.boxes_to_tokens(b, 640, 480, nb), 640, 480, nb)
        half = torch.tensor([640, 480, 640, 480]) / nb / 2
        assert ((back - b).abs() <= half + 1e-3).all()


def test_thin_boxes_still_give_valid_tokens():
    b = torch.tensor([[10.0, 10.0, 10.5, 30.0], [639.8, 0.0, 640.0, 480.0]])
    t = B.boxes_to_tokens(b, 640, 480, 64)
    assert ((t[:, 2] > t[:, 0]) & (t[:, 3] > t[:, 1])).all()
    assert (t >= 0).all() and (t < 64).all()


def test_iou():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    iou = B.box_iou(a, b)
    assert iou.shape == (2, 3)
    torch.testing.assert_close(iou[0], torch.tensor([50 / 150, 0.0, 1.0]))
    torch.testing.assert_close(iou[1, 2], torch.tensor(0.04))
    batched = B.box_iou(a[None].expand(3, -1, -1), b[None].expand(3, -1, -1))
    assert batched.shape == (3, 2, 3) and torch.equal(batched[1], iou)
    torch.testing.assert_close(B.elementwise_iou(a, b[:2]), torch.tensor([50 / 150, 0.0]))
    # degenerate boxes give 0, not NaN
    z = torch.zeros(1, 4)
    assert B.box_iou(z, z).item() == 0.0 and B.elementwise_iou(z, z).item() == 0.0


def test_clip_and_validity():
    b = torch.tensor([[-5.0, -5.0, 50.0, 700.0]])
    assert B.clip_boxes(b, 100, 600).tolist() == [[0, 0, 50, 600]]
    ok = B.is_valid(torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 5, 10], [0.0, 0, 10, float("nan")],
                                  [0.0, 0, 120, 10]]), 100, 100)
    assert ok.tolist() == [True, False, False, False]
    assert B.is_valid(torch.tensor([[0.0, 0, 10, 10]]), min_size=10).tolist() == [False]


def test_check_boxes_errors():
    assert B.check_boxes([1, 2, 3, 4], 10, 10).shape == (1, 4)
    with pytest.raises(ValueError, match="degenerate"):
        B.check_boxes([[5, 5, 5, 9]], 10, 10)
    with pytest.raises(ValueError, match="outside"):
        B.check_boxes([[0, 0, 11, 9]], 10, 10)
    with pytest.raises(ValueError, match="NaN"):
        B.check_boxes([[0, 0, float("inf"), 9]], 10, 10)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        B.as_boxes([[1, 2, 3]])


def _opa_test_boxes():
    """Every positive and negative box of OPA's test pair labels (box centres + object size)."""
    boxes = []
    with open(OPA_TEST) as f:
        for row in csv.DictReader(f):
            w, h = int(row["newWidth"]), int(row["newHeight"])
            for label in ("pos_label", "neg_label"):
                for cx, cy in json.loads(row[label]):
                    x, y = cx - w // 2, cy - h // 2
                    boxes.append([x, y, x + w, y + h])
    return torch.tensor(boxes, dtype=torch.float32)


def test_default_bin_count_measurement():
    """The table of docs/guides/model.md: quantisation loss over all OPA test boxes (background sizes >= 640x480)."""
    b = _opa_test_boxes()
    assert len(b) == 11396
    width = torch.clamp(b[:, 2], min=640).ceil()
    height = torch.clamp(b[:, 3], min=480).ceil()
    stats = {}
    for nb in (64, 256, 512, 1024):
        iou = B.quantization_iou(b, width, height, nb)
        stats[nb] = (1 - iou.mean().item(), iou.quantile(0.01).item(), iou.min().item())
    assert stats[1024][0] < 0.0075 and stats[1024][2] > 0.87   # 0.007 lost on average, worst 0.88
    assert stats[512][2] < 0.8 and stats[256][2] < 0.6          # fewer bins approach the 0.5 threshold
    assert stats[64][2] < 0.5
    assert stats[64][0] > stats[256][0] > stats[512][0] > stats[1024][0]
    assert B.DEFAULT_NUM_BINS == 1024


def test_hit_test_picks_the_smallest_box_under_the_point():
    from locinsert.boxes import hit_test

    boxes = [[0, 0, 100, 100], [40, 40, 60, 60], [200, 0, 220, 20], [210, 10, 230, 30]]
    assert hit_test(boxes, 50, 50) == 1            # inside the small box nested in the big one
    assert hit_test(boxes, 59, 41) == 1
    assert hit_test(boxes, 5, 5) == 0              # only the big box is there
    assert hit_test(boxes, 61, 50) == 0
    assert hit_test(boxes, 205, 5) == 2
    assert hit_test(boxes, 212, 12) == 2           # same area: the nearer centre (210, 10) vs (220, 20)
    assert hit_test(boxes, 218, 18) == 3
    assert hit_test(boxes, 150, 50) is None        # between boxes
    assert hit_test(torch.zeros(0, 4), 1, 1) is None
    with pytest.raises(ValueError, match="finite"):
        hit_test(boxes, float("nan"), 1)
