"""Two processes on CPU (gloo) through torchrun and the real training scripts: both ranks train, the model loads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from locinsert.modeling import LocationModel, LocationModelConfig

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # two torchrun launches: a minute of processes starting


def _torchrun(script: str, config: dict, tmp_path: Path) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("ACCELERATE_USE_CPU", None)  # the scripts must pick CPU DDP by themselves on a GPU-less machine
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "training" / script), "--config", str(cfg)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Path(config["output_dir"])


def _check_ranks(out: Path, steps: int) -> None:
    ranks = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    for r, info in enumerate(ranks):
        assert info["rank"] == r and info["world_size"] == 2
        assert info["steps_this_session"] == steps and info["global_step"] == steps
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == steps


def test_dpo_on_two_processes(tmp_path):
    torch.manual_seed(0)
    start = tmp_path / "start"
    LocationModel(LocationModelConfig.preset("tiny")).save_pretrained(start)
    out = _torchrun("dpo_opa.py", {
        "model_name_or_path": str(start), "dataset": "synthetic", "synthetic_scenes": 6, "pairs_per_query": 2,
        "output_dir": str(tmp_path / "dpo"), "max_steps": 3, "save_steps": 3, "per_device_train_batch_size": 2,
        "logging_steps": 1, "learning_rate": 1e-3, "disable_tqdm": True, "dataloader_num_workers": 0,
    }, tmp_path)
    _check_ranks(out, 3)
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    logged = [h for h in state["log_history"] if "loss" in h]
    assert len(logged) == 3 and "rewards/margins" in logged[0]
    # each rank converted its own RNG state; the checkpoint holds no pickle
    files = set(os.listdir(out / "checkpoint-3"))
    assert {"rng_state_0.safetensors", "rng_state_0.json", "rng_state_1.safetensors", "rng_state_1.json",
            "optimizer.safetensors", "scheduler.json", "checkpoint_complete.json"} <= files
    assert not [f for f in files if f.endswith((".pt", ".pth", ".bin", ".pkl"))], files
    model = LocationModel.from_pretrained(out / "final")
    start_model = LocationModel.from_pretrained(start)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, start_model.state_dict()[k])]
    assert changed, "DPO under DDP did not update the weights"


def test_pretrain_on_two_processes(tmp_path):
    out = _torchrun("pretrain_pipe.py", {
        "preset": "tiny", "dataset": "synthetic", "synthetic_scenes": 16, "output_dir": str(tmp_path / "pre"),
        "max_steps": 3, "save_steps": 3, "per_device_train_batch_size": 2, "logging_steps": 1,
        "disable_tqdm": True,
    }, tmp_path)
    _check_ranks(out, 3)
    assert LocationModel.from_pretrained(out / "final").config.num_bins == 16
