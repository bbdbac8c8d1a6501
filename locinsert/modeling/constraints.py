"""Decoding constraints: which coordinate token may come next so that the box stays valid.

Tokens arrive in the order x1, y1, x2, y2 (``a, b, c, d`` below). A box of tokens
``(a, b, c, d)`` decodes to the pixel box between bin centres ``cx[a] .. cx[c]`` and
``cy[b] .. cy[d]`` (see ``locinsert.boxes``). Every constraint is checked on that decoded box.

**Inside mode** (box inside a rectangle or mask, not overlapping ``avoid`` boxes, at least
``min_size`` pixels wide and high). The strip between two neighbouring bin centres is a *cell*;
a decoded box is exactly the union of the cells ``[b, d) x [a, c)``. A cell is *good* if it lies in
the allowed pixel set. The box is feasible iff all its cells are good, so one integral image over
bad cells answers every question in O(1), and because a smaller box inside a feasible box is
feasible (monotonicity), each step has an exact test:

- x1 = a is allowed iff some minimal box (``mx`` x ``my`` bins) with left edge a fits;
- y1 = b iff the minimal box at (a, b) fits;
- x2 = c iff the box (a, b, c, b + my) fits;
- y2 = d iff the box (a, b, c, d) fits.

**Centre mode** (box centre inside a rectangle or mask). The centre of a decoded box lies on a
half-bin grid indexed by ``s = a + c`` and ``t = b + d``. A 2-D prefix sum over the allowed centre
cells answers "is there an allowed centre in this range of s and t" exactly at every step.

Both are exact in what they allow: every allowed token has at least one completion, so decoding
never dead-ends and every sampled box satisfies the constraints. What is sampled is the *locally*
renormalised distribution q(box) = prod_t p(token_t | prefix) / Z_t, where Z_t is the model mass the
mask keeps at step t. It equals the Bayesian conditional p(box | box satisfies the constraints) only
when every step keeps the same share of mass; otherwise early tokens are chosen without looking
ahead (a region that cuts off most of the model's favourite x1 values pushes boxes to the region's
edge). ``sample()``'s log-probs and ``score()`` both report log q, so they agree;
``sample(..., resample=k)`` importance-resamples towards the exact conditional.
The one combination that is not monotone, centre mode *plus* ``avoid`` boxes, uses both masks
(each is necessary); a row can then dead-end, and the sampler redraws such rows a bounded number
of times (``exact`` is False). Feasibility of a constraint set is always checked exactly, so an
impossible region raises ``ValueError`` before any sampling.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..boxes import as_boxes
from ..regions import ResolvedRegion, as_region

_EPS = 1e-6  # geometric slack on bin-centre comparisons (float64 maths)


def _prefix2d(a: torch.Tensor) -> torch.Tensor:
    """Integral image with a zero first row and column: P[i, j] = a[:i, :j].sum()."""
    p = torch.zeros(a.shape[0] + 1, a.shape[1] + 1, dtype=torch.int32)
    p[1:, 1:] = a.to(torch.int32).cumsum(0).cumsum(1)
    return p


def _rect_count(p: torch.Tensor, r0, r1, c0, c1) -> torch.Tensor:
    """Number of set cells in rows [r0, r1] x cols [c0, c1] (inclusive, broadcast; empty -> 0)."""
    rows, cols = p.shape[0] - 1, p.shape[1] - 1
    r0 = torch.as_tensor(r0).clamp(0, rows)
    c0 = torch.as_tensor(c0).clamp(0, cols)
    r1 = torch.maximum(torch.as_tensor(r1) + 1, r0).clamp(max=rows)
    c1 = torch.maximum(torch.as_tensor(c1) + 1, c0).clamp(max=cols)
    r0, c0 = torch.minimum(r0, r1), torch.minimum(c0, c1)
    return p[r1, c1] - p[r0, c1] - p[r1, c0] + p[r0, c0]


class BoxConstraints:
    """The constraints for one image: validity, ``min_size`` and an optional region.

    ``allowed(step, prefix)`` returns the (n, num_bins) bool mask of tokens allowed at ``step``
    (0..3) after the (n, step) tokens already chosen. ``satisfied(boxes)`` checks decoded pixel
    boxes directly (an independent check, used by tests and as a final guard).
    """

    def __init__(self, width: int, height: int, num_bins: int, region=None, min_size: float | None = None):
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.width, self.height, self.num_bins = int(width), int(height), int(num_bins)
        n = self.num_bins
        self.min_size = float(min_size or 0.0)
        if not math.isfinite(self.min_size) or self.min_size < 0:
            raise ValueError(f"min_size must be a non-negative number of pixels, got {min_size}")
        self.region = as_region(region)
        self.resolved: ResolvedRegion | None = (
            self.region.resolve(self.width, self.height) if self.region is not None else None)
        # Minimal extent in bins: decoded width is (c - a) * W / N pixels and must be >= min_size.
        self.mx = max(1, math.ceil(self.min_size * n / self.width - 1e-9))
        self.my = max(1, math.ceil(self.min_size * n / self.height - 1e-9))
        if self.mx > n - 1 or self.my > n - 1:
            raise ValueError(
                f"min_size={self.min_size:g} px does not fit in the {self.width}x{self.height} image "
                f"at {n} bins (the largest decodable box is {(n - 1) * self.width / n:g} x "
                f"{(n - 1) * self.height / n:g} px)")
        self.cx = (np.arange(n) + 0.5) * self.width / n
        self.cy = (np.arange(n) + 0.5) * self.height / n

        r = self.resolved
        centre = r is not None and r.mode == "center" and (r.rect is not None or r.mask is not None)
        has_avoid = r is not None and len(r.avoid) > 0
        self._bad = self._bad_cells()
        self._S = _prefix2d(self._bad)
        self._centre_P = _prefix2d(self._centre_cells()) if centre else None
        self.exact = not (centre and has_avoid)
        # x1 windows: W_ok[b, a] = the minimal box with top-left (a, b) fits.
        S, mx, my = self._S, self.mx, self.my
        win = S[my:, mx:] - S[:-my, mx:] - S[my:, :-mx] + S[:-my, :-mx]
        self._win_ok = win == 0  # (n - my, n - mx)
        if not self.feasible():
            raise ValueError(self._impossible_message())

    # -- construction ----------------------------------------------------------------------

    def _bad_cells(self) -> torch.Tensor:
        """(n-1, n-1) bool, rows = y cells, cols = x cells: True where a box may not reach."""
        n, r = self.num_bins, self.resolved
        bad = np.zeros((n - 1, n - 1), dtype=bool)
        if r is None:
            return torch.from_numpy(bad)
        x0, x1, y0, y1 = self.cx[:-1], self.cx[1:], self.cy[:-1], self.cy[1:]
        if r.mode == "inside" and r.rect is not None:
            rx1, ry1, rx2, ry2 = r.rect
            out_x = (x0 < rx1 - _EPS) | (x1 > rx2 + _EPS)
            out_y = (y0 < ry1 - _EPS) | (y1 > ry2 + _EPS)
            bad |= out_y[:, None] | out_x[None, :]
        if r.mode == "inside" and r.mask is not None:
            # A cell touches pixels floor(x0) .. ceil(x1) - 1; it is bad if any of them is disallowed.
            q = np.zeros((self.height + 1, self.width + 1), dtype=np.int64)
            q[1:, 1:] = (~r.mask).astype(np.int64).cumsum(0).cumsum(1)
            px0 = np.clip(np.floor(x0 + _EPS), 0, self.width).astype(int)
            px1 = np.clip(np.ceil(x1 - _EPS), 0, self.width).astype(int)
            py0 = np.clip(np.floor(y0 + _EPS), 0, self.height).astype(int)
            py1 = np.clip(np.ceil(y1 - _EPS), 0, self.height).astype(int)
            count = (q[py1[:, None], px1[None, :]] - q[py0[:, None], px1[None, :]]
                     - q[py1[:, None], px0[None, :]] + q[py0[:, None], px0[None, :]])
            bad |= count > 0
        for ax1, ay1, ax2, ay2 in r.avoid.double().tolist():
            # Touching an existing object is fine; overlapping it with positive area is not.
            ox = (x0 < ax2 - _EPS) & (x1 > ax1 + _EPS)
            oy = (y0 < ay2 - _EPS) & (y1 > ay1 + _EPS)
            bad |= oy[:, None] & ox[None, :]
        return torch.from_numpy(bad)

    def _centre_cells(self) -> torch.Tensor:
        """(2n-1, 2n-1) bool over (t, s) = (b + d, a + c): True where the box centre may lie."""
        n, r = self.num_bins, self.resolved
        half = np.arange(2 * n - 1)
        xs = (half + 1) / 2 * self.width / n   # centre x of a box with a + c = s
        ys = (half + 1) / 2 * self.height / n
        if r.rect is not None:
            rx1, ry1, rx2, ry2 = r.rect
            ok_x = (xs >= rx1 - _EPS) & (xs <= rx2 + _EPS)
            ok_y = (ys >= ry1 - _EPS) & (ys <= ry2 + _EPS)
            ok = ok_y[:, None] & ok_x[None, :]
        else:
            px = np.clip(np.floor(xs + 1e-4), 0, self.width - 1).astype(int)
            py = np.clip(np.floor(ys + 1e-4), 0, self.height - 1).astype(int)
            ok = r.mask[py[:, None], px[None, :]]
        return torch.from_numpy(np.ascontiguousarray(ok))

    # -- feasibility -----------------------------------------------------------------------

    def feasible(self) -> bool:
        """Whether at least one box satisfies every constraint (exact)."""
        if self._centre_P is None:
            return bool(self._win_ok.any())
        if self.exact:
            return bool(self.allowed(0, torch.zeros(1, 0, dtype=torch.long)).any())
        # Centre + avoid: a feasible box can be shrunk about its centre to width mx or mx + 1
        # (matching the parity of a + c) and stay feasible, so test those minimal boxes only.
        n, mx, my = self.num_bins, self.mx, self.my
        s = torch.arange(2 * n - 1)
        w = mx + (s - mx) % 2
        a = (s - w) // 2
        h = my + (s - my) % 2
        b = (s - h) // 2
        ok_x = (a >= 0) & (a + w <= n - 1)
        ok_y = (b >= 0) & (b + h <= n - 1)
        P = self._centre_P
        centre_ok = (P[1:, 1:] - P[:-1, 1:] - P[1:, :-1] + P[:-1, :-1]) > 0  # (t, s)
        a_, c_ = a.clamp(0, n - 1), (a + w).clamp(0, n - 1)
        b_, d_ = b.clamp(0, n - 1), (b + h).clamp(0, n - 1)
        S = self._S
        bad = (S[d_[:, None], c_[None, :]] - S[b_[:, None], c_[None, :]]
               - S[d_[:, None], a_[None, :]] + S[b_[:, None], a_[None, :]])
        return bool((centre_ok & ok_y[:, None] & ok_x[None, :] & (bad == 0)).any())

    def _impossible_message(self) -> str:
        what = repr(self.region) if self.region is not None else "the whole image"
        size = f" with min_size={self.min_size:g} px" if self.min_size else ""
        return (f"no box can satisfy region {what}{size} in the {self.width}x{self.height} image "
                f"at {self.num_bins} bins (region too small, outside the image, or fully covered by avoid boxes)")

    # -- per-step masks --------------------------------------------------------------------

    def allowed(self, step: int, prefix: torch.Tensor) -> torch.Tensor:
        """(n, num_bins) bool: tokens allowed at ``step`` given the (n, step) tokens before it."""
        prefix = prefix.long().cpu()
        ok = self._inside_allowed(step, prefix)
        if self._centre_P is not None:
            ok &= self._centre_allowed(step, prefix)
        return ok

    def _inside_allowed(self, step: int, p: torch.Tensor) -> torch.Tensor:
        n, mx, my, S = self.num_bins, self.mx, self.my, self._S
        rows = p.shape[0]
        out = torch.zeros(rows, n, dtype=torch.bool)
        if step == 0:
            out[:, : n - mx] = self._win_ok.any(0)
        elif step == 1:
            a = p[:, 0]
            valid = a <= n - 1 - mx
            out[:, : n - my] = self._win_ok.t()[a.clamp(max=n - 1 - mx)] & valid[:, None]
        elif step == 2:
            a, b = p[:, 0:1], p[:, 1:2].clamp(max=n - 1 - my)
            bad = S[b[:, 0] + my] - S[b[:, 0]] - S[b + my, a] + S[b, a]  # box (a, b, c, b + my) for every c
            c = torch.arange(n)[None, :]
            out = (bad == 0) & (c >= a + mx)
        elif step == 3:
            a, b, c = p[:, 0:1], p[:, 1:2], p[:, 2:3]
            bad = S[:, c[:, 0]].t() - S[b, c] - S[:, a[:, 0]].t() + S[b, a]  # box (a, b, c, d) for every d
            d = torch.arange(n)[None, :]
            out = (bad == 0) & (d >= b + my)
        else:
            raise ValueError(f"step must be 0..3, got {step}")
        return out

    def _centre_allowed(self, step: int, p: torch.Tensor) -> torch.Tensor:
        n, mx, my, P = self.num_bins, self.mx, self.my, self._centre_P
        rows = p.shape[0]
        k = torch.arange(n)
        if step == 0:  # any b: t ranges over [my, 2n - 2 - my]
            ok = (_rect_count(P, my, 2 * n - 2 - my, 2 * k + mx, k + n - 1) > 0) & (k <= n - 1 - mx)
            return ok[None, :].expand(rows, n).clone()
        a = p[:, 0:1]
        if step == 1:
            ok = _rect_count(P, 2 * k[None, :] + my, k[None, :] + n - 1, 2 * a + mx, a + n - 1) > 0
            return ok & (k[None, :] <= n - 1 - my)
        b = p[:, 1:2]
        if step == 2:
            s = a + k[None, :]
            ok = _rect_count(P, 2 * b + my, b + n - 1, s, s) > 0
            return ok & (k[None, :] >= a + mx)
        c = p[:, 2:3]
        t = b + k[None, :]
        ok = _rect_count(P, t, t, a + c, a + c) > 0
        return ok & (k[None, :] >= b + my)

    # -- independent check on decoded pixel boxes ------------------------------------------

    def satisfied(self, boxes) -> torch.Tensor:
        """(N,) bool: pixel xyxy boxes that meet every constraint, checked geometrically."""
        b = as_boxes(boxes).double()
        tol = 1e-3
        x1, y1, x2, y2 = b.unbind(-1)
        ok = (x2 - x1 >= self.min_size - tol) & (y2 - y1 >= self.min_size - tol) & (x2 > x1) & (y2 > y1)
        ok &= (x1 >= -tol) & (y1 >= -tol) & (x2 <= self.width + tol) & (y2 <= self.height + tol)
        r = self.resolved
        if r is None:
            return ok
        if r.mode == "inside" and r.rect is not None:
            rx1, ry1, rx2, ry2 = r.rect
            ok &= (x1 >= rx1 - tol) & (y1 >= ry1 - tol) & (x2 <= rx2 + tol) & (y2 <= ry2 + tol)
        if r.mode == "inside" and r.mask is not None:
            for i in torch.nonzero(ok).flatten().tolist():
                j0, j1 = math.floor(float(x1[i]) + tol), math.ceil(float(x2[i]) - tol)
                i0, i1 = math.floor(float(y1[i]) + tol), math.ceil(float(y2[i]) - tol)
                ok[i] = bool(r.mask[max(i0, 0):i1, max(j0, 0):j1].all())
        if r.mode == "center" and (r.rect is not None or r.mask is not None):
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            if r.rect is not None:
                rx1, ry1, rx2, ry2 = r.rect
                ok &= (cx >= rx1 - tol) & (cx <= rx2 + tol) & (cy >= ry1 - tol) & (cy <= ry2 + tol)
            else:
                px = np.clip(np.floor(cx.numpy() + 1e-4), 0, self.width - 1).astype(int)
                py = np.clip(np.floor(cy.numpy() + 1e-4), 0, self.height - 1).astype(int)
                ok &= torch.from_numpy(r.mask[py, px])
        for ax1, ay1, ax2, ay2 in r.avoid.double().tolist():
            overlap = (x1 < ax2 - tol) & (x2 > ax1 + tol) & (y1 < ay2 - tol) & (y2 > ay1 + tol)
            ok &= ~overlap
        return ok

