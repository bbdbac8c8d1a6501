"""Positional prompts: exact conditional sampling, region_mass, the two likelihoods, fit verdicts, strict mode."""

import itertools
import json

import numpy as np
import pytest
import torch

from locinsert import Region
from locinsert.editing.positional import calibrate_threshold, roc_auc
from locinsert.fit import FitVerdict, RegionDoesNotFit, fit_verdict
from locinsert.editing.inserter import ObjectInserter
from locinsert.modeling import LocationModel, LocationModelConfig

IMAGE = (np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)
BINS = 5


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A tiny random model with a sharpened head (far from uniform), saved and loaded like a hub checkpoint."""
    torch.manual_seed(3)
    m = LocationModel(LocationModelConfig.preset("tiny", num_bins=BINS)).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(12)
    path = tmp_path_factory.mktemp("pos") / "model"
    m.save_pretrained(path)
    return LocationModel.from_pretrained(path)


@pytest.fixture(scope="module")
def every_box(small_model):
    """Every valid box of the 5-bin grid, and its index by tokens."""
    tokens = torch.tensor(list(itertools.product(range(BINS), repeat=4)))
    boxes = small_model.tokens_to_boxes(tokens, 40, 40)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    index = {tuple(t): i for i, t in enumerate(small_model.boxes_to_tokens(boxes, 40, 40).tolist())}
    return boxes, index


def exact_conditional(m, boxes, region):
    """p(box | box in region), by enumeration."""
    p = m.score(IMAGE, "dog", boxes, region=region, likelihood="log_p").double().exp().numpy()
    return p / p.sum()


REGIONS = [Region((0.0, 0.0, 0.5, 1.0), mode="center"), Region((0.4, 0.4, 1.0, 1.0), mode="inside")]


@pytest.mark.parametrize("region", REGIONS, ids=["centre-left", "inside-corner"])
def test_default_sampler_follows_the_exact_conditional(small_model, every_box, region):
    m = small_model
    boxes, index = every_box
    p = exact_conditional(m, boxes, region)
    q = m.score(IMAGE, "dog", boxes, region=region, likelihood="log_q").double().exp().numpy()
    assert 0.5 * np.abs(p - q).sum() > 0.1  # the masked proposal is far off: the test has teeth
    n = 6000
    counts = {}
    for sampler in ("smc", "masked"):
        s = m.sample(IMAGE, "dog", num_samples=n, region=region, sampler=sampler,
                     generator=torch.Generator().manual_seed(0))
        counts[sampler] = np.bincount([index[tuple(t)] for t in s.tokens.tolist()], minlength=len(boxes)) / n
    tv_smc = 0.5 * np.abs(counts["smc"] - p).sum()
    tv_masked = 0.5 * np.abs(counts["masked"] - p).sum()
    assert counts["smc"][p == 0].sum() == 0
    assert tv_smc < 0.05 and tv_smc < tv_masked / 2, (tv_smc, tv_masked)
    # the default is the exact sampler
    s = m.sample(IMAGE, "dog", num_samples=n, region=region, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s.tokens, m.sample(IMAGE, "dog", num_samples=n, region=region, sampler="smc",
                                          generator=torch.Generator().manual_seed(0)).tokens)


def test_smc_without_the_lookahead_follows_the_exact_conditional(small_model, every_box, monkeypatch):
    """Where the x1 lookahead is too dear (many bins, few samples), SMC resamples before y1 as well."""
    from locinsert.modeling import sampling

    monkeypatch.setattr(sampling, "lookahead_is_cheap", lambda bins, n: False)
    m = small_model
    boxes, index = every_box
    region = REGIONS[1]
    p = exact_conditional(m, boxes, region)
    n = 6000
    s = m.sample(IMAGE, "dog", num_samples=n, region=region, generator=torch.Generator().manual_seed(4))
    c = np.bincount([index[tuple(t)] for t in s.tokens.tolist()], minlength=len(boxes)) / n
    assert 0.5 * np.abs(c - p).sum() < 0.05
    exact_mass = m.score(IMAGE, "dog", boxes, region=region).double().exp().sum().item()
    assert abs(s.region_mass - exact_mass) < 0.15 * exact_mass


def test_lookahead_importance_resampling_also_reaches_the_conditional(small_model, every_box):
    m = small_model
    boxes, index = every_box
    region = REGIONS[0]
    p = exact_conditional(m, boxes, region)
    n = 4000
    s = m.sample(IMAGE, "dog", num_samples=n, region=region, sampler="lookahead", resample=8,
                 generator=torch.Generator().manual_seed(1))
    c = np.bincount([index[tuple(t)] for t in s.tokens.tolist()], minlength=len(boxes)) / n
    assert 0.5 * np.abs(c - p).sum() < 0.06


def test_samples_carry_both_likelihoods_named(small_model):
    m = small_model
    region = REGIONS[0]
    s = m.sample(IMAGE, "dog", num_samples=30, region=region, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s.log_p, m.score(IMAGE, "dog", s.boxes, likelihood="log_p"), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s.log_q, m.score(IMAGE, "dog", s.boxes, region=region, likelihood="log_q"),
                               atol=1e-4, rtol=1e-4)
    assert torch.all(s.log_q >= s.log_p - 1e-5)  # renormalising over fewer tokens only raises a probability
    assert torch.equal(s.logprobs, s.log_p)      # the alias is log p
    assert torch.equal(s.best(1)[0], s.boxes[s.log_p.argmax()])
    # the older spelling maps onto the names; contradicting them is an error
    torch.testing.assert_close(m.score(IMAGE, "dog", s.boxes, region=region, constrained=True), s.log_q,
                               atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="contradicts"):
        m.score(IMAGE, "dog", s.boxes, constrained=True, likelihood="log_p")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        m.score(IMAGE, "dog", s.boxes, likelihood="q")
    # a box outside the region has no probability there under either likelihood
    outside = torch.tensor([[30.0, 4.0, 36.0, 20.0]])
    for kind in ("log_p", "log_q"):
        assert m.score(IMAGE, "dog", outside, region=region, likelihood=kind)[0] == float("-inf")


@pytest.mark.parametrize("region", REGIONS, ids=["centre-left", "inside-corner"])
def test_region_mass_matches_enumeration_within_its_standard_error(small_model, every_box, region):
    m = small_model
    boxes, _ = every_box
    p_region = m.score(IMAGE, "dog", boxes, region=region, likelihood="log_p").double().exp().sum().item()
    est = m.region_mass(IMAGE, "dog", region, num_samples=2000, generator=torch.Generator().manual_seed(0))
    assert isinstance(est, float) and 0.0 <= est <= 1.0
    assert 0 < est.stderr < 0.5 * est and est.num_samples == 2000
    assert abs(est - p_region) < 4 * est.stderr, (float(est), p_region, est.stderr)
    # the whole image holds all the valid mass
    valid = m.score(IMAGE, "dog", boxes, likelihood="log_p").double().exp().sum().item()
    whole = m.region_mass(IMAGE, "dog", Region((0, 0, 1, 1)), num_samples=500, generator=torch.Generator().manual_seed(0))
    assert abs(whole - valid) < 4 * whole.stderr + 1e-6
    # the exact sampler's own estimate agrees too
    s = m.sample(IMAGE, "dog", num_samples=4000, region=region, generator=torch.Generator().manual_seed(2))
    assert abs(s.region_mass - p_region) < 0.15 * p_region


BAD_MASS_ARGS = [
    (dict(region=None), ValueError, "needs a region"),
    (dict(num_samples=0), ValueError, "num_samples must be"),
    (dict(num_samples=2.5), ValueError, "num_samples must be a whole number"),
    (dict(min_size=-1), ValueError, "min_size must be"),
    (dict(generator=5), TypeError, "generator must be a torch.Generator"),
    (dict(region=(0.9, 0.9, 0.95, 0.95)), ValueError, "no box can satisfy region"),
    (dict(region=5), TypeError, "region must be a phrase"),
    (dict(cls=""), ValueError, "class name is empty"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_MASS_ARGS, ids=[m for _, _, m in BAD_MASS_ARGS])
def test_region_mass_validates_like_sample(small_model, kwargs, error, message):
    kw = dict(region="left", cls="dog", num_samples=8)
    kw.update(kwargs)
    cls = kw.pop("cls")
    with pytest.raises(error, match=message):
        small_model.region_mass(IMAGE, cls, **kw)


def test_sampler_argument_is_checked(small_model):
    with pytest.raises(ValueError, match="sampler must be one of"):
        small_model.sample(IMAGE, "dog", num_samples=2, sampler="beam")
    with pytest.raises(ValueError, match="already targets the exact conditional"):
        small_model.sample(IMAGE, "dog", num_samples=2, sampler="smc", resample=2)


def test_fit_verdict_names_the_best_alternative(small_model):
    m = small_model
    # threshold 1: nothing fits, so the verdict names where the model puts the most probability
    v = fit_verdict(m, IMAGE, "chair", "on the right", threshold=1.0, generator=torch.Generator().manual_seed(0))
    assert not v.fits and v.best is not None and v.best != "on the right" and v.best_mass > 0
    assert v.message.startswith("a chair hardly fits on the right here (")
    assert f"it fits best {v.best}" in v.message
    d = v.to_dict()
    assert d["fits"] is False and d["best_alternative"] == v.best and json.dumps(d)
    ok = fit_verdict(m, IMAGE, "apple", "on the left", threshold=0.0, generator=torch.Generator().manual_seed(0))
    assert ok.fits and ok.best is None and ok.message.startswith("an apple fits on the left here")
    assert fit_verdict(m, IMAGE, "cup", None) is None and fit_verdict(m, IMAGE, "cup", Region(None, avoid=[[0, 0, 5, 5]])) is None
    with pytest.raises(ValueError, match="fit threshold must be"):
        fit_verdict(m, IMAGE, "cup", "left", threshold=2)


def test_strict_inserter_refuses_and_default_places_anyway(small_model):
    m = small_model
    loose = ObjectInserter(m, None, num_candidates=4, fit_threshold=1.0)
    cands = loose.propose(IMAGE, "chair", "on the right", generator=torch.Generator().manual_seed(0))
    assert len(cands) == 4 and cands.fit is not None and not cands.fit.fits
    assert torch.all((cands.boxes[:, 0] + cands.boxes[:, 2]) / 2 >= 20)  # still inside the asked region
    assert "fit" in cands.to_dict() and "log_q" in cands.to_dict()
    strict = ObjectInserter(m, None, num_candidates=4, fit_threshold=1.0, strict=True)
    with pytest.raises(RegionDoesNotFit, match="hardly fits on the right .* try") as e:
        strict.propose(IMAGE, "chair", "on the right", generator=torch.Generator().manual_seed(0))
    assert isinstance(e.value, ValueError) and e.value.verdict.best in str(e.value)
    # a region the object fits passes in strict mode
    assert ObjectInserter(m, None, num_candidates=2, fit_threshold=0.0, strict=True).propose(
        IMAGE, "chair", "on the right").fit.fits
    with pytest.raises(ValueError, match="needs check_fit=True"):
        ObjectInserter(m, None, strict=True, check_fit=False)


@pytest.mark.parametrize("region", [None] + REGIONS, ids=["none", "centre-left", "inside-corner"])
def test_refine_climbs_log_p_to_a_local_maximum_inside_the_region(small_model, every_box, region):
    m = small_model
    gen = torch.Generator().manual_seed(1)
    starts = m.sample(IMAGE, "dog", num_samples=6, region=region, generator=gen)
    for start, lp0 in zip(starts.boxes, starts.log_p):
        box, lp = m.refine(IMAGE, "dog", start, region=region)
        assert lp >= float(lp0) - 1e-5
        assert abs(lp - float(m.score(IMAGE, "dog", box[None], region=region)[0])) < 1e-4  # its true log p
        assert lp > float("-inf")  # still satisfies the region
        # one-coordinate moves are among refine's, so no single-coordinate neighbour beats it
        boxes, _ = every_box
        tok, all_tok = m.boxes_to_tokens(box[None], 40, 40)[0], m.boxes_to_tokens(boxes, 40, 40)
        one = ((all_tok - tok).abs().sum(1) == 1)
        assert (m.score(IMAGE, "dog", boxes[one], region=region) <= lp + 1e-4).all()
    # zero steps: the box back as it was
    box, lp = m.refine(IMAGE, "dog", starts.boxes[0], region=region, max_steps=0)
    assert torch.allclose(box, starts.boxes[0]) and abs(lp - float(starts.log_p[0])) < 1e-4


def test_refine_checks_its_arguments(small_model):
    m = small_model
    with pytest.raises(ValueError, match="one box"):
        m.refine(IMAGE, "dog", [[0, 0, 10, 10], [0, 0, 20, 20]])
    with pytest.raises(ValueError, match="max_steps"):
        m.refine(IMAGE, "dog", [0, 0, 10, 10], max_steps=-1)
    with pytest.raises(ValueError, match="one class"):
        m.refine(IMAGE, ["dog", "cat"], [0, 0, 10, 10])


def test_inserter_refines_its_most_likely_candidate(small_model):
    m = small_model
    region = "on the left"
    plain = ObjectInserter(m, None, num_candidates=8, refine=False, check_fit=False)
    refined = ObjectInserter(m, None, num_candidates=8, check_fit=False)
    a = plain.propose(IMAGE, "dog", region, generator=torch.Generator().manual_seed(4))
    b = refined.propose(IMAGE, "dog", region, generator=torch.Generator().manual_seed(4))
    i = int(torch.argmax(a.log_p))
    box, lp = m.refine(IMAGE, "dog", a.boxes[i], region=region)
    assert torch.allclose(b.boxes[i], box) and abs(float(b.log_p[i]) - lp) < 1e-4
    others = torch.arange(8) != i
    assert torch.equal(b.boxes[others], a.boxes[others])  # the other candidates stay samples
    expect_q = m.score(IMAGE, "dog", box[None], region=region, likelihood="log_q")[0]
    assert torch.allclose(b.log_q[i], expect_q, atol=1e-4)
    with pytest.raises(TypeError, match="refine must be True or False"):
        ObjectInserter(m, None, refine="yes")


def test_roc_auc_and_calibration():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    cal = calibrate_threshold([0.5, 0.3, 0.05, 0.001, 0.002, 0.04], [True, True, True, False, False, False])
    assert 0.002 < cal["threshold"] < 0.05 and cal["kept"] == 1.0 and cal["flagged"] == 1.0
    with pytest.raises(ValueError, match="both fitting and hopeless"):
        calibrate_threshold([0.1, 0.2], [True, True])


def test_bare_phrases_get_their_preposition():
    from locinsert.fit import describe_region

    said = {p: describe_region(Region.parse(p)) for p in ("left", "top left", "top", "center", "near the top",
                                                           "on the right side", "the bottom right corner")}
    assert said == {"left": "on the left", "top left": "in the top left", "top": "at the top",
                    "center": "in the center", "near the top": "near the top", "on the right side": "on the right side",
                    "the bottom right corner": "in the bottom right corner"}
    assert describe_region(Region((0, 0, 10, 10))) == "in the given region"


def test_verdict_message_formats_small_shares():
    v = FitVerdict("cup", "in the top left corner", 0.004, 0.001, 0.02, "on the right", 0.71)
    assert v.message == ("a cup hardly fits in the top left corner here (0.4 % of the model's probability); "
                         "it fits best on the right (71 %)")


# -- the CLI ------------------------------------------------------------------------------------

@pytest.fixture
def cli_files(small_model, tmp_path):
    from PIL import Image

    path = tmp_path / "room.png"
    Image.fromarray(IMAGE).save(path)
    model = tmp_path / "model"
    small_model.save_pretrained(model)
    return str(path), str(model)


def test_propose_reports_the_fit_and_strict_exits_2(cli_files, tmp_path, capsys):
    from locinsert.cli.main import main

    image, model = cli_files
    out = tmp_path / "p"
    assert main(["propose", image, "--object", "cup", "--where", "right", "-n", "4", "--model", model,
                 "--fit-threshold", "1", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    rec = json.loads((out / "room_proposals.json").read_text())
    assert rec["sampler"] == "smc" and len(rec["log_p"]) == len(rec["log_q"]) == 4
    fit = rec["fit"]
    assert fit["fits"] is False and fit["threshold"] == 1.0 and 0 <= fit["region_mass"] <= 1
    assert fit["best_alternative"] and fit["message"] in said and "hardly fits on the right" in said
    assert main(["propose", image, "--object", "cup", "--where", "right", "-n", "4", "--model", model,
                 "--fit-threshold", "1", "--strict", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    best = fit["best_alternative"]
    assert "error: a cup hardly fits on the right" in err and f'try "{best}" instead' in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "q" / "room_proposals.json").exists()
    assert main(["propose", image, "--object", "cup", "--where", "right", "--model", model,
                 "--fit-threshold", "3", "--out", str(out)]) == 2
    assert "--fit-threshold" in (err := capsys.readouterr().err) and "got 3" in err


def test_propose_refines_the_most_likely_box_unless_told_not_to(cli_files, small_model, tmp_path):
    from locinsert.cli.main import main

    image, model = cli_files
    runs = {}
    for flag in ([], ["--no-refine"]):
        out = tmp_path / ("r" if not flag else "n")
        assert main(["propose", image, "--object", "cup", "--where", "left", "-n", "6", "--model", model,
                     "--out", str(out), *flag]) == 0
        runs[bool(flag)] = json.loads((out / "room_proposals.json").read_text())
    plain, refined = runs[True], runs[False]
    top = torch.tensor(plain["boxes"][0])     # listed best first
    box, lp = small_model.refine(IMAGE, "cup", top, region="left")
    assert torch.allclose(torch.tensor(refined["boxes"][0]), box) and abs(refined["log_p"][0] - lp) < 1e-4
    assert refined["log_p"][0] >= plain["log_p"][0]
    assert sorted(map(tuple, refined["boxes"][1:])) == sorted(map(tuple, plain["boxes"][1:]))


def test_insert_and_edit_strict_exit_2_and_json_fit(cli_files, tmp_path, capsys):
    from locinsert.cli.main import main

    image, model = cli_files
    out = tmp_path / "i"
    assert main(["insert", image, "add a chair on the left", "--model", model, "-n", "3", "--fit-threshold", "0",
                 "--out", str(out)]) == 0
    step = json.loads((out / "room_insert.json").read_text())["steps"][0]
    assert step["fit"]["fits"] is True and "log_p" in step and "fits on the left" in capsys.readouterr().out
    assert main(["insert", image, "add a chair on the left", "--model", model, "-n", "3", "--fit-threshold", "1",
                 "--strict", "--out", str(tmp_path / "j")]) == 2
    assert "hardly fits on the left" in capsys.readouterr().err
    assert main(["edit", image, "add a chair on the left", "--model", model, "-n", "3", "--fit-threshold", "1",
                 "--strict", "--out", str(tmp_path / "k")]) == 2
    assert "hardly fits on the left" in capsys.readouterr().err


def test_editor_move_reports_the_fit_and_strict_refuses(small_model):
    from locinsert.editing.editor import ObjectEditor

    mask = np.zeros((40, 40), bool)
    mask[30:38, 2:10] = True
    loose = ObjectEditor(small_model, fit_threshold=1.0, num_candidates=3)
    res = loose.move(IMAGE, "on the right", "box", mask=mask, generator=torch.Generator().manual_seed(0))
    step = res.steps[0]
    assert step.fit is not None and not step.fit.fits and step.to_dict()["fit"]["best_alternative"]
    assert (step.box[0] + step.box[2]) / 2 >= 20
    strict = ObjectEditor(small_model, fit_threshold=1.0, num_candidates=3, strict=True)
    with pytest.raises(RegionDoesNotFit, match="a box hardly fits on the right"):
        strict.move(IMAGE, "on the right", "box", mask=mask, generator=torch.Generator().manual_seed(0))


def test_a_model_carries_its_own_fit_threshold(small_model, tmp_path):
    """config.fit_threshold (written by save_fit_threshold) survives loading and is what fit verdicts use
    unless a threshold is given."""
    from locinsert.fit import DEFAULT_FIT_THRESHOLD, model_fit_threshold, save_fit_threshold

    assert small_model.config.fit_threshold is None and model_fit_threshold(small_model) == DEFAULT_FIT_THRESHOLD
    path = tmp_path / "calibrated"
    small_model.save_pretrained(path)
    assert save_fit_threshold(path, 0.99999) == 1.0   # nothing fits: the verdict must follow the model's threshold
    m = LocationModel.from_pretrained(path)
    assert m.config.fit_threshold == 1.0 and model_fit_threshold(m) == 1.0 and model_fit_threshold(m, 0.25) == 0.25
    assert ObjectInserter(m, None).fit_threshold == 1.0 and ObjectInserter(m, None, fit_threshold=0.0).fit_threshold == 0.0
    v = fit_verdict(m, IMAGE, "cup", "on the left", generator=torch.Generator().manual_seed(0))
    assert v.threshold == 1.0 and not v.fits
    assert fit_verdict(m, IMAGE, "cup", "on the left", threshold=0.0).fits
    with pytest.raises(ValueError, match="fit_threshold must be"):
        LocationModelConfig.preset("tiny", fit_threshold=1.5)
    with pytest.raises(ValueError, match="no config.json"):
        save_fit_threshold(tmp_path / "nothing", 0.1)


def test_eval_calibrates_and_saves_the_threshold_into_the_checkpoint(tmp_path, capsys):
    """`locinsert eval --positional --calibrate --save-threshold` writes config.json's fit_threshold (atomically),
    and the next benchmark of that model uses it."""
    from locinsert.cli.main import main

    torch.manual_seed(0)
    model = tmp_path / "model"
    LocationModel(LocationModelConfig.preset("tiny", num_bins=32)).eval().save_pretrained(model)
    before = json.loads((model / "config.json").read_text())
    common = ["eval", "--model", str(model), "--positional", "--num-scenes", "6", "--max-queries", "4", "-n", "2",
              "--world-seed", "1", "--no-progress"]
    assert main([*common, "--calibrate", "--save-threshold", "--out", str(tmp_path / "cal")]) == 0
    said = capsys.readouterr().out
    cal = json.loads((tmp_path / "cal" / "positional.json").read_text())["calibration"]
    after = json.loads((model / "config.json").read_text())
    assert after["fit_threshold"] == round(cal["threshold"], 3) and "wrote fit_threshold" in said
    assert {k: v for k, v in after.items() if k != "fit_threshold"} == {k: v for k, v in before.items()
                                                                        if k != "fit_threshold"}
    assert not [p for p in model.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert LocationModel.from_pretrained(model).config.fit_threshold == after["fit_threshold"]
    assert main([*common, "--out", str(tmp_path / "again")]) == 0
    summary = json.loads((tmp_path / "again" / "positional.json").read_text())["summary"]
    assert summary["threshold"] == after["fit_threshold"]
    # --save-threshold alone is a user's mistake: one line, exit 2
    capsys.readouterr()
    assert main([*common, "--save-threshold", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "add --calibrate" in err and len(err.strip().splitlines()) == 1
