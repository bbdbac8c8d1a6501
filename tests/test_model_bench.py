"""`locinsert bench sampling` runs every approach and reports consistent figures (no timing asserts)."""

import pytest
import json

from locinsert.cli.main import main


@pytest.mark.slow
def test_bench_sampling_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "sampling", "--preset", "tiny", "--num-samples", "8", "--repeats", "1",
               "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    for key in ("generate_s", "copied_cache_s", "shared_prefix_s", "floor_s", "gemm_flops_per_s"):
        assert r[key] > 0, key
    f = r["flops"]
    assert f["total"] == f["vit"] + f["prefix"] + f["decode"] and f["vit"] > 0 and f["prefix"] > 0
    assert abs(r["ours_over_floor"] - r["shared_prefix_s"] / r["floor_s"]) < 1e-9
    text = capsys.readouterr().out
    assert "shared-prefix decoding (ours)" in text and "arithmetic floor" in text


def test_bench_delegates_and_explains(capsys):
    assert main(["bench"]) == 1
    assert "sampling" in capsys.readouterr().out
