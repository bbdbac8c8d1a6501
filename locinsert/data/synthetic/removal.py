"""Removal truth in the synthetic world: a scene with an object, the same scene without it, the mask.

Two kinds of example, both exact:

- an **existing thing** (window, table, crate, vase): the image is the scene's render, the truth is
  the same ``Scene`` with that row deleted, rendered again (what was behind it: wall, floor, the
  table under a vase), and the mask is the thing's visible pixels (:func:`.labels.object_masks`);
- an **inserted object** (cup, chair, plant, painting, bird) at a true placement: the image is the
  render with the class sprite pasted in, the truth is the plain render, and the mask is the
  sprite's alpha (> 0).

These are the swapped pairs a removal inpainter is tuned on (input = with, target = without) and
the ground truth removal is measured against (PSNR / SSIM inside the mask).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .sprites import sprite
from .labels import THINGS, object_masks
from .oracle import CLASSES, dense_positives
from .scenes import Scene, make_scenes

__all__ = ["RemovalExample", "scene_without", "removal_example", "removal_examples", "insert_object",
           "SceneSegmenter"]

_FIELD = {"window": "windows", "table": "tables", "crate": "crates", "vase": "vases"}


@dataclass
class RemovalExample:
    """``image`` (with the object), ``target`` (without it), ``mask`` (H, W) bool, its ``kind`` and ``box``."""

    image: Image.Image
    target: Image.Image
    mask: np.ndarray
    kind: str
    box: tuple[float, float, float, float]
    scene: Scene


def scene_without(scene: Scene, kind: str, index: int) -> Scene:
    """The same scene with one existing thing (its row in the scene's array) deleted."""
    if kind not in _FIELD:
        raise ValueError(f"unknown kind {kind!r}; the scene's things are {', '.join(THINGS)}")
    rows = getattr(scene, _FIELD[kind])
    if not 0 <= index < len(rows):
        raise ValueError(f"the scene has {len(rows)} {_FIELD[kind]}, no index {index}")
    changes = {_FIELD[kind]: np.delete(rows, index, axis=0)}
    if kind == "table":
        changes["table_tops"] = np.delete(scene.table_tops, index)
    return dataclasses.replace(scene, **changes, _dense={})


def insert_object(image: Image.Image, cls: str, box) -> tuple[Image.Image, np.ndarray]:
    """``image`` with the sprite of ``cls`` composited into the pixel ``box``, and its exact mask."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    cut = sprite(cls, (x2 - x1, y2 - y1))
    out = image.copy()
    out.paste(cut, (x1, y1), cut)
    mask = np.zeros((image.height, image.width), bool)
    mask[y1:y2, x1:x2] = np.asarray(cut)[..., 3] > 0
    return out, mask


def removal_example(scene: Scene, rng: np.random.Generator, *, inserted: float = 0.5,
                    min_pixels: int = 12) -> RemovalExample | None:
    """One example from ``scene``: an inserted sprite with probability ``inserted``, else an existing
    thing with at least ``min_pixels`` visible pixels (None if the scene offers neither)."""
    base = Image.fromarray(scene.render())
    if rng.random() < inserted:
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        boxes = dense_positives(scene, cls, num_bins=16)
        if len(boxes):
            box = tuple(float(v) for v in boxes[int(rng.integers(len(boxes)))])
            image, mask = insert_object(base, cls, box)
            if mask.sum() >= min_pixels:
                return RemovalExample(image, base, mask, cls, box, scene)
    things = [o for o in object_masks(scene) if o.mask.sum() >= min_pixels]
    if not things:
        return None
    o = things[int(rng.integers(len(things)))]
    target = Image.fromarray(scene_without(scene, o.kind, o.index).render())
    return RemovalExample(base, target, o.mask, o.kind, tuple(float(v) for v in o.box), scene)


def removal_examples(n: int, seed: int = 0, size: int = 64, *, inserted: float = 0.5) -> list[RemovalExample]:
    """``n`` examples from fresh scenes (stream ``"removal"``), deterministic from ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    out: list[RemovalExample] = []
    batch = 0
    while len(out) < n:
        for scene in make_scenes(max(8, n - len(out)), seed=seed * 1000 + batch, size=size, stream="removal"):
            ex = removal_example(scene, rng, inserted=inserted)
            if ex is not None and len(out) < n:
                out.append(ex)
        batch += 1
    return out


class SceneSegmenter:
    """The synthetic world's exact segmenter: ``segment(image, text)`` -> the true mask of ``text``.

    ``text`` names a kind of existing thing (window, table, crate, vase; every instance of it) or
    an object pasted with :func:`insert_object` and registered in ``objects`` (class -> mask).
    Anything else gives an empty mask (nothing found). An oracle, for tests and the demo; a
    learned segmenter replaces it on real images.
    """

    def __init__(self, scene: Scene, objects: dict[str, np.ndarray] | None = None):
        self.scene, self.objects = scene, dict(objects or {})

    def segment(self, image, text: str) -> np.ndarray:
        S = self.scene.size
        if getattr(image, "size", (S, S)) != (S, S):
            raise ValueError(f"image is {image.size[0]}x{image.size[1]}, but the scene is {S}x{S}")
        name = " ".join(str(text).lower().split())
        name = name[:-1] if name.endswith("s") and name[:-1] in (*THINGS, *self.objects) else name
        if name in self.objects:
            return self.objects[name].astype(np.float32)
        out = np.zeros((S, S), np.float32)
        if name in THINGS:
            for o in object_masks(self.scene, name):
                out[o.mask] = 1.0
        return out
