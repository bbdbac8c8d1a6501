"""Per-pixel truth of a synthetic scene: part labels and the masks of the things in it.

Drawn with the renderer's own geometry (:func:`.scenes.paint`), so a label map agrees with the
rendered image pixel for pixel. Two uses: a dense, free objective for pretraining an image encoder
(every pixel's kind), and the exact masks of existing objects (windows, tables, crates, vases) for
training and measuring text-guided segmentation and removal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenes import paint
from .scenes import Scene

# Part labels in painting order; a label's id is its index.
PARTS = ("wall", "floor", "window_frame", "glass", "crate_edge", "crate", "table_leg", "table_top", "vase")
PART_ID = {p: i for i, p in enumerate(PARTS)}

# Which parts make up each kind of thing (its visible pixels).
THING_PARTS = {"window": ("window_frame", "glass"), "table": ("table_leg", "table_top"),
               "crate": ("crate_edge", "crate"), "vase": ("vase",)}
THINGS = tuple(THING_PARTS)
_PART_THING = {p: k for k, parts in THING_PARTS.items() for p in parts}
_SCENE_FIELD = {"window": "windows", "table": "tables", "crate": "crates", "vase": "vases"}


def label_map(scene: Scene) -> np.ndarray:
    """(S, S) uint8 map of part ids (:data:`PARTS`): what the renderer drew at each pixel."""
    return paint(scene, np.empty((scene.size, scene.size), dtype=np.uint8), lambda part, i: PART_ID[part])


@dataclass(frozen=True)
class SceneObject:
    """One existing thing in a scene: its kind, its row in the scene's array, its box and visible mask."""

    kind: str           # "window" | "table" | "crate" | "vase"
    index: int
    box: np.ndarray     # (4,) xyxy pixels, the thing's full box
    mask: np.ndarray    # (S, S) bool, the pixels where it is visible


def instance_map(scene: Scene) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """(S, S) int16 map of instance ids (0 = wall or floor) and the (kind, index) of each id >= 1."""
    things: list[tuple[str, int]] = []
    ids: dict[tuple[str, int], int] = {}

    def value(part: str, i: int) -> int:
        kind = _PART_THING.get(part)
        if kind is None:
            return 0
        if (kind, i) not in ids:
            things.append((kind, i))
            ids[(kind, i)] = len(things)
        return ids[(kind, i)]

    out = paint(scene, np.empty((scene.size, scene.size), dtype=np.int16), value)
    return out, things


def object_masks(scene: Scene, kind: str | None = None) -> list[SceneObject]:
    """The visible mask of every existing thing (or of one ``kind``), occlusions applied."""
    if kind is not None and kind not in THING_PARTS:
        raise ValueError(f"unknown kind {kind!r}; the scene's things are {', '.join(THINGS)}")
    inst, things = instance_map(scene)
    objects = []
    for n, (k, i) in enumerate(things, start=1):
        if kind is None or k == kind:
            box = np.asarray(getattr(scene, _SCENE_FIELD[k])[i], dtype=np.float64)
            objects.append(SceneObject(kind=k, index=i, box=box, mask=inst == n))
    return objects
