"""The demo's removal-and-move section on its own, with an untrained synthetic model: numbers and pictures."""

import json

import numpy as np

from locinsert.demo.removal import measure_removal, removal_section, report_lines
from locinsert.training.synthetic import synthetic_test_queries


def test_measured_fill_beats_keeping_the_object_for_every_kind():
    q = measure_removal(30, seed=3)
    assert q["all"]["n"] == 30 and sum(r["n"] for k, r in q.items() if k != "all") == 30
    for name, r in q.items():
        assert r["psnr_median"] > r["psnr_kept_median"], name
        assert r["ssim_mean"] > r["ssim_kept_mean"], name
        assert 0.0 <= r["exact"] <= 1.0


def test_section_writes_pictures_and_a_report_table(tmp_path, model):
    test = synthetic_test_queries("quick", 0, 32)
    sec = removal_section(model, test, tmp_path / "removal", "quick", seed=0, examples=8)
    json.dumps(sec)
    assert (tmp_path / "removal_edits.png").exists()
    done = [e for e in sec["edits"] if "error" not in e]
    assert [e["steps"][0]["verb"] for e in done] == ["remove", "move", "remove", "move"][:len(done)]
    assert all(e["found"] for e in done)
    text = "\n".join(report_lines(sec))
    assert "| all | 8 |" in text and "(removal_edits.png)" in text
    assert np.isfinite(sec["quality"]["all"]["ssim_mean"])
