"""The synthetic placement world: determinism, the oracle, the splits, metrics and pictures."""

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert.boxes import boxes_to_tokens, tokens_to_boxes
from locinsert.data import PlacementQuery, synthetic
from locinsert.data.synthetic.drawing import SKY, TABLE_TOP
from locinsert.data.synthetic.oracle import EDGE_TOL, FLOOR_MARGIN, MIN_SIDE, OVERLAP_TOL, RULES
from locinsert.data.synthetic.scenes import depth_scale
from locinsert.data.synthetic.splits import snap


@pytest.fixture(scope="module")
def opa():
    return synthetic.opa_like(40, seed=7)


# -- a plain-Python reading of the rules, one box at a time (the oracle must agree) -----------------

def _inter(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def reference_plausible(scene, cls, box) -> bool:
    rule, S, hz = RULES[cls], float(scene.size), scene.horizon
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if x1 < 0 or y1 < 0 or x2 > S or y2 > S or w < MIN_SIDE * S or h < MIN_SIDE * S:
        return False
    if not rule.aspect[0] <= w / h <= rule.aspect[1]:
        return False
    for attr in rule.avoid:
        for o in getattr(scene, attr):
            if _inter(box, o) / (w * h) > OVERLAP_TOL:
                return False
    lo, hi = rule.height_band
    tol = EDGE_TOL * S
    if rule.support == "table":
        for t, d in zip(scene.tables, scene.table_tops):
            nominal = rule.height * S * float(depth_scale(t[3], hz, scene.size))
            if (t[1] - tol <= y2 <= t[1] + d + tol and x1 >= t[0] - tol and x2 <= t[2] + tol
                    and lo * nominal <= h <= hi * nominal):
                return True
        return False
    if rule.support in ("floor", "wall_base"):
        nominal = rule.height * S * float(depth_scale(y2, hz, scene.size))
        if rule.support == "floor":
            where = y2 >= hz + FLOOR_MARGIN * S
        else:
            where = hz + 1 <= y2 <= hz + 0.25 * (S - hz) + tol
        return where and lo * nominal <= h <= hi * nominal
    if rule.support == "wall":
        cy = (y1 + y2) / 2
        return (y2 <= hz - 0.08 * hz and y1 >= 1 and 0.3 * hz <= cy <= 0.6 * hz
                and lo * rule.height * hz <= h <= hi * rule.height * hz)
    for win in scene.windows:
        nominal = rule.height * (win[3] - win[1])
        if (x1 >= win[0] + 1 and x2 <= win[2] - 1 and y1 >= win[1] + 1 and y2 <= win[3] - 1
                and lo * nominal <= h <= hi * nominal):
            return True
    return False


# -- determinism and speed-independent properties -------------------------------------------------

def test_scenes_are_deterministic_from_a_seed():
    a, b = synthetic.make_scenes(30, seed=3), synthetic.make_scenes(30, seed=3)
    c = synthetic.make_scenes(30, seed=4)
    for sa, sb in zip(a, b):
        assert sa.horizon == sb.horizon and sa.scene_id == sb.scene_id
        for attr in ("windows", "tables", "table_tops", "crates", "vases"):
            np.testing.assert_array_equal(getattr(sa, attr), getattr(sb, attr))
        np.testing.assert_array_equal(sa.render(), sb.render())
    assert [s.horizon for s in a] != [s.horizon for s in c]


def test_splits_are_deterministic_and_disjoint():
    q1, q2 = synthetic.opa_like(12, seed=5), synthetic.opa_like(12, seed=5)
    assert [q.query_id for q in q1] == [q.query_id for q in q2]
    for a, b in zip(q1, q2):
        assert torch.equal(a.positives, b.positives) and torch.equal(a.negatives, b.negatives)
        assert a.meta["negative_types"] == b.meta["negative_types"]
    p1, p2 = synthetic.pipe_like(20, seed=5), synthetic.pipe_like(20, seed=5)
    assert all(torch.equal(a.positives, b.positives) and a.category == b.category for a, b in zip(p1, p2))
    test = synthetic.test_split(12, seed=5)
    train_horizons = {(q.meta["scene"].horizon, tuple(q.meta["scene"].tables.ravel())) for q in q1 + p1}
    assert not any((q.meta["scene"].horizon, tuple(q.meta["scene"].tables.ravel())) in train_horizons for q in test)


def test_mirrored_scene_matches_the_mirrored_image_and_labels(opa):
    from locinsert.data.augment import hflip_boxes

    for q in opa[:10]:
        scene = q.meta["scene"]
        flipped = scene.hflip()
        np.testing.assert_array_equal(flipped.render(), scene.render()[:, ::-1])
        assert synthetic.is_plausible(flipped, q.category, hflip_boxes(q.positives, 64)).all()
        assert not synthetic.is_plausible(flipped, q.category, hflip_boxes(q.negatives, 64)).any()


def test_layout_invariants():
    for s in synthetic.make_scenes(200, seed=11):
        S = s.size
        assert 0.35 * S - 1 <= s.horizon <= 0.55 * S + 1
        assert len(s.windows) >= 1 and len(s.tables) >= 1
        assert (s.windows[:, 3] < s.horizon).all()                 # windows are on the wall
        assert (s.tables[:, 3] > s.horizon).all()                  # tables stand on the floor
        floor = np.concatenate([s.tables, s.crates])
        for i in range(len(floor)):                                # floor things never overlap
            for j in range(i + 1, len(floor)):
                assert _inter(floor[i], floor[j]) == 0
        for box in np.concatenate([s.windows, s.tables, s.crates, s.vases]):
            assert box[0] >= 0 and box[1] >= 0 and box[2] <= S and box[3] <= S and box[2] > box[0]


# -- the oracle ------------------------------------------------------------------------------------

def test_vectorised_oracle_matches_a_per_box_loop(opa):
    rng = np.random.default_rng(0)
    checked = {True: 0, False: 0}
    for q in opa[:25]:
        scene = q.meta["scene"]
        # labels, jittered labels (boxes near every rule's boundaries) and random boxes
        base = torch.cat([q.positives, q.negatives]).numpy().astype(np.float64)
        jitter = base[rng.integers(0, len(base), 200)] + rng.normal(0, 1.5, (200, 4))
        rand = np.sort(rng.uniform(0, 64, (100, 2, 2)), axis=1).transpose(0, 2, 1).reshape(100, 4)
        boxes = np.concatenate([base, jitter, rand])
        for cls in synthetic.CLASSES:
            fast = synthetic.is_plausible(scene, cls, torch.from_numpy(boxes))
            assert fast.dtype == torch.bool and fast.shape == (len(boxes),)
            slow = [reference_plausible(scene, cls, b) for b in boxes]
            assert fast.tolist() == slow, (cls, q.query_id)
            checked[True] += sum(slow)
            checked[False] += len(slow) - sum(slow)
    assert checked[True] > 100 and checked[False] > 100


def test_rules_read_the_image():
    scene = next(s for s in synthetic.make_scenes(50, seed=2) if len(s.vases) == 0)
    S, hz = scene.size, scene.horizon
    # a chair of the right size at the bottom of the image is plausible; the same box near the horizon
    # is too big for its depth, and the same box on the wall does not stand on the floor
    nominal = RULES["chair"].height * S
    chair = torch.tensor([[2.0, S - nominal, 2 + 0.6 * nominal, S]])
    free = synthetic.is_plausible(scene, "chair", chair)
    if free:  # nothing in the way at the bottom-left corner
        near_horizon = chair.clone()
        near_horizon[:, [1, 3]] -= S - (hz + 4)
        assert not synthetic.is_plausible(scene, "chair", near_horizon)
    # a cup resting on the first table is plausible; 6 px higher it floats
    t, d = scene.tables[0], scene.table_tops[0]
    h = RULES["cup"].height * S * float(depth_scale(t[3], hz, S))
    cx = (t[0] + t[2]) / 2
    cup = torch.tensor([[cx - h / 2, t[1] + d / 2 - h, cx + h / 2, t[1] + d / 2]])
    assert synthetic.is_plausible(scene, "cup", cup).item()
    assert not synthetic.is_plausible(scene, "cup", cup - torch.tensor([0.0, 6.0, 0.0, 6.0])).item()
    assert not synthetic.is_plausible(scene, "cup", cup + torch.tensor([0.0, 0.0, 3 * h, 0.0])).item()  # aspect


def test_oracle_rejects_bad_input():
    scene = synthetic.make_scene(0)
    with pytest.raises(ValueError, match="unknown synthetic class"):
        synthetic.is_plausible(scene, "giraffe", [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="empty"):
        synthetic.is_plausible(scene, "  ", [[0, 0, 10, 10]])
    with pytest.raises(TypeError):
        synthetic.is_plausible(scene, 3, [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        synthetic.is_plausible(scene, "cup", [[0, 0, 10]])
    with pytest.raises(ValueError, match="at least 32"):
        synthetic.make_scene(0, size=16)
    with pytest.raises(ValueError, match="num_bins"):
        synthetic.dense_positives(scene, "cup", num_bins=1)
    assert synthetic.is_plausible(scene, "cup", torch.zeros(0, 4)).shape == (0,)
    # a box outside the image is never plausible, even if everything else fits
    assert not synthetic.is_plausible(scene, "painting", [[-5, 5, 10, 15]]).item()


# -- splits ----------------------------------------------------------------------------------------

def test_positives_pass_and_negatives_fail(opa):
    queries = opa + synthetic.pipe_like(40, seed=7) + synthetic.test_split(20, seed=7)
    assert all(isinstance(q, PlacementQuery) for q in queries)
    for q in queries:
        scene = q.meta["scene"]
        assert len(q.positives) >= 1
        assert synthetic.is_plausible(scene, q.category, q.positives).all(), q.query_id
        if len(q.negatives):
            assert not synthetic.is_plausible(scene, q.category, q.negatives).any(), q.query_id
        assert len(q.meta["negative_types"]) == len(q.negatives)


def test_split_shapes(opa):
    pipe = synthetic.pipe_like(50, seed=1)
    assert len(pipe) == 50 and all(len(q.positives) == 1 and len(q.negatives) == 0 for q in pipe)
    assert set(q.category for q in pipe) == set(synthetic.CLASSES)     # classes are balanced over scenes
    assert 2 * 40 * 0.9 <= len(opa) <= 2 * 40
    assert all(1 <= len(q.positives) <= 4 and len(q.negatives) >= 3 for q in opa)
    assert np.mean([len(q.positives) >= 2 for q in opa]) > 0.95
    test = synthetic.test_split(30, seed=1)
    assert all(1 <= len(q.positives) <= 3 and 1 <= len(q.negatives) <= len(synthetic.NEGATIVE_TYPES) for q in test)
    q = opa[0]
    assert q.size == (64, 64) and q.image.size == (64, 64) and q.image.mode == "RGB"
    assert q.query_id.endswith("/" + q.category) and q.image_id == q.meta["scene"].scene_id
    only = synthetic.opa_like(5, seed=1, classes=["bird"], classes_per_scene=1)
    assert {q.category for q in only} == {"bird"}
    with pytest.raises(ValueError, match="classes_per_scene"):
        synthetic.opa_like(5, classes_per_scene=9)
    with pytest.raises(ValueError, match="unknown synthetic class"):
        synthetic.pipe_like(5, classes=["cup", "unicorn"])


@pytest.mark.slow
def test_every_negative_type_occurs_and_negatives_are_near_misses(opa):
    from locinsert.data.synthetic.calibration import negative_hardness

    kinds = {k for q in opa for k in q.meta["negative_types"]}
    assert kinds == set(synthetic.NEGATIVE_TYPES)
    hard = negative_hardness(opa)
    assert all(v["fail_oracle"] == 1.0 for v in hard.values())
    # floating and scale negatives sit right next to true placements, not at random
    assert hard["floating"]["median_iou_true"] > 0.15 and hard["scale"]["median_iou_true"] > 0.3


def test_labels_lie_on_the_token_grid(opa):
    for q in opa[:20]:
        for boxes in (q.positives, q.negatives):
            t = boxes_to_tokens(boxes, 64, 64, 32)
            assert torch.allclose(tokens_to_boxes(t, 64, 64, 32), boxes)


def test_snap_is_the_token_round_trip():
    rng = np.random.default_rng(1)
    b = rng.uniform(-3, 70, (2000, 4))
    b = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], 1)
    ref = tokens_to_boxes(boxes_to_tokens(torch.from_numpy(b), 64, 64, 32), 64, 64, 32).double().numpy()
    np.testing.assert_allclose(snap(b, 64, 32), ref, atol=1e-9)


def test_dense_positives_pass_the_oracle_and_contain_the_labels(opa):
    for q in opa[:10]:
        scene = q.meta["scene"]
        dense = synthetic.dense_positives(scene, q.category)
        assert len(dense) > 10
        assert synthetic.is_plausible(scene, q.category, dense).all()
        # on-grid: the dense set is exactly what a 32-bin model can emit and the oracle accepts
        assert torch.allclose(tokens_to_boxes(boxes_to_tokens(dense, 64, 64, 32), 64, 64, 32), dense)
        for p in q.positives:
            assert (dense == p).all(1).any()
    # exhaustive on the grid: no plausible grid box is missing (check one scene against every grid box)
    scene = opa[0].meta["scene"]
    c = (torch.arange(32) + 0.5) * 2
    i, j = torch.triu_indices(32, 32, 1)
    xs = torch.stack([c[i], c[j]], 1)
    grid = torch.cat([xs[:, None, :].expand(-1, len(xs), -1), xs[None, :, :].expand(len(xs), -1, -1)], -1)
    grid = grid.reshape(-1, 4)[:, [0, 2, 1, 3]]
    for cls in ("cup", "bird"):
        assert int(synthetic.is_plausible(scene, cls, grid).sum()) == len(synthetic.dense_positives(scene, cls))


def test_other_sizes_work():
    qs = synthetic.opa_like(6, seed=2, size=96, num_bins=48)
    assert qs and all(q.image.size == (96, 96) for q in qs)
    for q in qs:
        assert synthetic.is_plausible(q.meta["scene"], q.category, q.positives).all()
        assert not synthetic.is_plausible(q.meta["scene"], q.category, q.negatives).any()


# -- calibration properties of the world -----------------------------------------------------------

def test_uniform_random_boxes_are_rarely_plausible():
    from locinsert.data.synthetic.calibration import uniform_plausible_rate

    rates = uniform_plausible_rate(synthetic.test_split(25, seed=0), n=400, seed=0)
    assert set(synthetic.CLASSES) <= set(rates)
    assert all(r < 0.05 for r in rates.values()), rates


# -- metrics ---------------------------------------------------------------------------------------

def test_oracle_precision_and_coverage(opa):
    # small dense sets keep the all-pairs IoU of "samples = the dense set itself" cheap
    qs = [q for q in opa if len(synthetic.dense_positives(q.meta["scene"], q.category)) < 800][:8]
    assert len(qs) == 8
    assert synthetic.oracle_precision(qs, [q.positives for q in qs]) == 1.0
    assert synthetic.oracle_precision(qs, [q.negatives for q in qs]) == 0.0
    mixed = [torch.cat([q.positives[:1].repeat(3, 1), q.negatives[:1]]) for q in qs]
    assert synthetic.oracle_precision(qs, mixed) == pytest.approx(0.75)
    per = synthetic.oracle_precision(qs, mixed, per_class=True)
    assert per["all"] == pytest.approx(0.75) and set(per) == {q.category for q in qs} | {"all"}

    dense = [synthetic.dense_positives(q.meta["scene"], q.category) for q in qs]
    assert synthetic.coverage(qs, dense) == 1.0
    assert synthetic.coverage(qs, [torch.zeros(0, 4) for _ in qs]) == 0.0
    one = synthetic.coverage(qs, [d[:1] for d in dense])
    more = synthetic.coverage(qs, [d[::7] for d in dense])
    assert 0 < one < more < 1.0

    class Samples:  # anything with .boxes (a BoxSamples) is accepted
        def __init__(self, boxes):
            self.boxes = boxes
    assert synthetic.oracle_precision(qs, [Samples(q.positives) for q in qs]) == 1.0
    with pytest.raises(ValueError, match="queries"):
        synthetic.coverage(qs, dense[:-1])
    plain = PlacementQuery("cup", [[0, 0, 5, 5]], [], image_source=np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="scene"):
        synthetic.oracle_precision([plain], [torch.zeros(1, 4)])


# -- pictures --------------------------------------------------------------------------------------

def test_render_shows_the_layout():
    s = next(s for s in synthetic.make_scenes(20, seed=1) if len(s.vases) == 0)
    img = synthetic.render(s)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    hz = int(s.horizon)
    assert tuple(img[0, 0]) == s.wall_color
    assert not (img[:hz] == s.floor_color).all(-1).any() and (img[hz:] == s.floor_color).all(-1).any()
    w = s.windows[0].astype(int)
    assert tuple(img[(w[1] + w[3]) // 2, (w[0] + w[2]) // 2]) == SKY
    t = s.tables[0].astype(int)
    assert tuple(img[t[1], (t[0] + t[2]) // 2]) == TABLE_TOP
    np.testing.assert_array_equal(s.render(), img)   # drawing is deterministic


@pytest.mark.parametrize("cls", synthetic.CLASSES)
def test_sprites_have_real_alpha(cls):
    sp = synthetic.sprite(cls, size=(24, 30))
    assert isinstance(sp, Image.Image) and sp.mode == "RGBA" and sp.size == (24, 30)
    alpha = np.asarray(sp)[..., 3]
    assert (alpha == 0).any() or cls == "painting"       # transparent around the object
    assert (alpha == 255).mean() > 0.1                    # an opaque object
    assert ((alpha > 0) & (alpha < 255)).any() or cls == "painting"  # soft edges


def test_sprite_and_paste_errors():
    with pytest.raises(ValueError, match="unknown synthetic class"):
        synthetic.sprite("dragon")
    with pytest.raises(ValueError, match="at least 1x1"):
        synthetic.sprite("cup", (0, 5))
    with pytest.raises(TypeError):
        synthetic.sprite("cup", "big")
    scene = synthetic.make_scene(1)
    out = synthetic.paste_sprite(scene.render(), "bird", (10, 10, 22, 18))
    before, after = np.asarray(Image.fromarray(scene.render())), np.asarray(out)
    assert (before[:10] == after[:10]).all() and (before[10:18, 10:22] != after[10:18, 10:22]).any()


def test_plot_scenes_writes_a_figure(tmp_path, opa):
    path = tmp_path / "scenes.png"
    fig = synthetic.plot_scenes(opa[:5], samples=[q.positives for q in opa[:5]], ncols=3, path=path)
    assert path.stat().st_size > 1000 and len(fig.axes) == 6
    import matplotlib.pyplot as plt
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        synthetic.plot_scenes([])
