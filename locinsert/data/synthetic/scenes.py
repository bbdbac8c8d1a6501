"""Scene generation for the synthetic placement world.

A scene is a room seen from the front: a wall above a floor, split by a horizon at a random height.
Depth is read off the floor: a thing whose bottom edge is at ``y`` is drawn at
``depth_scale(y)`` times its full size, from 0.5 at the horizon to 1.0 at the bottom of the image.
The scene holds only boxes (xyxy pixels, integers stored as floats); its image is rendered lazily
by :func:`locinsert.data.synthetic.render.render`.

Layout (every size is a fraction of the image size ``S``, so a scene scales with ``size``):

- ``windows`` (1-2) on the wall, showing sky;
- ``tables`` (1-2) standing on the floor; the visible top surface is the band
  ``[y1, y1 + table_tops]`` (a salient orange strip);
- ``crates`` (0-2) on the floor and ``vases`` (0-1 per table) on table tops: existing objects that
  occupy space.

Floor things never overlap each other, so drawing them back to front needs no occlusion logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Layout constants (fractions of the image size S unless said otherwise).
HORIZON_RANGE = (0.35, 0.55)          # horizon y / S
WINDOW_HEIGHT = (0.55, 0.75)          # window height / wall height
WINDOW_ASPECT = (0.8, 1.3)            # window w / h
TABLE_DEPTH = (0.25, 1.0)             # where a table's legs stand: fraction of the floor depth
TABLE_HEIGHT = 0.30                   # table height at full scale
TABLE_WIDTH = (0.40, 0.60)            # table width at full scale
TABLE_TOP = 0.07                      # visible thickness of the top surface at full scale
CRATE_SIZE = (0.16, 0.24)             # crate side at full scale
VASE_HEIGHT = 0.17                    # vase height at the table's scale
MIN_SCALE = 0.5                       # depth_scale at the horizon


def depth_scale(y, horizon: float, size: int):
    """Perspective: the scale of a thing standing at ``y`` (its bottom edge), 0.5 at the horizon, 1 at the bottom.

    Vectorised over ``y``; values above the horizon clamp to 0.5.
    """
    t = np.minimum(np.maximum((np.asarray(y, dtype=np.float64) - horizon) / max(size - horizon, 1e-9), 0.0), 1.0)
    return MIN_SCALE + (1.0 - MIN_SCALE) * t


@dataclass(eq=False)
class Scene:
    """One procedural room. All boxes are float64 arrays of shape (K, 4), xyxy pixels."""

    size: int
    horizon: float
    wall_color: tuple[int, int, int]
    floor_color: tuple[int, int, int]
    windows: np.ndarray
    tables: np.ndarray
    table_tops: np.ndarray            # (T,) visible thickness of each table's top surface
    crates: np.ndarray
    vases: np.ndarray
    scene_id: str = ""
    _dense: dict = field(default_factory=dict, repr=False)  # (class, num_bins) -> dense positives

    @property
    def width(self) -> int:
        """The image width in pixels (scenes are square)."""
        return self.size

    @property
    def height(self) -> int:
        """The image height in pixels (scenes are square)."""
        return self.size

    @property
    def objects(self) -> np.ndarray:
        """Existing objects that occupy space (crates and vases), (K, 4)."""
        return np.concatenate([self.crates, self.vases], 0)

    def scale_at(self, y):
        """The perspective scale of a thing whose bottom edge is at ``y``."""
        return depth_scale(y, self.horizon, self.size)

    def render(self) -> np.ndarray:
        """The scene's image, (S, S, 3) uint8. Not cached: drawing takes a fraction of a millisecond,
        and the query that owns the scene keeps its own decoded image."""
        return render(self)

    def hflip(self) -> "Scene":
        """The mirrored scene (x -> S - x). Every rule is left-right symmetric, so a mirrored query's
        labels are checked against the mirrored scene; its image is the mirrored image, pixel for pixel."""
        def m(b: np.ndarray) -> np.ndarray:
            return np.stack([self.size - b[:, 2], b[:, 1], self.size - b[:, 0], b[:, 3]], 1) if len(b) else b.copy()
        return Scene(size=self.size, horizon=self.horizon, wall_color=self.wall_color, floor_color=self.floor_color,
                     windows=m(self.windows), tables=m(self.tables), table_tops=self.table_tops.copy(),
                     crates=m(self.crates), vases=m(self.vases),
                     scene_id=f"{self.scene_id}:hflip" if self.scene_id else "")

    def __call__(self) -> np.ndarray:
        # A Scene is a valid PlacementQuery.image_source: the image is drawn only when asked for.
        return self.render()


def _overlaps(box, others, gap: float = 0.0) -> bool:
    for o in others:
        if box[0] < o[2] + gap and o[0] < box[2] + gap and box[1] < o[3] + gap and o[1] < box[3] + gap:
            return True
    return False


def _boxes(lst) -> np.ndarray:
    return np.asarray(lst, dtype=np.float64).reshape(-1, 4)


class _Uniforms:
    """Uniforms drawn from the Generator in blocks: one numpy call per scene instead of dozens."""

    def __init__(self, rng: np.random.Generator, block: int = 96):
        self.rng, self.block = rng, block
        self.buf, self.i = rng.random(block).tolist(), 0

    def __call__(self, lo: float = 0.0, hi: float = 1.0) -> float:
        if self.i == len(self.buf):
            self.buf, self.i = self.rng.random(self.block).tolist(), 0
        self.i += 1
        return lo + (hi - lo) * self.buf[self.i - 1]


#: Sides of a scene in pixels: every class fits from MIN_SIZE; beyond MAX_SIZE a scene is only memory.
MIN_SIZE, MAX_SIZE = 32, 4096


def make_scene(rng: np.random.Generator | int, size: int = 64, scene_id: str = "") -> Scene:
    """Draw one scene. ``rng`` is a numpy Generator (or a seed); the same state gives the same scene."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int (pixels of the square image), got {type(size).__name__}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px so that every class fits, got {size}")
    if size > MAX_SIZE:
        raise ValueError(f"size must be at most {MAX_SIZE} px (a flat-colour world gains nothing beyond), got {size}")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    S = int(size)
    u = _Uniforms(rng)
    r = lambda v: float(round(v))  # noqa: E731  (integer pixel edges make rendering exact)
    horizon = r(u(*HORIZON_RANGE) * S)
    depth = S - horizon
    # plain-float perspective: this runs a dozen times per scene
    scale = lambda y: MIN_SCALE + (1.0 - MIN_SCALE) * min(max((y - horizon) / depth, 0.0), 1.0)  # noqa: E731

    windows: list = []
    for _ in range(1 + int(u() < 0.5)):
        for _try in range(10):
            wh = r(u(*WINDOW_HEIGHT) * horizon)
            ww = r(wh * u(*WINDOW_ASPECT))
            y1 = r(u(0.1 * horizon, horizon - wh - 0.1 * horizon))
            x1 = r(u(1, S - ww - 1))
            box = (x1, y1, x1 + ww, y1 + wh)
            # leave wall room for a painting: windows keep apart and take at most 60% of the width
            if not _overlaps(box, windows, gap=0.12 * S) and sum(w[2] - w[0] for w in windows) + ww <= 0.6 * S:
                windows.append(box)
                break

    tables: list = []
    tops: list = []
    for _ in range(1 + int(u() < 0.5)):
        for _try in range(10):
            yb = min(r(horizon + u(*TABLE_DEPTH) * depth), S)
            sc = scale(yb)
            th = r(TABLE_HEIGHT * S * sc)
            tw = r(u(*TABLE_WIDTH) * S * sc)
            x1 = r(u(0, S - tw))
            box = (x1, yb - th, x1 + tw, yb)
            if not _overlaps(box, tables, gap=2):
                tables.append(box)
                tops.append(max(2.0, r(TABLE_TOP * S * sc)))
                break

    crates: list = []
    for _ in range(min(int(u() * 3), 2)):
        for _try in range(10):
            yb = min(r(horizon + u(0.1, 1.0) * depth), S)
            side = r(u(*CRATE_SIZE) * S * scale(yb))
            x1 = r(u(0, S - side))
            box = (x1, yb - side, x1 + side, yb)
            if not _overlaps(box, tables + crates, gap=1):
                crates.append(box)
                break

    vases: list = []
    for t, d in zip(tables, tops):
        if u() < 0.6:
            vh = r(VASE_HEIGHT * S * scale(t[3]))
            vw = max(2.0, r(vh * 0.55))
            x1 = r(u(t[0] + 1, t[2] - vw - 1))
            y2 = t[1] + r(d / 2)
            vases.append((x1, y2 - vh, x1 + vw, y2))

    jitter = rng.integers(-14, 15, size=6)
    clip = lambda c: tuple(int(min(max(v, 0), 255)) for v in c)  # noqa: E731
    return Scene(
        size=S, horizon=horizon,
        wall_color=clip(np.array((206, 196, 178)) + jitter[:3]),
        floor_color=clip(np.array((112, 84, 60)) + (jitter[3:] * 12) // 14),
        windows=_boxes(windows), tables=_boxes(tables), table_tops=np.asarray(tops, dtype=np.float64),
        crates=_boxes(crates), vases=_boxes(vases), scene_id=scene_id)


def scene_rng(seed: int, stream: str) -> np.random.Generator:
    """A Generator for one named stream of a seed: splits drawn from the same seed never share scenes."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    code = [ord(c) for c in stream]
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *code]))


def make_scenes(n: int, seed: int = 0, size: int = 64, stream: str = "scenes") -> list[Scene]:
    """``n`` scenes, deterministic from ``(seed, stream)``; 10k scenes take about half a second."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    rng = scene_rng(seed, stream)
    return [make_scene(rng, size=size, scene_id=f"{stream}-{seed}-{i:06d}") for i in range(n)]


# -- painting: the one place that knows how a scene looks -------------------------------------------

SKY_COLOR = (120, 180, 240)
FRAME_COLOR = (250, 250, 250)
TABLE_TOP_COLOR = (238, 140, 30)
TABLE_LEG_COLOR = (80, 45, 20)
CRATE_COLOR = (90, 130, 95)
CRATE_EDGE_COLOR = (40, 60, 45)
VASE_COLOR = (150, 60, 170)


def _fill(img: np.ndarray, box, value) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    img[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = value


def paint(scene: Scene, out: np.ndarray, value) -> np.ndarray:
    """Paint every part of ``scene`` into ``out`` (S, S, ...) with ``value(part, index)``, back to front.

    The one place that knows the scene's geometry: :func:`render` paints colours with it and
    :mod:`.labels` paints part labels and instance ids, so pictures and label maps agree pixel for pixel.
    Parts: ``wall``, ``floor``, ``window_frame``, ``glass``, ``crate_edge``, ``crate``, ``table_leg``,
    ``table_top``, ``vase``; ``index`` is the thing's row in its ``Scene`` array (0 for wall and floor).
    """
    S, hz = scene.size, int(scene.horizon)
    out[:hz] = value("wall", 0)
    out[hz:] = value("floor", 0)
    # Plain Python floats: every training image is painted anew, and rounding numpy scalars box by
    # box cost more than the painting itself.
    for i, w in enumerate(scene.windows.tolist()):
        _fill(out, w, value("window_frame", i))
        _fill(out, (w[0] + 1, w[1] + 1, w[2] - 1, w[3] - 1), value("glass", i))
    tops = scene.table_tops.tolist()
    floor_things = [("crate", i, c) for i, c in enumerate(scene.crates.tolist())] + \
                   [("table", i, t) for i, t in enumerate(scene.tables.tolist())]
    for kind, i, b in sorted(floor_things, key=lambda t: t[2][3]):  # far (higher up) first
        if kind == "crate":
            _fill(out, b, value("crate_edge", i))
            _fill(out, (b[0] + 1, b[1] + 1, b[2] - 1, b[3] - 1), value("crate", i))
        else:
            d = tops[i]
            leg = max(1, int(round(0.05 * S * float(scene.scale_at(b[3])))))
            _fill(out, (b[0] + 1, b[1] + d, b[0] + 1 + leg, b[3]), value("table_leg", i))
            _fill(out, (b[2] - 1 - leg, b[1] + d, b[2] - 1, b[3]), value("table_leg", i))
            _fill(out, (b[0], b[1], b[2], b[1] + d), value("table_top", i))
    for i, v in enumerate(scene.vases.tolist()):
        _fill(out, v, value("vase", i))
    return out


def render(scene: Scene) -> np.ndarray:
    """The scene as an (S, S, 3) uint8 image: wall, floor, windows, crates, tables (back to front), vases."""
    colors = {"wall": scene.wall_color, "floor": scene.floor_color, "window_frame": FRAME_COLOR,
              "glass": SKY_COLOR, "crate_edge": CRATE_EDGE_COLOR, "crate": CRATE_COLOR,
              "table_leg": TABLE_LEG_COLOR, "table_top": TABLE_TOP_COLOR, "vase": VASE_COLOR}
    return paint(scene, np.empty((scene.size, scene.size, 3), dtype=np.uint8), lambda part, i: colors[part])
