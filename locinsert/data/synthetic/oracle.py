"""The exact plausibility oracle of the synthetic world: which boxes may hold which class.

Every rule is a test on the box (xyxy pixels) against the scene's layout, with tolerances, and is
vectorised over many boxes at once. Shared by all classes:

- the box lies inside the image, and each side is at least ``MIN_SIDE * S`` (2 bins of a 32-bin
  grid at any size);
- its aspect ratio w / h is inside the class band;
- it overlaps none of the things the class must avoid by more than ``OVERLAP_TOL`` of its own area.

Class rules (``S`` the image size, ``scale(y)`` the perspective scale of :func:`depth_scale`):

=========  ====================================================================================
cup        rests on a table top: bottom edge inside the table's top band (± ``EDGE_TOL``), fully
           within the table horizontally, height 0.75-1.35 x ``0.17 S scale(table legs)``
chair      stands on the floor: bottom edge at least ``FLOOR_MARGIN`` below the horizon, height
           0.75-1.3 x ``0.42 S scale(bottom)``
plant      stands on the floor against the wall: bottom edge in the first quarter of the floor
           depth below the horizon, height 0.75-1.3 x ``0.36 S scale(bottom)``
painting   hangs on the wall at eye level: fully above the horizon (margin 8 % of the wall), height
           0.3-0.6 of the wall height, centre in the band 0.3-0.6 of the wall height
bird       flies in the sky seen through a window: fully inside a window's glass, height 0.25-0.55
           of the window height
=========  ====================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .scenes import Scene, depth_scale

MIN_SIDE = 4 / 64          # smallest side, as a fraction of S (2 bins of 32)
EDGE_TOL = 1.5 / 64        # tolerance on resting edges, fraction of S
OVERLAP_TOL = 0.05         # share of the box's area that may overlap a thing it must avoid
FLOOR_MARGIN = 3 / 64      # how far below the horizon a floor object's bottom edge must be


@dataclass(frozen=True)
class ClassRule:
    """The numbers of one class's rule (the logic lives in ``_support``)."""

    name: str
    support: str                          # "table" | "floor" | "wall_base" | "wall" | "window"
    height: float                         # nominal height (see the module table)
    height_band: tuple[float, float]      # allowed height / nominal height
    aspect: tuple[float, float]           # allowed w / h
    avoid: tuple[str, ...]                # scene attributes whose boxes it must not overlap


RULES: dict[str, ClassRule] = {
    "cup": ClassRule("cup", "table", 0.17, (0.75, 1.35), (0.6, 1.4), ("vases", "crates")),
    "chair": ClassRule("chair", "floor", 0.42, (0.75, 1.3), (0.45, 0.85), ("tables", "crates", "vases")),
    "plant": ClassRule("plant", "wall_base", 0.36, (0.75, 1.3), (0.35, 0.75), ("tables", "crates", "vases")),
    "painting": ClassRule("painting", "wall", 0.45, (0.3 / 0.45, 0.6 / 0.45), (0.8, 1.7),
                          ("windows", "tables", "crates", "vases")),
    "bird": ClassRule("bird", "window", 0.4, (0.25 / 0.4, 0.55 / 0.4), (1.0, 2.2), ("tables", "vases")),
}

CLASSES: tuple[str, ...] = tuple(RULES)


def check_class(cls) -> ClassRule:
    """The rule of ``cls``; a clear error for anything that is not one of :data:`CLASSES`."""
    if not isinstance(cls, str):
        raise TypeError(f"class must be a str, got {type(cls).__name__}")
    if not cls.strip():
        raise ValueError("class name is empty")
    rule = RULES.get(cls.strip().lower())
    if rule is None:
        raise ValueError(f"unknown synthetic class {cls!r}; the world knows {list(CLASSES)}")
    return rule


def _as_np_boxes(boxes) -> np.ndarray:
    if isinstance(boxes, torch.Tensor):
        b = boxes.detach().cpu().double().numpy()
    else:
        b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) (xyxy pixels), got {tuple(b.shape)}")
    return b


def _overlap_share(b: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N,) largest share of each box's area covered by any of ``others`` (K, 4)."""
    if len(others) == 0:
        return np.zeros(len(b))
    lt = np.maximum(b[:, None, :2], others[None, :, :2])
    rb = np.minimum(b[:, None, 2:], others[None, :, 2:])
    wh = np.maximum(rb - lt, 0)   # maximum, not clip: the same numbers at a fraction of the call cost
    inter = wh[..., 0] * wh[..., 1]
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    return (inter / area[:, None]).max(1)


def _in_band(value: np.ndarray, nominal: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    return (value >= band[0] * nominal) & (value <= band[1] * nominal)


def _support(scene: Scene, rule: ClassRule, b: np.ndarray) -> np.ndarray:
    """(N,) bool: the class-specific part of the rule (where it stands and how big it is)."""
    S, hz = float(scene.size), scene.horizon
    x1, y1, x2, y2 = b.T
    h = y2 - y1
    tol = EDGE_TOL * S
    if rule.support == "table":
        t = scene.tables
        if len(t) == 0:
            return np.zeros(len(b), dtype=bool)
        top, d = t[None, :, 1], scene.table_tops[None, :]
        on_top = (y2[:, None] >= top - tol) & (y2[:, None] <= top + d + tol)
        within = (x1[:, None] >= t[None, :, 0] - tol) & (x2[:, None] <= t[None, :, 2] + tol)
        nominal = rule.height * S * depth_scale(t[:, 3], hz, scene.size)[None, :]
        sized = _in_band(h[:, None], nominal, rule.height_band)
        return (on_top & within & sized).any(1)
    if rule.support in ("floor", "wall_base"):
        ok = y2 >= hz + FLOOR_MARGIN * S if rule.support == "floor" else y2 >= hz + 1
        if rule.support == "wall_base":
            ok &= y2 <= hz + 0.25 * (S - hz) + tol
        nominal = rule.height * S * depth_scale(y2, hz, scene.size)
        return ok & _in_band(h, nominal, rule.height_band)
    if rule.support == "wall":
        margin = 0.08 * hz
        cy = (y1 + y2) / 2
        return ((y2 <= hz - margin) & (y1 >= 1) & (cy >= 0.3 * hz) & (cy <= 0.6 * hz)
                & _in_band(h, rule.height * hz, rule.height_band))
    if rule.support == "window":
        w = scene.windows
        if len(w) == 0:
            return np.zeros(len(b), dtype=bool)
        inside = ((x1[:, None] >= w[None, :, 0] + 1) & (x2[:, None] <= w[None, :, 2] - 1)
                  & (y1[:, None] >= w[None, :, 1] + 1) & (y2[:, None] <= w[None, :, 3] - 1))
        nominal = rule.height * (w[:, 3] - w[:, 1])[None, :]
        return (inside & _in_band(h[:, None], nominal, rule.height_band)).any(1)
    raise AssertionError(rule.support)


def plausible_np(scene: Scene, cls: str, boxes) -> np.ndarray:
    """:func:`is_plausible` as a numpy bool array (the fast path the generators use)."""
    rule = check_class(cls)
    b = _as_np_boxes(boxes)
    if len(b) == 0:
        return np.zeros(0, dtype=bool)
    S = float(scene.size)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    ok = np.isfinite(b).all(1)
    ok &= (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= S) & (b[:, 3] <= S)
    ok &= (w >= MIN_SIDE * S) & (h >= MIN_SIDE * S)
    aspect = w / np.maximum(h, 1e-9)
    ok &= (aspect >= rule.aspect[0]) & (aspect <= rule.aspect[1])
    avoid = np.concatenate([getattr(scene, a) for a in rule.avoid], 0)
    ok &= _overlap_share(b, avoid) <= OVERLAP_TOL
    ok &= _support(scene, rule, b)
    return ok


def is_plausible(scene: Scene, cls: str, boxes) -> torch.Tensor:
    """Exact ground truth: (N,) bool tensor, True where a ``cls`` could plausibly be at each box.

    ``boxes``: (N, 4) or (4,) xyxy pixels of the scene's image (tensor, array or nested list).
    Vectorised: one call checks thousands of boxes.
    """
    return torch.from_numpy(plausible_np(scene, cls, boxes))


# -- the dense set of true placements ------------------------------------------------------------

@lru_cache(maxsize=128)
def _grid_candidates(size: int, num_bins: int, cls: str) -> np.ndarray:
    """Every box with corners on the bin-centre grid whose size and aspect could suit ``cls`` anywhere.

    These bounds do not depend on the scene, so the candidate list is built once per (size, bins, class).
    """
    rule = RULES[cls]
    S = float(size)
    centres = (np.arange(num_bins) + 0.5) * S / num_bins
    i, j = np.triu_indices(num_bins, k=1)
    lo, hi = centres[i], centres[j]
    ext = hi - lo
    max_h = rule.height * S * rule.height_band[1]
    keep_h = (ext >= MIN_SIDE * S) & (ext <= max_h)
    keep_w = ext >= MIN_SIDE * S
    xi, yi = np.nonzero(keep_w)[0], np.nonzero(keep_h)[0]
    w, h = ext[xi][:, None], ext[yi][None, :]
    aspect = w / h
    a, c = np.nonzero((aspect >= rule.aspect[0]) & (aspect <= rule.aspect[1]))
    xs, ys = xi[a], yi[c]
    out = np.stack([lo[xs], lo[ys], hi[xs], hi[ys]], 1)
    out.setflags(write=False)
    return out


def dense_positives(scene: Scene, cls: str, num_bins: int = 32) -> torch.Tensor:
    """All true placements of ``cls`` whose corners lie on the bin-centre grid of ``num_bins`` bins.

    (M, 4) float xyxy pixels: exactly the boxes a ``num_bins`` location model can emit that the oracle
    accepts. Coverage is measured against this set.
    """
    rule = check_class(cls)
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 2:
        raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}")
    key = (rule.name, int(num_bins))
    if key not in scene._dense:  # coverage asks again for every K of a curve
        cand = _grid_candidates(int(scene.size), int(num_bins), rule.name)
        scene._dense[key] = torch.from_numpy(cand[plausible_np(scene, rule.name, cand)]).float()
    return scene._dense[key].clone()
