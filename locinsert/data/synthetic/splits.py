"""Splits shaped like the real data, deterministic from a seed, as lists of ``PlacementQuery``.

- :func:`pipe_like`: one positive box per scene (PIPE pairs an object-free image with one box);
- :func:`opa_like`: per (scene, class) a few positives and several hard negatives (OPA training);
- :func:`test_split`: held-out scenes, sparse labels per (scene, class) (OPA test).

Every box lies on the bin-centre grid of ``num_bins`` bins (``None``: integer pixels), so a
``num_bins`` location model can represent each label exactly. Every positive passes the oracle,
every negative fails it. Each query keeps its :class:`Scene` in ``meta["scene"]``, and its image
is rendered lazily from it. Negatives carry their kind in ``meta["negative_types"]``:

- ``floating``: raised off its support (a cup above the table, a chair above its floor spot);
- ``scale``: the right place at the wrong size (too big or too small for its depth);
- ``overlap``: moved onto an existing object (a vase, a crate, a table, a window);
- ``off_edge``: partly off its support (over a table's edge, across the horizon, out of a window);
- ``wrong_region``: the right size on another class's support (a cup on the floor, a chair on a table).
"""

from __future__ import annotations

import numpy as np
import torch

from ..query import PlacementQuery
from .oracle import CLASSES, EDGE_TOL, FLOOR_MARGIN, RULES, check_class, plausible_np
from .scenes import Scene, make_scenes, scene_rng

NEGATIVE_TYPES: tuple[str, ...] = ("floating", "scale", "overlap", "off_edge", "wrong_region")


def snap(boxes: np.ndarray, size: int, num_bins: int | None) -> np.ndarray:
    """Move box corners to the bin centres a ``num_bins`` model emits (or to whole pixels for None).

    The same rule as ``boxes_to_tokens`` followed by ``tokens_to_boxes`` (a box is at least one bin
    wide), in numpy: this runs for every candidate label, where torch's per-call overhead dominates.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if num_bins is None:
        return np.round(b)
    # minimum/maximum and column writes instead of clip/stack: the same numbers, and this runs some
    # 400,000 times on a few dozen boxes each, where numpy's per-call overhead is the cost.
    t = np.minimum(np.maximum(np.floor(b / size * num_bins), 0), num_bins - 1)
    x2 = np.maximum(t[:, 2], np.minimum(t[:, 0] + 1, num_bins - 1))
    y2 = np.maximum(t[:, 3], np.minimum(t[:, 1] + 1, num_bins - 1))
    np.minimum(t[:, 0], x2 - 1, out=t[:, 0])
    np.minimum(t[:, 1], y2 - 1, out=t[:, 1])
    t[:, 2], t[:, 3] = x2, y2
    return (t + 0.5) * (size / num_bins)


def _from_bottom(cx, y2, w, h) -> np.ndarray:
    out = np.empty(np.broadcast(cx, y2, w, h).shape + (4,))
    out[..., 0], out[..., 1], out[..., 2], out[..., 3] = cx - w / 2, y2 - h, cx + w / 2, y2
    return out


def propose(scene: Scene, cls: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` boxes drawn around the rule of ``cls`` (most, not all, plausible; the oracle decides).

    The proposal knows where a class goes but not about the things it must avoid; callers keep the
    candidates the oracle accepts.
    """
    rule = check_class(cls)
    S, hz = float(scene.size), scene.horizon
    band = rule.height_band
    hb = (band[0] + 0.04, band[1] - 0.04)    # stay off the tolerance edges: snapping moves corners
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    asp = u(rule.aspect[0] + 0.05, rule.aspect[1] - 0.05)
    if rule.support == "table":
        if len(scene.tables) == 0:
            return np.zeros((0, 4))
        idx = rng.integers(0, len(scene.tables), n)
        t, d = scene.tables[idx], scene.table_tops[idx]
        y2 = t[:, 1] + rng.uniform(0, 1, n) * d
        h = rule.height * S * scene.scale_at(t[:, 3]) * u(*hb)
        w = h * asp
        cx = t[:, 0] + w / 2 + rng.uniform(0, 1, n) * np.maximum(t[:, 2] - t[:, 0] - w, 0)
    elif rule.support in ("floor", "wall_base"):
        lo = hz + FLOOR_MARGIN * S + 1 if rule.support == "floor" else hz + 2
        hi = S if rule.support == "floor" else hz + 0.25 * (S - hz)
        y2 = u(lo, hi)
        h = rule.height * S * scene.scale_at(y2) * u(*hb)
        w = h * asp
        cx = w / 2 + rng.uniform(0, 1, n) * np.maximum(S - w, 0)
    elif rule.support == "wall":
        h = rule.height * hz * u(*hb)
        cy = u(0.33 * hz, 0.57 * hz)
        y2 = cy + h / 2
        w = h * asp
        cx = w / 2 + rng.uniform(0, 1, n) * np.maximum(S - w, 0)
    else:  # window
        if len(scene.windows) == 0:
            return np.zeros((0, 4))
        win = scene.windows[rng.integers(0, len(scene.windows), n)]
        h = rule.height * (win[:, 3] - win[:, 1]) * u(*hb)
        w = h * asp
        cx = win[:, 0] + 1 + w / 2 + rng.uniform(0, 1, n) * np.maximum(win[:, 2] - win[:, 0] - 2 - w, 0)
        y2 = win[:, 1] + 1 + h + rng.uniform(0, 1, n) * np.maximum(win[:, 3] - win[:, 1] - 2 - h, 0)
    return _from_bottom(cx, y2, w, h)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    ar = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.clip(ar(a)[:, None] + ar(b)[None, :] - inter, 1e-9, None)


def sample_positives(scene: Scene, cls: str, k: int, rng: np.random.Generator,
                     num_bins: int | None = 32, max_iou: float = 0.7, tries: int = 96) -> np.ndarray:
    """Up to ``k`` distinct plausible boxes (pairwise IoU <= ``max_iou``), (<=k, 4) xyxy pixels."""
    chosen: list[np.ndarray] = []
    for n in (tries, 4 * tries):  # a crowded scene gets a second, larger round
        cand = snap(propose(scene, cls, n, rng), scene.size, num_bins)
        for box in cand[plausible_np(scene, cls, cand)]:
            if len(chosen) == k:
                break
            if not chosen or _iou(box[None], np.stack(chosen)).max() <= max_iou:
                chosen.append(box)
        if len(chosen) == k:
            break
    return np.stack(chosen) if chosen else np.zeros((0, 4))


def _perturb(scene: Scene, cls: str, kind: str, pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Candidate near-misses of one ``kind`` made from positives ``pos`` (n, 4); may be empty."""
    rule = RULES[cls]
    S, hz = float(scene.size), scene.horizon
    n = len(pos)
    x1, y1, x2, y2 = pos.T
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    if kind == "floating":
        if rule.support not in ("table", "floor", "wall_base"):
            return np.zeros((0, 4))
        # high enough to clear the tolerance after snapping, low enough to stay a near miss
        lift = EDGE_TOL * S + rng.uniform(0.3, 0.7, n) * h + 2
        if rule.support != "table":  # on the floor, a small lift still looks fine: lift above the horizon
            lift = np.maximum(lift, y2 - hz + rng.uniform(1, 0.4 * h + 1))
        return pos - lift[:, None] * np.array([0, 1, 0, 1])
    if kind == "scale":
        f = np.where(rng.random(n) < 0.5, rng.uniform(0.35, 0.5, n), rng.uniform(1.7, 2.2, n))
        return _from_bottom(cx, y2, w * f, h * f)
    if kind == "overlap":
        avoid = np.concatenate([getattr(scene, a) for a in rule.avoid], 0)
        if len(avoid) == 0:
            return np.zeros((0, 4))
        # prefer an object beside the positive (same height band): slide sideways into it;
        # otherwise step onto the nearest object's footing
        vshare = (np.minimum(y2[:, None], avoid[None, :, 3]) - np.maximum(y1[:, None], avoid[None, :, 1])) / h[:, None]
        dist = np.abs((avoid[None, :, 0] + avoid[None, :, 2]) / 2 - cx[:, None]) + np.where(vshare > 0.3, 0, 4 * S)
        a = avoid[np.argmin(dist + rng.uniform(0, 0.1 * S, dist.shape), 1)]
        beside = (np.minimum(y2, a[:, 3]) - np.maximum(y1, a[:, 1])) > 0.3 * h
        side = np.where(cx < (a[:, 0] + a[:, 2]) / 2, a[:, 0], a[:, 2])
        ncx = side + np.sign(side - cx) * rng.uniform(0.0, 0.3, n) * w
        return _from_bottom(ncx, np.where(beside, y2, a[:, 3]), w, h)
    if kind == "off_edge":
        if rule.support == "table":
            t = scene.tables
            j = _iou(pos, t).argmax(1) if len(t) else np.zeros(n, int)
            left = rng.random(n) < 0.5
            hang = rng.uniform(0.3, 0.6, n) * w
            ncx = np.where(left, t[j, 0] - w / 2 + (w - hang), t[j, 2] + w / 2 - (w - hang))
            return _from_bottom(ncx, y2, w, h)
        if rule.support == "wall":  # slides down across the horizon
            return pos + (hz - y2 + rng.uniform(0.25, 0.5, n) * h)[:, None] * np.array([0, 1, 0, 1])
        if rule.support == "window":
            win = scene.windows[_iou(pos, scene.windows).argmax(1)]
            dx = np.where(rng.random(n) < 0.5, win[:, 0] - x1, win[:, 2] - x2)
            out = rng.uniform(0.35, 0.6, n) * w
            return pos + (dx + np.sign(dx + 1e-9) * out)[:, None] * np.array([1, 0, 1, 0])
        if rule.support == "wall_base":  # walked forward, out of the strip along the wall (same size)
            return pos + rng.uniform(0.3, 0.6, n)[:, None] * (S - hz) * np.array([0, 1, 0, 1])
        return np.zeros((0, 4))
    if kind == "wrong_region":
        other = [c for c in CLASSES if RULES[c].support != rule.support]
        anchors = np.concatenate([propose(scene, c, max(1, n), rng) for c in other], 0)
        anchors = anchors[rng.permutation(len(anchors))[:n]]
        acx, ay2 = (anchors[:, 0] + anchors[:, 2]) / 2, anchors[:, 3]
        return _from_bottom(acx, ay2, w[: len(anchors)], h[: len(anchors)])
    raise ValueError(f"unknown negative type {kind!r}; expected one of {NEGATIVE_TYPES}")


def sample_negatives(scene: Scene, cls: str, positives: np.ndarray, per_type: int, rng: np.random.Generator,
                     num_bins: int | None = 32, types=NEGATIVE_TYPES, tries: int = 8) -> tuple[np.ndarray, list[str]]:
    """Hard negatives: up to ``per_type`` near-misses of each kind in ``types``; each fails the oracle.

    Returns ``(boxes (Q, 4), kinds)``. A kind that cannot occur in this scene (no object to overlap,
    no edge to fall off) is skipped.
    """
    check_class(cls)
    S = scene.size
    if len(positives) == 0:
        return np.zeros((0, 4)), []
    cands, labels = [], []
    for kind in types:
        src = positives[rng.integers(0, len(positives), per_type * tries)]
        cand = _perturb(scene, cls, kind, src, rng)
        cands.append(cand)
        labels += [kind] * len(cand)
    if not labels:
        return np.zeros((0, 4)), []
    cand = snap(np.clip(np.concatenate(cands, 0), 0, S), S, num_bins)
    ok = ((cand[:, 2] - cand[:, 0]) >= 2) & ((cand[:, 3] - cand[:, 1]) >= 2)
    ok &= ~plausible_np(scene, cls, cand)  # one oracle call for every kind at once
    kinds_arr = np.asarray(labels)
    keep = np.concatenate([np.nonzero(ok & (kinds_arr == k))[0][:per_type] for k in types])
    return cand[keep], [labels[i] for i in keep]


def _query(scene: Scene, cls: str, pos: torch.Tensor, neg: torch.Tensor, kinds: list[str], qid: str) -> PlacementQuery:
    """``pos`` / ``neg``: float32 (N, 4) boxes."""
    return PlacementQuery(
        category=cls, positives=pos, negatives=neg,
        image_source=scene, image_id=scene.scene_id, query_id=qid, width=scene.size, height=scene.size,
        meta={"scene": scene, "negative_types": kinds, "source": "synthetic"})


def _check_split_args(num_scenes, classes, num_bins):
    if isinstance(num_scenes, bool) or not isinstance(num_scenes, (int, np.integer)) or num_scenes < 0:
        raise ValueError(f"num_scenes must be a non-negative int, got {num_scenes!r}")
    if num_bins is not None and (isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer))
                                 or num_bins < 2):
        raise ValueError(f"num_bins must be an int >= 2 or None, got {num_bins!r}")
    classes = tuple(CLASSES if classes is None else classes)
    if not classes:
        raise ValueError("classes is empty")
    return tuple(check_class(c).name for c in classes)


def pipe_like(num_scenes: int, seed: int = 0, size: int = 64, num_bins: int | None = 32,
              classes=None, boxes_per_scene: int = 1, extra_boxes=()) -> list[PlacementQuery]:
    """PIPE-like pretraining data: one positive box per query, no negatives, and ``boxes_per_scene``
    queries (of different classes) per scene. PIPE pairs an object-free image with one object; a
    scene labelled for several objects is several such pairs sharing one image.

    Classes cycle over the scenes (balanced), starting at a random offset; a class without room in
    a scene gives its turn to the next, so a crowded scene can have fewer than ``boxes_per_scene``.
    ``extra_boxes``: class names that get one more box in every scene with room for them, from a
    random stream of their own (the balanced boxes stay the same); the class a model learns last
    then sees more examples for little more compute (the scene's image is shared).
    A split started earlier with :func:`locinsert.data.synthetic.background.start_pipe_like` for the
    same arguments is collected instead of generated again (the same queries).
    """
    classes = _check_split_args(num_scenes, classes, num_bins)
    _check_boxes_per_scene(boxes_per_scene, classes)
    extra_boxes = check_extra_boxes(extra_boxes, classes)
    started = STARTED.pop(pipe_like_key(num_scenes, seed, size, num_bins, classes, boxes_per_scene, extra_boxes),
                          None)
    if started is not None:
        return started.result()
    scenes = pipe_like_scenes(num_scenes, seed, size)
    labels = pipe_like_labels(scenes, seed, num_bins, classes, boxes_per_scene, extra_boxes)
    return pipe_like_queries(scenes, labels, classes)


#: PIPE-like splits being labelled elsewhere (``background.start_pipe_like``): key -> a job whose
#: ``result()`` returns the queries. ``pipe_like`` takes its split from here when one was started.
STARTED: dict[tuple, object] = {}


def pipe_like_scenes(num_scenes: int, seed: int = 0, size: int = 64) -> list[Scene]:
    """The scenes of :func:`pipe_like` (a stream of their own)."""
    return make_scenes(num_scenes, seed, size, stream="pipe")


def pipe_like_key(num_scenes, seed, size, num_bins, classes, boxes_per_scene, extra_boxes=()) -> tuple:
    """What identifies one PIPE-like split (its arguments, classes resolved)."""
    return ("pipe_like", int(num_scenes), int(seed), int(size), num_bins, tuple(classes), int(boxes_per_scene),
            tuple(extra_boxes))


def check_extra_boxes(extra_boxes, classes) -> tuple[str, ...]:
    """``extra_boxes`` as a tuple of class names of the world (a comma-separated string is accepted)."""
    if extra_boxes is None:
        return ()
    if isinstance(extra_boxes, str):
        extra_boxes = [c.strip() for c in extra_boxes.split(",") if c.strip()]
    extra = tuple(extra_boxes)
    unknown = [c for c in extra if c not in classes]
    if unknown:
        raise ValueError(f"extra_boxes names unknown classes {unknown}; the world's classes are {list(classes)}")
    if len(set(extra)) != len(extra):
        raise ValueError(f"extra_boxes names a class twice: {list(extra)}")
    return extra


def _check_boxes_per_scene(boxes_per_scene, classes) -> None:
    if (isinstance(boxes_per_scene, bool) or not isinstance(boxes_per_scene, (int, np.integer))
            or not 1 <= boxes_per_scene <= len(classes)):
        raise ValueError(f"boxes_per_scene must be an int in [1, {len(classes)}], got {boxes_per_scene!r}")


def pipe_like_labels(scenes: list[Scene], seed: int, num_bins: int | None, classes: tuple[str, ...],
                     boxes_per_scene: int, extra_boxes: tuple[str, ...] = ()
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labels of :func:`pipe_like` as three arrays: scene index (n,), class index (n,), box (n, 4).

    Plain arrays, so a worker process can hand them back cheaply; :func:`pipe_like_queries` makes
    the queries.
    """
    rng = scene_rng(seed, "pipe-labels")
    extra_rng = scene_rng(seed, "pipe-labels-extra")   # its own stream: the balanced boxes do not move
    offset = int(rng.integers(0, len(classes)))
    scene_index, class_index, boxes = [], [], []
    for i, scene in enumerate(scenes):
        found = 0
        for j in range(len(classes)):
            c = (i * boxes_per_scene + offset + j) % len(classes)
            pos = sample_positives(scene, classes[c], 1, rng, num_bins)
            if len(pos):
                scene_index.append(i)
                class_index.append(c)
                boxes.append(pos[0])
                found += 1
                if found == boxes_per_scene:
                    break
        for name in extra_boxes:
            pos = sample_positives(scene, name, 1, extra_rng, num_bins)
            if len(pos):
                scene_index.append(i)
                class_index.append(classes.index(name))
                boxes.append(pos[0])
    return (np.asarray(scene_index, dtype=np.int64), np.asarray(class_index, dtype=np.int64),
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4))


def pipe_like_queries(scenes: list[Scene], labels: tuple[np.ndarray, np.ndarray, np.ndarray],
                      classes: tuple[str, ...]) -> list[PlacementQuery]:
    """The queries of :func:`pipe_like` from its scenes and :func:`pipe_like_labels`."""
    # One tensor for every box, and each query a row of it: the demo's 360,000 queries took 13 s to
    # build when every box became a tensor of its own.
    boxes = torch.from_numpy(np.asarray(labels[2], dtype=np.float32).reshape(-1, 4))
    empty = torch.zeros(0, 4)
    out, seen = [], set()
    for k, (i, c) in enumerate(zip(labels[0].tolist(), labels[1].tolist())):
        scene, cls = scenes[i], classes[c]
        qid = f"{scene.scene_id}/{cls}"
        if qid in seen:   # a class's extra box (extra_boxes): a second query of the scene
            qid += "/2"
        seen.add(qid)
        out.append(_query(scene, cls, boxes[k:k + 1], empty, [], qid))
    return out


def _grouped(stream: str, num_scenes, seed, size, num_bins, classes, classes_per_scene, n_pos, per_type):
    classes = _check_split_args(num_scenes, classes, num_bins)
    if not 1 <= classes_per_scene <= len(classes):
        raise ValueError(f"classes_per_scene must be in [1, {len(classes)}], got {classes_per_scene}")
    scenes = make_scenes(num_scenes, seed, size, stream=stream)
    rng = scene_rng(seed, stream + "-labels")
    out = []
    for scene in scenes:
        for c in rng.permutation(len(classes))[:classes_per_scene]:
            cls = classes[int(c)]
            k = int(rng.integers(n_pos[0], n_pos[1] + 1))
            pos = sample_positives(scene, cls, k, rng, num_bins)
            if len(pos) == 0:
                continue
            neg, kinds = sample_negatives(scene, cls, pos, per_type, rng, num_bins)
            if per_type and len(neg) == 0:
                continue
            out.append(_query(scene, cls, torch.from_numpy(pos).float(), torch.from_numpy(neg).float(), kinds,
                              f"{scene.scene_id}/{cls}"))
    return out


def opa_like(num_scenes: int, seed: int = 0, size: int = 64, num_bins: int | None = 32, classes=None,
             classes_per_scene: int = 2, positives: tuple[int, int] = (2, 4),
             negatives_per_type: int = 2) -> list[PlacementQuery]:
    """OPA-like training data: per (scene, class), 2-4 distinct positives (fewer in the rare scene without
    room for them) and up to 2 hard negatives of each kind that can occur there."""
    return _grouped("opa", num_scenes, seed, size, num_bins, classes, classes_per_scene, positives,
                    negatives_per_type)


def test_split(num_scenes: int, seed: int = 0, size: int = 64, num_bins: int | None = 32, classes=None,
               classes_per_scene: int = 2, positives: tuple[int, int] = (1, 3),
               negatives_per_type: int = 1) -> list[PlacementQuery]:
    """Held-out evaluation data (scenes no training split contains), sparse labels like OPA test:
    1-3 positives and up to one negative of each kind per (scene, class). ``dense_positives`` gives
    the full set of true placements of a query's scene for coverage."""
    return _grouped("test", num_scenes, seed, size, num_bins, classes, classes_per_scene, positives,
                    negatives_per_type)


test_split.__test__ = False  # not a pytest test, despite its name
