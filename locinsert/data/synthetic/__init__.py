"""The synthetic placement world: procedural rooms with an exact plausibility oracle.

A test bench with a ground truth (and the demo's offline data): scenes (:mod:`.scenes`), the
vectorised oracle and the dense set of true placements (:mod:`.oracle`), PIPE/OPA-shaped splits of
``PlacementQuery`` (:mod:`.splits`), oracle precision and coverage (:mod:`.metrics`), and pictures:
scene images and labelled figures (:mod:`.drawing`), class sprites (:mod:`.sprites`), and per-pixel part labels and
object masks drawn with the same geometry (:mod:`.labels`).

>>> from locinsert.data import synthetic
>>> train = synthetic.opa_like(100, seed=0)           # list[PlacementQuery], meta["scene"] on each
>>> q = train[0]
>>> synthetic.is_plausible(q.meta["scene"], q.category, q.positives).all()
tensor(True)
"""

from .metrics import coverage, oracle_precision
from .oracle import CLASSES, RULES, ClassRule, dense_positives, is_plausible
from .drawing import plot_scenes
from .sprites import paste_sprite, sprite
from .labels import PARTS, THINGS, SceneObject, label_map, instance_map, object_masks
from .scenes import Scene, depth_scale, make_scene, make_scenes, render
from .splits import NEGATIVE_TYPES, opa_like, pipe_like, sample_negatives, sample_positives, test_split

__all__ = [
    "CLASSES", "RULES", "ClassRule", "NEGATIVE_TYPES", "Scene", "make_scene", "make_scenes", "depth_scale",
    "is_plausible", "dense_positives", "pipe_like", "opa_like", "test_split", "sample_positives",
    "sample_negatives", "oracle_precision", "coverage", "render", "sprite", "paste_sprite", "plot_scenes",
    "PARTS", "THINGS", "SceneObject", "label_map", "instance_map", "object_masks",
]
