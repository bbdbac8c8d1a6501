"""Horizontal flips of an image together with its boxes.

A mirrored scene is as plausible as the original (a cup on a table stays on the table), so flips
are a label-preserving augmentation. A box mirrors as ``x1' = W - x2``, ``x2' = W - x1``. Vertical
flips are not offered: they break gravity, which is what placement is about.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from PIL import Image, ImageOps

from ..boxes import as_boxes
from ..images import ImageInput, load_image
from .query import PlacementQuery


def hflip_boxes(boxes, width: float) -> torch.Tensor:
    """Mirror xyxy boxes in an image ``width`` pixels wide; (N, 4) in, (N, 4) out."""
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    b = as_boxes(boxes)
    return torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], -1)


def hflip(image: ImageInput, boxes=None) -> tuple[Image.Image, torch.Tensor | None]:
    """Mirror an image (PIL, path or uint8 array) and its xyxy pixel boxes; returns (image, boxes)."""
    img = load_image(image)
    flipped = ImageOps.mirror(img)
    return flipped, (hflip_boxes(boxes, img.width) if boxes is not None else None)


def random_hflip(image: ImageInput, boxes=None, p: float = 0.5, generator: torch.Generator | None = None
                 ) -> tuple[Image.Image, torch.Tensor | None, bool]:
    """Flip with probability ``p``; returns (image, boxes, flipped)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if float(torch.rand((), generator=generator)) < p:
        return (*hflip(image, boxes), True)
    return load_image(image), (as_boxes(boxes) if boxes is not None else None), False


def hflip_query(query: PlacementQuery) -> PlacementQuery:
    """The mirrored query: positives and negatives mirrored, the image mirrored lazily."""
    width, height = query.size  # from the labels when known, so no image is decoded here
    source = query

    def mirrored_image():
        return ImageOps.mirror(source.image)

    meta = {**query.meta, "hflip": True}
    if hasattr(meta.get("scene"), "hflip"):  # synthetic world: the oracle must judge the mirrored room
        meta["scene"] = meta["scene"].hflip()
    return replace(query, positives=hflip_boxes(query.positives, width) if len(query.positives) else query.positives,
                   negatives=hflip_boxes(query.negatives, width) if len(query.negatives) else query.negatives,
                   image_source=mirrored_image, width=width, height=height,
                   query_id=f"{query.query_id}:hflip", meta=meta, _image=None)
