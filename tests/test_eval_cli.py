"""`locinsert eval`: baselines on the synthetic world and on a real-format OPA archive, outputs, determinism."""

import pytest
import csv
import json

from PIL import Image

from locinsert.cli.main import main
from locinsert.evaluation import Curve

SMALL = ["--dataset", "synthetic", "--num-scenes", "4", "--train-scenes", "20", "-k", "5,10", "--no-progress"]


def _eval(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["eval", "--out", str(out), *SMALL, *extra]) == 0
    return out


@pytest.mark.slow
def test_random_on_synthetic_writes_json_csv_png_and_is_deterministic(tmp_path, capsys):
    a = _eval(tmp_path, "a", "--model", "random", "--seed", "3")
    b = _eval(tmp_path, "b", "--model", "random", "--seed", "3")
    c = _eval(tmp_path, "c", "--model", "random", "--seed", "4")
    curve = Curve.from_json(a / "curve.json")
    assert curve.name == "random" and curve.ks == [5, 10] and curve.count == "labels"
    assert curve.meta["dataset"].startswith("synthetic test split") and curve.meta["seed"] == 3
    assert curve.at(10).num_predictions == 10 * curve.meta["num_queries"]
    assert curve.at(10).coverage is not None and curve.per_category
    assert json.loads((a / "curve.json").read_text()) == json.loads((b / "curve.json").read_text())
    other = Curve.from_json(c / "curve.json")  # another seed draws other boxes
    assert [p.coverage for p in curve.points] != [p.coverage for p in other.points]
    with Image.open(a / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 400
    rows = list(csv.DictReader(open(a / "per_category.csv")))
    assert {r["category"] for r in rows} == set(curve.per_category) and {r["k"] for r in rows} == {"5", "10"}
    assert "oracle-prec" in capsys.readouterr().out


@pytest.mark.slow
def test_prior_with_compare_and_paper(tmp_path):
    a = _eval(tmp_path, "random", "--model", "random")
    p = _eval(tmp_path, "prior", "--model", "prior", "--compare", str(a / "curve.json"), "--paper", "all",
              "--name", "class prior")
    curve = Curve.from_json(p / "curve.json")
    assert curve.name == "class prior" and curve.meta["model"] == "prior"
    # On the synthetic world the class prior finds more true placements than uniform boxes.
    assert curve.at(10).coverage > Curve.from_json(a / "curve.json").at(10).coverage
    assert (p / "curves.png").stat().st_size > 10_000


def test_bad_inputs_give_one_clear_error(tmp_path, capsys):
    assert main(["eval", "--model", "random", *SMALL, "--compare", str(tmp_path / "nope.json"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "no curve file" in capsys.readouterr().err
    assert main(["eval", "--model", "random", *SMALL, "-k", "0", "--out", str(tmp_path / "x")]) == 2
    assert "argument -k/--ks: every value must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["eval", "--model", "random", "--dataset", str(tmp_path), "--no-progress"]) == 2
    assert "error" in capsys.readouterr().err


def test_baselines_on_a_real_format_opa_archive(tmp_path):
    from helpers_data import build_opa_archive

    root = tmp_path / "opa"
    build_opa_archive(root, split="test", malformed=False)
    build_opa_archive(root, split="train", malformed=False)
    for model in ("random", "prior"):
        out = tmp_path / model
        assert main(["eval", "--model", model, "--dataset", str(root), "--out", str(out), "-k", "10,100",
                     "--no-progress", "--iou", "0.3"]) == 0
        curve = Curve.from_json(out / "curve.json")
        p = curve.at(100)
        assert curve.meta["dataset"].startswith("OPA test") and curve.iou_threshold == 0.3
        assert p.num_positives > 0 and p.num_negatives > 0 and not curve.has_oracle
        assert set(curve.per_category) <= {"cow", "sheep", "airplane", "zebra"}
    # The prior is fitted on the same labels here, so it must hit some of them.
    assert Curve.from_json(tmp_path / "prior" / "curve.json").at(100).tpr > 0


def test_a_saved_location_model_loads_through_from_pretrained(tmp_path, tiny_model_dir):
    ckpt = tiny_model_dir
    out = tmp_path / "model"
    assert main(["eval", "--model", str(ckpt), "--out", str(out), "--dataset", "synthetic", "--num-scenes", "2",
                 "-k", "2,4", "--batch-size", "3", "--no-progress"]) == 0
    curve = Curve.from_json(out / "curve.json")
    assert curve.name == "tiny" and curve.meta["model"] == str(ckpt)
    assert curve.at(4).num_predictions == 4 * curve.meta["num_queries"] > 0
    assert curve.at(4).oracle_precision is not None


@pytest.mark.slow
def test_fopa_pair_labels_with_an_image_root(tmp_path, capsys):
    from helpers_data import OPA_LABELS, OPA_TEST_FOREGROUNDS, build_opa_archive

    root = tmp_path / "opa"
    build_opa_archive(root, split="test", malformed=False)
    cats = tmp_path / "categories.json"
    cats.write_text(json.dumps(OPA_TEST_FOREGROUNDS))
    pairs = str(OPA_LABELS / "test_data_pair.csv")
    out = tmp_path / "pairs"
    assert main(["eval", "--model", "random", "--dataset", pairs, "--images", str(root), "--categories", str(cats),
                 "--out", str(out), "-k", "50", "--no-progress"]) == 0
    curve = Curve.from_json(out / "curve.json")
    assert set(curve.per_category) == {"cow", "sheep", "airplane", "zebra"}
    assert curve.at(50).num_predictions == 50 * curve.meta["num_queries"]
    assert "missing_image" in capsys.readouterr().out  # the reader's skip report is shown
    # Labels alone: no image sizes, so even a baseline cannot place boxes; one clear error.
    assert main(["eval", "--model", "random", "--dataset", pairs, "--out", str(out), "--no-progress",
                 "--max-queries", "3"]) == 2
    assert "image" in capsys.readouterr().err
    # The prior must not be fitted on the evaluated CSV itself.
    assert main(["eval", "--model", "prior", "--dataset", pairs, "--images", str(root), "--out", str(out),
                 "--no-progress"]) == 2
    assert "--prior-train" in capsys.readouterr().err
