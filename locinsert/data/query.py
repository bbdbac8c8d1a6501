"""The unit of placement data: one image and one category, with its labelled positive and negative boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from PIL import Image

from ..images import load_image


@dataclass
class PlacementQuery:
    """One (background image, category) group.

    ``positives`` (P, 4) and ``negatives`` (Q, 4) are float xyxy boxes in pixels of the image.
    ``image`` is loaded lazily from ``image_source`` (a path, an array, a PIL image or a callable)
    and cached, so a dataset of thousands of queries costs nothing until images are touched.
    """

    category: str
    positives: torch.Tensor
    negatives: torch.Tensor
    image_source: Any = None
    image_id: str = ""
    query_id: str = ""
    width: int | None = None
    height: int | None = None
    meta: dict = field(default_factory=dict)
    _image: Image.Image | None = field(default=None, repr=False, compare=False)

    @property
    def image(self) -> Image.Image:
        """The background image, loaded on first use; ``ValueError`` for labels-only data."""
        if self._image is None:
            if self.image_source is None:
                raise ValueError(f"query {self.query_id or self.image_id}: no image is available "
                                 "(labels-only data; pass an images root)")
            src = self.image_source() if callable(self.image_source) else self.image_source
            self._image = load_image(src, name=f"image of query {self.query_id or self.image_id}")
        return self._image

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), from the labels if known, else from the image."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        return self.image.size

    def __post_init__(self) -> None:
        self.positives = torch.as_tensor(self.positives, dtype=torch.float32).reshape(-1, 4)
        self.negatives = torch.as_tensor(self.negatives, dtype=torch.float32).reshape(-1, 4)
