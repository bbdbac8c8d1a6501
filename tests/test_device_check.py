"""The GPU device check cannot rot: its CPU dry run (tiny sizes) runs every part but the CUDA tests here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from locinsert.bench import device_check
from locinsert.bench.device import resolve_device, resolve_dtype
from locinsert.cli.main import main as cli


ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_of_the_script_writes_every_part(tmp_path):
    """scripts/device_check.sh itself, as the GPU machine runs it, with tiny sizes on the CPU."""
    out = tmp_path / "check"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this python3
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh"), str(out), "--device", "cpu",
                           "--dry-run", "--no-tests"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "# locinsert device check" in (out / "log.txt").read_text()
    r = json.loads((out / "summary.json").read_text())
    assert r["errors"] == [] and r["dry_run"] is True
    for part in ("environment", "sampling", "evaluation", "training", "sampling_compiled"):
        assert part in r, part
    assert [row["num_samples"] for row in r["sampling_compiled"]["sweep"]] == [1]  # through the CLI
    env = r["environment"]
    assert env["gemm_flops_per_s"]["fp32"] > 0 and env["gemm_flops_per_s"]["bf16"] > 0
    assert env["copy_bytes_per_s"] > 0 and not env["versions"]["torch"].startswith("missing")
    s = r["sampling"]
    assert s["dtype"] == "bf16" and s["floor_s"] == max(s["compute_floor_s"], s["memory_floor_s"])
    sweep = {(row["images"], row["num_samples"]) for row in s["sweep"]}
    assert sweep == {(1, 1), (1, 10), (2, 1), (2, 10)}
    t = r["training"]
    assert t["samples_per_s_with_cache"] > 0 and t["model_step_samples_per_s_with_cache"] > 0
    assert t["flops_per_sample"]["without_cache"]["train"] > t["flops_per_sample"]["with_cache"]["train"] > 0
    p = t["projection"]
    assert [st["stage"].split()[0] for st in p["stages"]] == ["pretrain", "finetune", "DPO"]
    assert p["stages"][0]["config"] == "pretrain_pipe.yaml"  # read from training/configs, not defaulted
    assert set(p["sources"]) == {"Trainer loop", "model step"}
    for source, rate in p["sources"].items():
        one, eight = p["schedule_s"][source]["1"], p["schedule_s"][source]["8"]
        assert one == pytest.approx(8 * eight) and p["pipe_epoch_s"][source]["1"] == pytest.approx(888_230 / rate)
    md = (out / "summary.md").read_text()
    for heading in ("## Environment", "## Design targets", "## Sampling", "## Evaluation", "## Training"):
        assert heading in md
    assert "one PIPE epoch" in md


def test_full_check_needs_a_gpu_or_dry_run(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="--dry-run"):
        device_check.run(str(tmp_path), device="cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown part"):
        device_check.main(["--out", str(tmp_path), "--parts", "sampling,warp"])


def test_dtype_and_device_errors_are_one_line(capsys):
    with pytest.raises(ValueError, match="GPU only"):
        resolve_dtype("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu:0:1")
    assert cli(["bench", "sampling", "--preset", "tiny", "--dtype", "fp16"]) == 2
    assert cli(["bench", "sampling", "--preset", "tiny", "--compile", "warp"]) == 2
    assert cli(["bench", "sampling", "--preset", "tiny", "--sweep", "1,x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("locinsert bench: error: ") for line in err)
    if not torch.cuda.is_available():
        assert cli(["bench", "sampling", "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
