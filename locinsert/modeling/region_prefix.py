"""The region prefix of a region-conditioned ``LocationModel``: p(box | image, class, region).

A positional prompt ("a chair on the right") restricts the box to a region. Restricting an
unconditioned model's samples to the region (``constraints.py`` + the SMC sampler) is exact for that
model, but the model was never asked to be good *inside* a region: where its favourite places lie
elsewhere, its best in-region box is often a poor one. A region-conditioned model is told the region
and trained on boxes whose centre lies in it, so its in-region distribution is learned directly.

The region enters the prefix as an embedding of its normalised rectangle added to the class token
(to the class-carrying BOS token of a ``class_as_bos`` model).
That keeps every token's position (a model pretrained without regions keeps what it learned), and
because the embedding's last layer starts at zero, adding it to a trained model changes nothing until
training on regions begins. "No region" is the whole image, ``WHOLE_IMAGE``: the model then is the
plain p(box | image, class) that ``region_mass`` and the fit verdict read.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

#: The normalised rectangle that means "anywhere": the unconditioned model.
WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)


def rect_features(rects: torch.Tensor) -> torch.Tensor:
    """(N, 4) normalised xyxy rectangles -> (N, 8): corners, centre and size, scaled to [-1, 1]."""
    x1, y1, x2, y2 = rects.unbind(-1)
    feats = torch.stack([x1, y1, x2, y2, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)
    return feats * 2 - 1


class RegionEmbedding(nn.Module):
    """Normalised region rectangles (N, 4) -> embeddings (N, D) added to the class token.

    A two-layer MLP on :func:`rect_features`; its output layer is zero at initialisation, so a
    model that gains this module computes exactly what it computed before.
    """

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small random first layer, zero output layer (a no-op embedding until trained)."""
        nn.init.normal_(self.net[0].weight, std=0.5)
        nn.init.zeros_(self.net[0].bias)
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, rects: torch.Tensor) -> torch.Tensor:
        return self.net(rect_features(rects))


def whole_image(rows: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(rows, 4) copies of :data:`WHOLE_IMAGE`."""
    return torch.tensor(WHOLE_IMAGE, device=device, dtype=dtype).expand(rows, 4)


def check_rects(rects, rows: int, name: str = "regions") -> torch.Tensor:
    """``rects`` as a float (rows, 4) tensor of normalised xyxy rectangles; a clear error otherwise."""
    t = torch.as_tensor(rects, dtype=torch.float32)
    if t.ndim != 2 or t.shape[1] != 4:
        raise ValueError(f"{name} must be (N, 4) normalised xyxy rectangles, got shape {tuple(t.shape)}")
    if t.shape[0] != rows:
        raise ValueError(f"{name}: {t.shape[0]} rectangles for {rows} rows")
    if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"{name} must lie in [0, 1] (fractions of the image)")
    if ((t[:, 2] <= t[:, 0]) | (t[:, 3] <= t[:, 1])).any():
        raise ValueError(f"{name} must have x2 > x1 and y2 > y1")
    return t


def constraint_rects(constraints: Sequence) -> torch.Tensor:
    """Per image, the normalised bounding rectangle of its region (``BoxConstraints``); whole image if none.

    A mask region is conditioned on by its bounding rectangle; the masks still enforce its shape.
    """
    rows = []
    for c in constraints:
        r = c.resolved
        if r is None or (r.rect is None and r.mask is None):
            rows.append(WHOLE_IMAGE)
            continue
        x1, y1, x2, y2 = r.bounds()
        rows.append((max(0.0, x1 / c.width), max(0.0, y1 / c.height), min(1.0, x2 / c.width),
                     min(1.0, y2 / c.height)))
    return torch.tensor(rows, dtype=torch.float32)
