"""Decoding constraints: the per-step masks must describe exactly the boxes that satisfy the region."""

import itertools

import numpy as np
import pytest
import torch

from locinsert.boxes import tokens_to_boxes
from locinsert.modeling.constraints import BoxConstraints
from locinsert.regions import Region

W, H, NB = 40, 30, 9


def all_token_boxes(n):
    return torch.tensor(list(itertools.product(range(n), repeat=4)), dtype=torch.long)


def reachable(con: BoxConstraints) -> set:
    """Boxes reachable by decoding with the per-step masks (exhaustive tree walk)."""
    paths = torch.zeros(1, 0, dtype=torch.long)
    for step in range(4):
        ok = con.allowed(step, paths)
        rows, toks = ok.nonzero(as_tuple=True)
        paths = torch.cat([paths[rows], toks[:, None]], 1)
    return {tuple(p) for p in paths.tolist()}


def dead_ends(con: BoxConstraints) -> int:
    """Prefixes that are allowed but have no allowed continuation."""
    paths, dead = torch.zeros(1, 0, dtype=torch.long), 0
    for step in range(4):
        ok = con.allowed(step, paths)
        dead += int((~ok.any(1)).sum())
        rows, toks = ok.nonzero(as_tuple=True)
        paths = torch.cat([paths[rows], toks[:, None]], 1)
    return dead


def truth(con: BoxConstraints) -> set:
    toks = all_token_boxes(con.num_bins)
    ok = con.satisfied(tokens_to_boxes(toks, con.width, con.height, con.num_bins))
    return {tuple(t) for t in toks[ok].tolist()}


rng = np.random.default_rng(0)
blob = np.zeros((H, W), dtype=bool)
blob[5:25, 3:20] = True
blob[12:18, 8:12] = False      # a hole
blob[0:10, 25:38] = True        # a second island
ragged = rng.random((H, W)) > 0.15

CASES = [
    ("none", None, 0),
    ("min_size", None, 9.0),
    ("rect inside", Region((6.0, 4.0, 31.0, 22.0)), 0),
    ("rect inside min", Region((6.0, 4.0, 31.0, 22.0)), 7.0),
    ("normalised", Region((0.5, 0.0, 1.0, 0.5)), 0),
    ("mask inside", Region(blob), 0),
    ("mask inside min", Region(blob), 4.0),
    ("ragged mask", Region(ragged), 0),
    ("avoid", Region(None, avoid=[[10, 8, 22, 20], [30, 0, 35, 30]]), 0),
    ("rect + avoid", Region((2.0, 2.0, 38.0, 28.0), avoid=[[12, 10, 20, 16]]), 3.0),
    ("mask + avoid", Region(blob, avoid=[[5, 5, 10, 10]]), 0),
    ("centre rect", Region((25.0, 3.0, 33.0, 9.0), mode="center"), 0),
    ("centre rect min", Region((0.0, 0.0, 12.0, 30.0), mode="center"), 8.0),
    ("centre mask", Region(blob, mode="center"), 0),
    ("centre phrase", Region.parse("top left"), 0),
]


@pytest.mark.parametrize("name,region,min_size", CASES, ids=[c[0] for c in CASES])
def test_masks_reach_exactly_the_feasible_boxes(name, region, min_size):
    con = BoxConstraints(W, H, NB, region, min_size)
    assert con.exact
    want = truth(con)
    assert want, "test case should be feasible"
    assert reachable(con) == want
    assert dead_ends(con) == 0


def test_centre_plus_avoid_is_sound_but_may_dead_end():
    region = Region((0.0, 0.0, 20.0, 30.0), mode="center", avoid=[[5, 5, 15, 25]])
    con = BoxConstraints(W, H, NB, region, 0)
    assert not con.exact
    got = reachable(con)
    # every completed path is feasible and every feasible box is reachable
    assert got == truth(con)


@pytest.mark.parametrize("region,min_size,match", [
    (Region((100.0, 100.0, 200.0, 200.0)), 0, "outside"),
    (Region((10.0, 10.0, 12.0, 12.0)), 0, "no box"),
    (Region((0.0, 0.0, 20.0, 20.0)), 25.0, "no box"),
    (Region(None, avoid=[[0, 0, 40, 30]]), 0, "no box"),
    (None, 50.0, "does not fit"),
    (Region((0.0, 0.0, 40.0, 30.0), mode="center", avoid=[[0, 0, 40, 30]]), 0, "no box"),
])
def test_impossible_regions_raise(region, min_size, match):
    with pytest.raises(ValueError, match=match):
        BoxConstraints(W, H, NB, region, min_size)


def test_bad_min_size():
    with pytest.raises(ValueError, match="min_size"):
        BoxConstraints(W, H, NB, None, -1)
    with pytest.raises(ValueError, match="min_size"):
        BoxConstraints(W, H, NB, None, float("nan"))


def test_large_grid_is_fast_enough_to_build_and_query():
    # 1024 bins on a 640x480 image with a mask region: built once per sampled image.
    m = np.zeros((480, 640), dtype=bool)
    m[200:480, 0:320] = True
    con = BoxConstraints(640, 480, 1024, Region(m, avoid=[[50, 300, 150, 400]]), 8.0)
    p = torch.zeros(5, 0, dtype=torch.long)
    for step in range(4):
        ok = con.allowed(step, p)
        assert ok.any(1).all()
        nxt = torch.stack([row.nonzero()[torch.randint(len(row.nonzero()), ())] for row in ok])
        p = torch.cat([p, nxt], 1)
    assert con.satisfied(tokens_to_boxes(p, 640, 480, 1024)).all()
