"""`locinsert demo --quick`: the main job runs end to end offline and writes a complete report."""

import json

import pytest
from PIL import Image

from locinsert.cli.main import main


@pytest.mark.slow
def test_demo_quick_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0

    report = (out / "report.md").read_text()
    for picture in ("data_scenes.png", "tpr_fpr.png", "samples.png", "edits.png", "removal_edits.png"):
        assert f"({picture})" in report, f"report.md does not show {picture}"
        with Image.open(out / picture) as im:
            assert im.width > 200 and im.height > 100

    metrics = json.loads((out / "metrics.json").read_text())
    methods = [r["method"] for r in metrics["table"]]
    assert methods == ["random", "class prior", "pretrained (PIPE-like)", "fine-tuned (no DPO)", "DPO",
                       "DPO, images shuffled"]
    for row in metrics["table"]:
        assert 0.0 <= row["tpr@10"] <= row["tpr@100"] <= 1.0  # K=10 is a prefix of the K=100 samples
        assert 0.0 <= row["oracle_precision@100"] <= 1.0
        # The report's table is this run's numbers, not a file's.
        assert f"| {row['method']} | {row['oracle_precision@100']:.3f} |" in report
    assert len(list((out / "curves").glob("*.json"))) == 6
    assert "| method | all | bird | chair | cup | painting | plant |" in report  # per-class precision
    assert set(metrics["training"]) == {"encoder", "pretrain", "finetune", "dpo"}
    assert all(v["examples"] > 0 and v["examples_per_s"] > 0 for v in metrics["training"].values())

    # The three trained stages are real checkpoints, loadable the Hugging Face way.
    from locinsert import LocationModel

    for stage in ("pretrain", "finetune", "dpo"):
        LocationModel.from_pretrained(out / "models" / stage / "final")

    edits = [e for e in metrics["edits"] if "error" not in e]
    assert edits, metrics["edits"]
    for e in edits:
        assert (out / e["image"]).exists() and (out / e["overlay"]).exists()
        assert all(v > 0.999 for v in e["background_ssim"])  # nothing outside the boxes changed
    assert metrics["removal"]["quality"]["all"]["n"] > 0 and "## Removal and moving" in report

    # The app's segmenter is trained too, measured, and found by the app with no flags.
    from locinsert.demo.textmask import find_demo_segmenter

    assert find_demo_segmenter(out) == out / "models" / "textmask" / "final"
    assert metrics["textmask"]["quality"]["text mask model"]["all"]["n"] > 0
    assert "## Finding objects by name" in report
    # Every step has its wall and CPU seconds, in metrics.json and in the report's time table.
    assert set(metrics["cpu_seconds"]) == set(metrics["seconds"])
    assert "| step | seconds | CPU seconds |" in report
    assert all(f"| {step}" in report for step in metrics["seconds"])  # a row per step
    # With a thread to spare the segmenter trains in a second process, beside pretraining; with one
    # (OMP_NUM_THREADS=1, one core) it trains after the location stages.
    from locinsert.threads import thread_budget

    beside = metrics["textmask"].get("beside", False)
    assert beside == (thread_budget() > 1)
    assert ("| train_textmask (in a second process, beside pretraining) |" if beside else "| train_textmask |") in report
    assert "train_textmask" in metrics["seconds"] and "wall_seconds" not in metrics["textmask"]
    assert "cpu_seconds" not in metrics["textmask"]
    # The positional-prompt benchmark likewise runs beside the evaluation when a thread is free.
    assert metrics["positional"].get("beside", False) == beside
    assert ("| positional (in a second process, beside the evaluation) |" if beside else "| positional |") in report
    assert (out / "positional.png").is_file() and metrics["positional"]["requests"] > 0
    assert {"wall_seconds", "cpu_seconds"}.isdisjoint(metrics["positional"])
