"""Interrupted runs resume from their last complete checkpoint and end where an uninterrupted run ends."""

import json
import os
import random
from types import SimpleNamespace

import numpy as np

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from locinsert.training.checkpoints import (COMPLETE_MARKER, AtomicCheckpointCallback, is_complete_checkpoint,
                                            last_checkpoint, list_checkpoints, load_state, pickled_files,
                                            resolve_resume, save_state)
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
                  per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=1, disable_tqdm=True,
                  image_encoder_checkpoint=None)  # the image tower trains too (no encoder stage)
    fields.update(kw)
    return synthetic_stage_args("pretrain", str(out), budget="quick", seed=0, **fields)


def _weights(path):
    return load_file(os.path.join(path, "model.safetensors"))


def _assert_no_pickles(output_dir):
    """Every file anywhere under the run (checkpoints, final model) is pickle-free."""
    seen = 0
    for root, _, files in os.walk(output_dir):
        seen += len(files)
        assert not pickled_files(root), (root, pickled_files(root))
    assert seen


@pytest.mark.slow
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

    # the checkpoint resumed from held no optimizer.pt / scheduler.pt / rng_state.pth: the state came
    # from the safetensors + JSON files, and neither run left a pickle anywhere
    _assert_no_pickles(str(tmp_path / "clean"))
    _assert_no_pickles(str(out))
    a, b = _weights(clean.model_path), _weights(resumed.model_path)
    assert a.keys() == b.keys()
    for k in a:
        # an uninterrupted and a resumed run differ by float32 round-off (a few ulp); resuming from the
        # Trainer's own optimizer.pt/rng_state.pth gives bit-identical weights to these files (checked by hand)
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-6), k
    # and the last two steps did change the weights (the comparison is not vacuous)
    step4 = _weights(str(tmp_path / "clean" / "pretrain" / "checkpoint-4"))
    assert any(not torch.allclose(step4[k], a[k], atol=1e-4) for k in a)

    state = json.loads((out / "pretrain" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    losses = [h["step"] for h in state["log_history"] if "loss" in h]
    assert losses == [1, 2, 3, 4, 5, 6]  # history continued from the checkpoint, not restarted


@pytest.mark.slow
def test_checkpoints_are_safetensors_and_marked(tmp_path):
    result = run_stage("pretrain", *_args(tmp_path, max_steps=2, save_steps=2))
    ckpts = list_checkpoints(str(tmp_path / "pretrain"))
    assert [(s, ok) for s, _, ok in ckpts] == [(2, True)]
    ckpt = ckpts[0][1]
    files = set(os.listdir(ckpt))
    assert {"model.safetensors", "config.json", "optimizer.safetensors", "optimizer.json", "scheduler.json",
            "rng_state.safetensors", "rng_state.json", "trainer_state.json", COMPLETE_MARKER,
            "training_args.json"} <= files
    assert not pickled_files(ckpt)  # no training_args.bin, optimizer.pt, scheduler.pt, rng_state.pth
    assert not [f for f in files if f.startswith(".tmp-")]
    marker = json.loads(open(os.path.join(ckpt, COMPLETE_MARKER)).read())
    assert marker["global_step"] == 2 and "model.safetensors" in marker["files"]
    assert "optimizer.safetensors" in marker["files"] and "optimizer.pt" not in marker["files"]
    # optimizer: one entry per trained parameter, flat keys; AdamW moments have the parameters' shapes
    optim = load_file(os.path.join(ckpt, "optimizer.safetensors"))
    weights = _weights(ckpt)
    assert optim and all(k.startswith("state.") for k in optim)
    assert {k.rsplit(".", 1)[1] for k in optim} == {"step", "exp_avg", "exp_avg_sq"}
    moments = [k[: -len(".exp_avg")] for k in optim if k.endswith(".exp_avg")]
    assert moments and all(optim[m + ".exp_avg"].shape == optim[m + ".exp_avg_sq"].shape for m in moments)
    shapes = sorted(tuple(v.shape) for v in weights.values())
    assert all(tuple(optim[m + ".exp_avg"].shape) in shapes for m in moments)
    state = load_state(ckpt, "optimizer")
    assert state["param_groups"][0]["betas"] == (0.9, 0.999)  # the tuple survives the JSON
    assert float(state["state"][0]["step"]) == 2.0
    assert load_state(ckpt, "scheduler")["last_epoch"] == 2
    rng = load_state(ckpt, "rng_state")
    assert rng["cpu"].dtype == torch.uint8 and rng["python"][0] == 3 and rng["numpy"][0] == "MT19937"
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


def test_state_files_round_trip_exactly(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state(),
           "cuda": [torch.random.get_rng_state()[:16], torch.random.get_rng_state()[16:32]]}
    save_state(str(tmp_path), "optimizer", opt.state_dict())
    save_state(str(tmp_path), "rng_state", rng)
    back = load_state(str(tmp_path), "optimizer")
    assert back["param_groups"] == opt.state_dict()["param_groups"]
    for i, st in opt.state_dict()["state"].items():
        assert back["state"][i].keys() == st.keys()
        assert all(torch.equal(back["state"][i][k], v) for k, v in st.items())
    r = load_state(str(tmp_path), "rng_state")
    assert r["python"] == rng["python"]
    assert r["numpy"][0] == rng["numpy"][0] and np.array_equal(r["numpy"][1], rng["numpy"][1])
    assert r["numpy"][1].dtype == rng["numpy"][1].dtype and r["numpy"][2:] == rng["numpy"][2:]
    assert torch.equal(r["cpu"], rng["cpu"]) and all(torch.equal(x, y) for x, y in zip(r["cuda"], rng["cuda"]))
    assert set(load_file(str(tmp_path / "rng_state.safetensors"))) == {"cpu", "cuda.0", "cuda.1"}
    # restoring gives the same random stream
    random.setstate(r["python"]), np.random.set_state(r["numpy"]), torch.random.set_rng_state(r["cpu"])
    first = (random.random(), np.random.rand(), torch.rand(3))
    random.setstate(rng["python"]), np.random.set_state(rng["numpy"]), torch.random.set_rng_state(rng["cpu"])
    assert first[:2] == (random.random(), np.random.rand()) and torch.equal(first[2], torch.rand(3))
    with pytest.raises(TypeError, match="without pickle"):
        save_state(str(tmp_path), "bad", {"f": object()})


def test_failed_conversion_leaves_checkpoint_incomplete(tmp_path):
    ckpt = tmp_path / "checkpoint-3"
    ckpt.mkdir()
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(),
                "cpu": torch.random.get_rng_state()}, ckpt / "rng_state.pth")
    (ckpt / "optimizer.pt").write_bytes(b"truncated")  # the process died while torch.save wrote it
    args = SimpleNamespace(output_dir=str(tmp_path), process_index=0, world_size=1, should_save=True)
    with pytest.raises(Exception):
        AtomicCheckpointCallback().on_save(args, SimpleNamespace(global_step=3), None)
    assert not is_complete_checkpoint(str(ckpt))
    assert (ckpt / "rng_state.json").exists() and not (ckpt / "rng_state.pth").exists()  # its own rank's part
    assert last_checkpoint(str(tmp_path)) is None
