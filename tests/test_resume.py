"""Interrupted runs resume from their last complete checkpoint and end where an uninterrupted run ends."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from locinsert.training.checkpoints import (COMPLETE_MARKER, is_complete_checkpoint, last_checkpoint,
                                            list_checkpoints, resolve_resume)
from locinsert.training.synthetic import synthetic_stage_args
from locinsert.training.stages import run_stage


class Crash(TrainerCallback):
    """Simulates a killed process: raises after optimizer step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"simulated crash after step {self.at}")


def _args(out, **kw):
    # dropout stays on: resuming must also restore the RNG state for the result to match
    fields = dict(preset="tiny", synthetic_scenes=24, max_steps=6, save_steps=2, save_total_limit=2,
                  per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=1, disable_tqdm=True)
    fields.update(kw)
    return synthetic_stage_args("pretrain", str(out), budget="quick", seed=0, **fields)


def _weights(path):
    return load_file(os.path.join(path, "model.safetensors"))


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    clean = run_stage("pretrain", *_args(tmp_path / "clean"))
    assert clean.global_step == 6 and clean.resumed_from is None

    out = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        run_stage("pretrain", *_args(out), callbacks=[Crash(at=5)])
    assert last_checkpoint(str(out / "pretrain")).endswith("checkpoint-4")
    assert not (out / "pretrain" / "final").exists()
    # an interrupted save of step 5 leaves a folder without the marker: it must not be resumed from
    partial = out / "pretrain" / "checkpoint-5"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"truncated")
    assert not is_complete_checkpoint(str(partial))

    resumed = run_stage("pretrain", *_args(out))
    assert resumed.resumed_from.endswith("checkpoint-4")
    assert resumed.global_step == 6
    assert not partial.exists() or is_complete_checkpoint(str(partial))  # discarded (and never reused as-is)

    a, b = _weights(clean.model_path), _weights(resumed.model_path)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # and the last two steps did change the weights (the comparison is not vacuous)
    step4 = _weights(str(tmp_path / "clean" / "pretrain" / "checkpoint-4"))
    assert any(not torch.allclose(step4[k], a[k], atol=1e-4) for k in a)

    state = json.loads((out / "pretrain" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    losses = [h["step"] for h in state["log_history"] if "loss" in h]
    assert losses == [1, 2, 3, 4, 5, 6]  # history continued from the checkpoint, not restarted


def test_checkpoints_are_safetensors_and_marked(tmp_path):
    result = run_stage("pretrain", *_args(tmp_path, max_steps=2, save_steps=2))
    ckpts = list_checkpoints(str(tmp_path / "pretrain"))
    assert [(s, ok) for s, _, ok in ckpts] == [(2, True)]
    ckpt = ckpts[0][1]
    files = set(os.listdir(ckpt))
    assert {"model.safetensors", "config.json", "optimizer.pt", "scheduler.pt", "trainer_state.json",
            COMPLETE_MARKER, "training_args.json"} <= files
    assert "training_args.bin" not in files  # no pickled objects
    marker = json.loads(open(os.path.join(ckpt, COMPLETE_MARKER)).read())
    assert marker["global_step"] == 2 and "model.safetensors" in marker["files"]
    final = set(os.listdir(result.model_path))
    assert {"model.safetensors", "config.json", "training_args.json"} <= final
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in final)
    assert not os.path.exists(result.model_path + ".tmp")
    summary = json.loads((tmp_path / "pretrain" / "run_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["model_path"] == result.model_path


def test_resolve_resume(tmp_path):
    assert resolve_resume(str(tmp_path), True) is None  # nothing to resume: a fresh start
    assert resolve_resume(str(tmp_path), None) is None
    bad = tmp_path / "checkpoint-3"
    bad.mkdir()
    with pytest.raises(ValueError, match="incomplete"):
        resolve_resume(str(tmp_path), str(bad))
    with pytest.raises(FileNotFoundError):
        resolve_resume(str(tmp_path), str(tmp_path / "checkpoint-9"))
    (bad / COMPLETE_MARKER).write_text(json.dumps({"global_step": 2}))  # a marker of another step
    assert not is_complete_checkpoint(str(bad))
    (bad / COMPLETE_MARKER).write_text(json.dumps({"global_step": 3}))
    assert resolve_resume(str(tmp_path), True) == str(bad)
