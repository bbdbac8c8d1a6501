"""Detection datasets drawn from the synthetic world, where context decides what is an object.

Each image is a synthetic room (:mod:`locinsert.data.synthetic`) with:

- *objects*: 1-3 class sprites at true placements (the oracle's ``dense_positives``), labelled
  with box and mask;
- *distractors*: look-alikes (the same sprites, the same appearance jitter) at implausible
  places, **unlabelled**: a cup on the floor is background here.

Appearance varies (hue, brightness, mirror), so a detector cannot tell objects from distractors
by their pixels; only where they stand says which is which. That is the setting in which Dvornik
et al. found placement to matter, and the one the augmentation experiment measures.

:func:`export_coco` writes such a dataset as COCO (masks as RLE) and stores each image's scene in
its image entry (``synthetic_scene``), which :class:`~locinsert.copypaste.placement.OraclePlacement`
reads back with :func:`scene_of_record`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image

from ..data.synthetic import CLASSES, dense_positives, is_plausible, make_scene, sprite
from ..data.synthetic.scenes import Scene, scene_rng

__all__ = ["scene_to_dict", "scene_from_dict", "scene_of_record", "WorldImage", "make_world", "export_coco"]

SCENE_KEY = "synthetic_scene"


def scene_to_dict(scene: Scene) -> dict:
    """A JSON-ready dict of a ``Scene`` (its boxes and colours)."""
    return {"size": scene.size, "horizon": scene.horizon, "wall_color": list(scene.wall_color),
            "floor_color": list(scene.floor_color), "windows": scene.windows.tolist(), "tables": scene.tables.tolist(),
            "table_tops": scene.table_tops.tolist(), "crates": scene.crates.tolist(), "vases": scene.vases.tolist(),
            "scene_id": scene.scene_id}


def scene_from_dict(d: dict) -> Scene:
    """The inverse of :func:`scene_to_dict`."""
    b = lambda k: np.asarray(d[k], dtype=np.float64).reshape(-1, 4)  # noqa: E731
    return Scene(size=int(d["size"]), horizon=float(d["horizon"]), wall_color=tuple(d["wall_color"]),
                 floor_color=tuple(d["floor_color"]), windows=b("windows"), tables=b("tables"),
                 table_tops=np.asarray(d["table_tops"], np.float64), crates=b("crates"), vases=b("vases"),
                 scene_id=d.get("scene_id", ""))


def scene_of_record(record) -> Scene:
    """The synthetic scene stored in a COCO image entry by :func:`export_coco`.

    Raises:
        ValueError: the record has no scene (oracle placement works on the synthetic world only).
    """
    raw = getattr(record, "raw", None)
    if not isinstance(raw, dict) or not isinstance(raw.get(SCENE_KEY), dict):
        raise ValueError(f"{getattr(record, 'path', record)}: oracle placement needs the synthetic scene "
                         f"('{SCENE_KEY}' in the COCO image entry); it works on the synthetic world only")
    return scene_from_dict(raw[SCENE_KEY])


@dataclass
class WorldImage:
    """One drawn image: the scene, the picture, labelled objects (class, xyxy box, mask) and the
    unlabelled distractors (class, xyxy box)."""

    scene: Scene
    image: np.ndarray
    objects: list = field(default_factory=list)
    distractors: list = field(default_factory=list)


def _jittered_sprite(cls: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    rgba = np.asarray(sprite(cls, (w, h))).copy()
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    dh, gain = float(rng.uniform(-0.12, 0.12)), float(rng.uniform(0.7, 1.25))
    hsv = rgb_to_hsv(rgb)
    hsv[..., 0] = (hsv[..., 0] + dh) % 1.0
    hsv[..., 2] = np.clip(hsv[..., 2] * gain, 0, 1)
    rgba[..., :3] = (hsv_to_rgb(hsv) * 255 + 0.5).astype(np.uint8)
    return rgba[:, ::-1] if rng.random() < 0.5 else rgba


def _paste(img: np.ndarray, rgba: np.ndarray, box) -> np.ndarray:
    x1, y1 = int(box[0]), int(box[1])
    h, w = rgba.shape[:2]
    a = rgba[..., 3:].astype(np.float32) / 255.0
    region = img[y1:y1 + h, x1:x1 + w].astype(np.float32)
    img[y1:y1 + h, x1:x1 + w] = (a * rgba[..., :3] + (1 - a) * region + 0.5).astype(np.uint8)
    mask = np.zeros(img.shape[:2], bool)
    mask[y1:y1 + h, x1:x1 + w] = rgba[..., 3] > 127
    return mask


def _free(box, taken, gap: float = 1.0) -> bool:
    return all(box[2] + gap <= t[0] or t[2] + gap <= box[0] or box[3] + gap <= t[1] or t[3] + gap <= box[1]
               for t in taken)


def _draw_image(scene: Scene, rng: np.random.Generator, objects: tuple[int, int], distractors: tuple[int, int]) -> WorldImage:
    img = scene.render().copy()
    S = scene.size
    taken = [tuple(b) for b in np.concatenate([scene.crates, scene.vases])]
    out = WorldImage(scene, img)
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        for _try in range(8):
            cls = CLASSES[int(rng.integers(len(CLASSES)))]
            cand = dense_positives(scene, cls).numpy()
            cand = [c for c in cand if _free(c, taken)]
            if cand:
                box = tuple(int(round(v)) for v in cand[int(rng.integers(len(cand)))])
                mask = _paste(img, _jittered_sprite(cls, box[2] - box[0], box[3] - box[1], rng), box)
                if mask.any():
                    out.objects.append((cls, box, mask))
                    taken.append(box)
                break
    for _ in range(int(rng.integers(distractors[0], distractors[1] + 1))):
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        cand = dense_positives(scene, cls).numpy()
        if not len(cand):
            continue
        shape = cand[int(rng.integers(len(cand)))]
        w, h = int(round(shape[2] - shape[0])), int(round(shape[3] - shape[1]))
        for _try in range(30):  # the same size, somewhere it cannot be
            x1, y1 = int(rng.integers(0, S - w + 1)), int(rng.integers(0, S - h + 1))
            box = (x1, y1, x1 + w, y1 + h)
            if _free(box, taken) and not bool(is_plausible(scene, cls, [box])[0]):
                _paste(img, _jittered_sprite(cls, w, h, rng), box)
                out.distractors.append((cls, box))
                taken.append(box)
                break
    return out


def make_world(n: int, seed: int = 0, size: int = 64, stream: str = "augment", objects: tuple[int, int] = (1, 3),
               distractors: tuple[int, int] = (1, 2)) -> list[WorldImage]:
    """``n`` images (see the module docstring), deterministic from ``(seed, stream)``."""
    rng = scene_rng(seed, stream)
    return [_draw_image(make_scene(rng, size=size, scene_id=f"{stream}-{seed}-{i:06d}"), rng, objects, distractors)
            for i in range(n)]


def coco_dict(world: list[WorldImage], file_names: list[str] | None = None) -> dict:
    """The COCO dict of ``world`` (boxes, RLE masks, each image's scene)."""
    from .formats import encode_mask

    images, anns = [], []
    for i, w in enumerate(world):
        name = file_names[i] if file_names else f"{i:06d}.png"
        images.append({"id": i + 1, "file_name": name, "width": w.scene.size, "height": w.scene.size,
                       SCENE_KEY: scene_to_dict(w.scene)})
        for cls, box, mask in w.objects:
            ys, xs = np.nonzero(mask)
            x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": CLASSES.index(cls) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(mask.sum()), "iscrowd": 0,
                         "segmentation": encode_mask(mask)})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}


def export_coco(world: list[WorldImage], out: str | os.PathLike) -> str:
    """Write ``world`` as ``out/images/*.png`` + ``out/annotations.json``; returns the JSON path."""
    from ..io import save_image_atomic, write_json_atomic

    out = os.fspath(out)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    names = [f"{i:06d}.png" for i in range(len(world))]
    for w, name in zip(world, names):
        save_image_atomic(Image.fromarray(w.image), os.path.join(out, "images", name))
    path = os.path.join(out, "annotations.json")
    write_json_atomic(path, coco_dict(world, names))
    return path
