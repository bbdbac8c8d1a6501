"""Encode an image and class once per edit, however many questions the edit asks the model.

Placing one object asks the location model several things about the same image and class: the
region's probability mass (the fit verdict), candidate boxes, the most likely box refined, the
alternatives' masses. Each call used to run the image encoder and the decoder's prefix again; on the
demo's 64 px model that was five encodings per request, a third of its time. Inside
``LocationModel.reusing_prefixes()`` the prefix of an (image, class, region conditioning) already
encoded is reused::

    with model.reusing_prefixes():
        mass = model.region_mass(image, "cup", "on the left")
        samples = model.sample(image, "cup", region="on the left")   # the same prefix, not encoded again

A prefix is reused only for exactly equal ``pixel_values``, class names and region conditioning, and
only inside the block (weights cannot change under it: sampling runs without gradients). The memo
belongs to the thread that opened the block, so a web app serving several requests at once keeps
them apart; nested blocks share the outer one's memo.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

_LOCAL = threading.local()


@contextmanager
def reusing_prefixes(model) -> Iterator[None]:
    """Within the block, ``model``'s prefixes are memoised (see the module docstring)."""
    memos = _memos()
    if id(model) in memos:   # nested: the outer block's memo
        yield
        return
    memos[id(model)] = []
    try:
        yield
    finally:
        del memos[id(model)]


def memoised_prefix(model, pixel_values: torch.Tensor, classes: list[str], regions: torch.Tensor | None,
                    encode: Callable[[], object]):
    """``encode()``, or the prefix it returned earlier in the block for the same inputs."""
    entries = _memos().get(id(model))
    if entries is None:
        return encode()
    for pv, cls, reg, prefix in entries:
        if cls == classes and _equal(pv, pixel_values) and _equal(reg, regions):
            return prefix
    prefix = encode()
    entries.append((pixel_values, classes, regions, prefix))
    return prefix


def _memos() -> dict:
    if not hasattr(_LOCAL, "memos"):
        _LOCAL.memos = {}
    return _LOCAL.memos


def _equal(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
