"""A small CenterNet (Zhou et al., "Objects as Points", 2019) and COCO AP, for the augmentation experiment.

Heat map per class, box size and centre offset at stride 4, trained from scratch with the
focal loss; AP from pycocotools' ``COCOeval``. Small enough to train in seconds on one CPU
thread on 64 px images (:mod:`locinsert.copypaste.experiment`).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.synthetic import CLASSES

__all__ = ["TinyCenterNet", "DetectionSample", "train_detector", "detect", "coco_ap", "STRIDE"]

STRIDE = 4


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyCenterNet(nn.Module):
    """A small CenterNet: heat map per class, box size and centre offset at stride 4.

    The stride-8 branch with dilated convolutions gives a receptive field wider than a 64 px
    scene, so each cell can see the table under a cup or the window around a bird.
    """

    def __init__(self, num_classes: int, width: int = 24):
        super().__init__()
        c = width
        self.s2 = nn.Sequential(_block(3, c, 2), _block(c, c))
        self.s4 = nn.Sequential(_block(c, 2 * c, 2), _block(2 * c, 2 * c))
        self.s8 = nn.Sequential(_block(2 * c, 2 * c, 2), _block(2 * c, 2 * c, dilation=2),
                                _block(2 * c, 2 * c, dilation=3))
        self.fuse = _block(4 * c, 2 * c)
        self.heat = nn.Conv2d(2 * c, num_classes, 1)
        self.size = nn.Conv2d(2 * c, 2, 1)
        self.offset = nn.Conv2d(2 * c, 2, 1)
        nn.init.constant_(self.heat.bias, -2.19)  # prior 0.1, as CenterNet

    def forward(self, x: torch.Tensor):
        """(B, 3, H, W) in [0, 1] -> heat-map logits (B, C, H/4, W/4), sizes and offsets (B, 2, H/4, W/4)."""
        f4 = self.s4(self.s2(x))
        f8 = self.s8(f4)
        f = self.fuse(torch.cat([f4, F.interpolate(f8, size=f4.shape[-2:], mode="nearest")], 1))
        return self.heat(f), self.size(f), self.offset(f)


def _targets(boxes_list, classes_list, num_classes: int, out: int):
    B = len(boxes_list)
    heat = torch.zeros(B, num_classes, out, out)
    size = torch.zeros(B, 2, out, out)
    offset = torch.zeros(B, 2, out, out)
    mask = torch.zeros(B, out, out)
    ys, xs = torch.meshgrid(torch.arange(out, dtype=torch.float32), torch.arange(out, dtype=torch.float32), indexing="ij")
    for i, (boxes, classes) in enumerate(zip(boxes_list, classes_list)):
        for (x1, y1, x2, y2), c in zip(boxes, classes):
            cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
            w, h = (x2 - x1) / STRIDE, (y2 - y1) / STRIDE
            ix, iy = min(int(cx), out - 1), min(int(cy), out - 1)
            sigma = max(0.5, min(w, h) / 3)
            g = torch.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma ** 2))
            heat[i, c] = torch.maximum(heat[i, c], g)
            size[i, :, iy, ix] = torch.tensor([w, h])
            offset[i, :, iy, ix] = torch.tensor([cx - ix, cy - iy])
            mask[i, iy, ix] = 1
    return heat, size, offset, mask


def _focal(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    p = pred.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p ** 2 * (1 - gt) ** 4 * (1 - pos)).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1)


@dataclass
class DetectionSample:
    """One training image: (H, W, 3) uint8, xyxy boxes and class indices (of ``CLASSES``)."""

    image: np.ndarray
    boxes: list
    classes: list


def train_detector(samples: list, steps: int, seed: int, batch_size: int = 32, lr: float = 2e-3,
                   width: int = 24) -> TinyCenterNet:
    """Train a :class:`TinyCenterNet` on ``samples`` (image, xyxy boxes, class indices) with flips."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyCenterNet(len(CLASSES), width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float() / 255.0
    S = images.shape[-1]
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(samples), (batch_size,), generator=g)
        flip = torch.rand(batch_size, generator=g) < 0.5
        x = images[idx].clone()
        x[flip] = x[flip].flip(-1)
        boxes, classes = [], []
        for j, i in enumerate(idx.tolist()):
            b = np.asarray(samples[i].boxes, np.float64).reshape(-1, 4)
            if flip[j]:
                b = np.stack([S - b[:, 2], b[:, 1], S - b[:, 0], b[:, 3]], 1)
            boxes.append(b.tolist())
            classes.append(samples[i].classes)
        heat, size, offset, mask = _targets(boxes, classes, len(CLASSES), S // STRIDE)
        ph, ps, po = model(x)
        m = mask[:, None]
        n = mask.sum().clamp(min=1)
        loss = _focal(ph, heat) + 0.1 * (F.l1_loss(ps * m, size * m, reduction="sum") / n) \
            + (F.l1_loss(po * m, offset * m, reduction="sum") / n)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def detect(model: TinyCenterNet, images: np.ndarray, top: int = 30, batch: int = 64) -> list[list]:
    """Detections per image: lists of (xyxy box, class index, score), peaks of the heat map."""
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s:s + batch]).permute(0, 3, 1, 2).float() / 255.0
        heat, size, offset = model(x)
        heat = heat.sigmoid()
        peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
        B, C, H, W = peaks.shape
        scores, idx = peaks.reshape(B, -1).topk(top)
        for b in range(B):
            dets = []
            for sc, k in zip(scores[b].tolist(), idx[b].tolist()):
                c, rem = divmod(k, H * W)
                iy, ix = divmod(rem, W)
                cx, cy = (ix + offset[b, 0, iy, ix].item()) * STRIDE, (iy + offset[b, 1, iy, ix].item()) * STRIDE
                w, h = size[b, 0, iy, ix].item() * STRIDE, size[b, 1, iy, ix].item() * STRIDE
                dets.append(((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), c, sc))
            out.append(dets)
    return out


def coco_ap(gt: dict, detections: list[list]) -> dict:
    """mAP@[.5:.95], AP50 and AP75 of ``detections`` (one list per image of ``gt``) with COCOeval."""
    from pycocotools.cocoeval import COCOeval

    from .formats import _coco_index

    coco_gt = _coco_index(gt)
    res = [{"image_id": im["id"], "category_id": c + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
           for im, dets in zip(gt["images"], detections) for b, c, s in dets]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(res) if res else None
        if coco_dt is None:
            return {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"mAP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2])}
