"""evaluate(): sampling once and taking prefixes, curves (JSON, plots, paper references), baselines."""

import json
import math

import pytest
import torch
from PIL import Image

from locinsert.data import PlacementQuery
from locinsert.evaluation import (PAPER_CURVES, ClassPrior, Curve, RandomBoxes, evaluate, evaluate_boxes,
                                  make_baseline, plot_curves, save_figure, tpr_fpr)
from locinsert.evaluation.curves import CurvePoint

FAR = [90.0, 90.0, 95.0, 95.0]  # matches no label below


def query(cat="cup", pos=((10, 10, 30, 30),), neg=((40, 40, 60, 60),), size=(100, 100), **kw):
    kw.setdefault("width", size[0])
    kw.setdefault("height", size[1])
    return PlacementQuery(cat, torch.tensor(pos, dtype=torch.float32), torch.tensor(neg, dtype=torch.float32),
                          image_source=Image.new("RGB", size), **kw)


class Scripted:
    """A stand-in model: for each query, far-away boxes except the labelled boxes at scripted sample indices."""

    needs_image = True

    def __init__(self, hits):  # hits: {sample index: box}
        self.hits, self.calls = hits, []

    def sample(self, images, classes, num_samples=100, generator=None):
        assert isinstance(generator, torch.Generator)
        assert all(isinstance(im, Image.Image) for im in images)
        self.calls.append(len(images))
        out = []
        for _ in images:
            boxes = torch.tensor([FAR] * num_samples)
            for i, b in self.hits.items():
                if i < num_samples:
                    boxes[i] = torch.tensor(b)
            out.append(type("S", (), {"boxes": boxes})())
        return out


def test_curve_points_are_prefixes_of_one_sampling_run():
    # Sample 15 hits the positive, sample 55 the negative: TPR jumps at K=20, FPR at K=60.
    model = Scripted({15: (10, 10, 30, 30), 55: (40, 40, 60, 60)})
    qs = [query() for _ in range(5)]
    curve = evaluate(model, qs, batch_size=2, progress=False, per_category=False)
    assert model.calls == [2, 2, 1]  # 5 queries in batches of 2, sampled once each
    assert curve.ks == list(range(10, 101, 10))
    assert curve.tpr == [0.0] + [1.0] * 9
    assert curve.fpr == [0.0] * 5 + [1.0] * 5
    p = curve.at(10)
    assert (p.num_positives, p.num_negatives, p.ignored, p.num_predictions) == (5, 5, 50, 50)
    assert curve.at(100).ignored == 5 * 98


def test_prefix_point_equals_evaluating_the_first_k_samples():
    g = torch.Generator().manual_seed(0)
    qs = [query(pos=((10, 10, 40, 40), (50, 10, 90, 40)), neg=((10, 50, 40, 90),)) for _ in range(30)]
    boxes = RandomBoxes(num_bins=8).sample([(100, 100)] * 30, ["cup"] * 30, num_samples=50, generator=g)
    boxes = [b.boxes for b in boxes]
    curve = evaluate_boxes(boxes, qs, ks=[5, 50], per_category=False)
    for k in (5, 50):
        direct = tpr_fpr([b[:k] for b in boxes], [q.positives for q in qs], [q.negatives for q in qs])
        assert (curve.at(k).tpr, curve.at(k).fpr) == (direct.tpr, direct.fpr)
    assert curve.at(50).tpr > curve.at(5).tpr > 0


def test_same_seed_same_curve_different_seed_different():
    qs = [query(pos=((10, 10, 40, 40),), neg=((50, 50, 90, 90),)) for _ in range(40)]
    model = RandomBoxes(num_bins=6)
    a = evaluate(model, qs, seed=1, progress=False)
    b = evaluate(model, qs, seed=1, progress=False)
    c = evaluate(model, qs, seed=2, progress=False)
    assert a.to_json() == b.to_json()
    assert [p.matched_positives for p in a.points] != [p.matched_positives for p in c.points]


def test_per_category_breakdown_sums_to_the_pool():
    qs = [query("cup", pos=((10, 10, 30, 30),)), query("cup", pos=((50, 50, 70, 70),)),
          query("dog", pos=((10, 10, 30, 30), (60, 60, 80, 80)))]
    curve = evaluate(Scripted({3: (10, 10, 30, 30)}), qs, ks=[10], progress=False)
    assert sorted(curve.per_category) == ["cup", "dog"]
    cup, dog = curve.per_category["cup"].at(10), curve.per_category["dog"].at(10)
    assert (cup.matched_positives, cup.num_positives, dog.matched_positives, dog.num_positives) == (1, 2, 1, 2)
    assert cup.tpr == 0.5 and curve.per_category["cup"].meta["num_queries"] == 2
    assert curve.at(10).matched_positives == cup.matched_positives + dog.matched_positives


def test_curve_json_round_trip(tmp_path):
    qs = [query() for _ in range(3)]
    curve = evaluate(Scripted({0: (10, 10, 30, 30)}), qs, ks=[1, 2], progress=False, name="scripted")
    curve.points[0].fpr = math.nan  # JSON has no NaN: written as null, read back as nan
    path = tmp_path / "c.json"
    text = curve.to_json(path)
    assert json.loads(text)["points"][0]["fpr"] is None
    back = Curve.from_json(path)
    assert back.name == "scripted" and back.ks == [1, 2] and math.isnan(back.points[0].fpr)
    assert back.per_category["cup"].at(2).tpr == 1.0 and back.tpr == curve.tpr
    assert Curve.from_json(text).to_json() == back.to_json()
    with pytest.raises(ValueError, match="malformed"):
        Curve.from_json("{not json")
    with pytest.raises(ValueError, match="not a locinsert curve"):
        Curve.from_json('{"name": "x"}')
    with pytest.raises(FileNotFoundError):
        Curve.from_json(tmp_path / "missing.json")


def test_paper_reference_curves_match_the_design_table():
    dpo, no_dpo, rnd = PAPER_CURVES["dpo"], PAPER_CURVES["no_dpo"], PAPER_CURVES["random"]
    assert (dpo.at(10).fpr, dpo.at(10).tpr, dpo.at(100).tpr) == (0.0067, 0.057, 0.195)
    assert (no_dpo.at(10).fpr, no_dpo.at(100).fpr, no_dpo.at(100).tpr) == (0.0082, 0.0548, 0.204)
    assert (rnd.at(10).tpr, rnd.at(100).fpr, rnd.at(100).tpr) == (0.003, 0.050, 0.027)
    assert all(len(c.points) == 10 for k, c in PAPER_CURVES.items() if k != "context_cnn")
    for c in PAPER_CURVES.values():  # every reference curve rises with K
        assert c.tpr == sorted(c.tpr) and c.fpr == sorted(c.fpr)


def test_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = Curve("mine", [CurvePoint(10, 0.01, 0.1), CurvePoint(20, 0.02, 0.15)])
    ax = plot_curves([c], paper="all")
    assert len(ax.get_lines()) == 1 + len(PAPER_CURVES)
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "mine"
    plt.close("all")
    ax = plot_curves([c], paper=None)
    assert len(ax.get_lines()) == 1
    plt.close("all")
    with pytest.raises(ValueError, match="unknown paper curve"):
        plot_curves([c], paper=["nope"])
    c.points[0].oracle_precision, c.points[0].coverage = 0.5, 0.2
    path = save_figure([c], tmp_path / "sub" / "curves.png", paper=True)
    with Image.open(path) as im:
        assert im.size[0] > im.size[1] * 2  # two panels side by side when oracle metrics exist


def test_random_boxes_are_valid_uniform_and_on_the_grid():
    g = torch.Generator().manual_seed(0)
    s = RandomBoxes(num_bins=16).sample(Image.new("RGB", (160, 80)), "cup", num_samples=4000, generator=g)
    b = s.boxes
    assert b.shape == (4000, 4) and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert b[:, [0, 2]].min() > 0 and b[:, [0, 2]].max() < 160 and b[:, [1, 3]].max() < 80
    assert torch.allclose((b[:, 0] / 10 - 0.5) % 1, torch.zeros(4000), atol=1e-4)  # bin centres of 10 px bins
    assert s.tokens.max() == 15 and s.tokens.min() == 0
    # Uniform over ordered pairs: the mean left edge is (N - 2) / 3 bins (16 bins: 14/3), symmetric right edge.
    assert s.tokens[:, 0].float().mean() == pytest.approx(14 / 3, abs=0.15)
    assert s.tokens[:, 2].float().mean() == pytest.approx(15 - 14 / 3, abs=0.15)
    assert torch.allclose(s.logprobs, torch.full((4000,), -2 * math.log(16 * 15 / 2)))
    # Continuous variant, batched call with size pairs.
    many = RandomBoxes(num_bins=None).sample([(50, 40), (20, 10)], ["a", "b"], num_samples=100, generator=g)
    assert len(many) == 2 and many[1].boxes[:, 2].max() <= 20 and many[1].tokens is None


def test_class_prior_draws_boxes_of_the_class_rescaled():
    train = [query("cup", pos=((10, 10, 20, 20),), size=(100, 100)),
             query("dog", pos=((0, 50, 50, 100), (50, 50, 100, 100)), size=(100, 100)),
             query("bird", pos=((0, 0, 10, 10),), width=None, size=(100, 100)),  # size from the image
             PlacementQuery("cat", torch.tensor([[0, 0, 5, 5.]]), torch.zeros(0, 4))]  # size unknown
    prior = ClassPrior.fit(train)
    assert prior.skipped == 1 and sorted(prior.boxes_by_class) == ["bird", "cup", "dog"]
    g = torch.Generator().manual_seed(0)
    s = prior.sample(Image.new("RGB", (200, 50)), " Cup ", num_samples=5, generator=g)
    assert torch.equal(s.boxes, torch.tensor([[20.0, 5.0, 40.0, 10.0]] * 5))  # cup box rescaled to 200x50
    assert torch.allclose(s.logprobs, torch.zeros(5))
    d = prior.sample((100, 100), "dog", num_samples=200, generator=g).boxes
    assert {tuple(r) for r in d.tolist()} == {(0.0, 50.0, 50.0, 100.0), (50.0, 50.0, 100.0, 100.0)}
    unseen = prior.sample((100, 100), "giraffe", num_samples=300, generator=g).boxes
    assert len({tuple(r) for r in unseen.tolist()}) == 4  # falls back to all classes' boxes
    with pytest.raises(ValueError, match="region"):
        prior.sample((100, 100), "dog", region=(0, 0, 10, 10))
    with pytest.raises(ValueError, match="no query"):
        ClassPrior.fit([train[3]])


def test_baseline_errors_and_factory():
    with pytest.raises(ValueError, match="one class per image"):
        RandomBoxes().sample([(10, 10)], ["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        RandomBoxes().sample((10, 10), " ")
    with pytest.raises(ValueError, match="num_samples"):
        RandomBoxes().sample((10, 10), "a", num_samples=0)
    with pytest.raises(ValueError, match="training queries"):
        make_baseline("prior")
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("oracle")
    assert isinstance(make_baseline("random", num_bins=4), RandomBoxes)


def test_evaluate_rejects_bad_input():
    with pytest.raises(ValueError, match="no queries"):
        evaluate(RandomBoxes(), [], progress=False)
    with pytest.raises(ValueError, match="ks"):
        evaluate(RandomBoxes(), [query()], ks=[0, 10], progress=False)
    with pytest.raises(TypeError, match="sample"):
        evaluate(object(), [query()], progress=False)

    class OneResult:
        def sample(self, images, classes, num_samples=100, generator=None):
            return []

    with pytest.raises(TypeError, match="one result per image"):
        evaluate(OneResult(), [query()], progress=False)


def test_synthetic_queries_get_oracle_precision_and_coverage_per_k():
    from locinsert.data import synthetic

    queries = synthetic.test_split(6, seed=3)
    prior = ClassPrior.fit(synthetic.opa_like(40, seed=3))
    curve = evaluate(prior, queries, ks=[5, 40], seed=0, progress=False)
    g = torch.Generator().manual_seed(0)  # evaluate() draws with one generator seeded by `seed`
    boxes = [s.boxes for s in prior.sample([(q.width, q.height) for q in queries], [q.category for q in queries],
                                           num_samples=40, generator=g)]
    for k in (5, 40):
        prefix = [b[:k] for b in boxes]
        p = curve.at(k)
        assert p.oracle_precision == pytest.approx(synthetic.oracle_precision(queries, prefix))
        assert p.coverage == pytest.approx(synthetic.coverage(queries, prefix, iou=0.5))
        per_class = synthetic.coverage(queries, prefix, iou=0.5, per_class=True)
        for cat, c in curve.per_category.items():
            assert c.at(k).coverage == pytest.approx(per_class[cat], nan_ok=True)
    assert curve.at(40).coverage > curve.at(5).coverage > 0
    assert 0 < curve.at(40).oracle_precision < 1
    # Labelled-only data has no oracle; asking for it is an error, not a silent omission.
    assert not evaluate(prior, [query()], ks=[5], progress=False).has_oracle
    with pytest.raises(ValueError, match="oracle"):
        evaluate(prior, [query()], ks=[5], progress=False, oracle=True)


def test_baseline_image_size_follows_exif_rotation():
    """Baselines must size boxes in the upright frame that load_image (and the models) use."""
    import io

    from locinsert.evaluation.baselines import image_size

    im = Image.new("RGB", (40, 20))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    buf.seek(0)
    assert image_size(Image.open(buf)) == (20, 40)
    assert image_size((40, 20)) == (40, 20)


def test_oracle_coverage_with_fewer_samples_than_k():
    """A query with fewer than K boxes: the missing samples must not count as hits."""
    from locinsert.data import synthetic

    queries = synthetic.test_split(4, seed=1)
    boxes = [torch.tensor([[0.0, 0.0, 2.0, 2.0]]) for _ in queries]  # one useless box each
    curve = evaluate_boxes(boxes, queries, ks=[1, 10], per_category=False)
    expected = synthetic.coverage(queries, boxes, iou=0.5)
    assert curve.at(1).coverage == pytest.approx(expected)
    assert curve.at(10).coverage == pytest.approx(expected)
