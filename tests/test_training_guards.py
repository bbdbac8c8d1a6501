"""The runner's guards, shared by every stage: divergence stops a run, impossible settings are refused
before any work, a poisoned checkpoint is not resumed, and a resumed run ends exactly at max_steps."""

import os

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from locinsert.segmentation.training import parse_textmask_args, run_textmask
from locinsert.training.runner import NonFiniteTrainingError
from locinsert.training.stages import run_stage
from locinsert.training.synthetic import synthetic_stage_args


def _textmask(out, *extra):
    argv = ["--preset", "tiny", "--synthetic_scenes", "4", "--eval_scenes", "0", "--max_steps", "4",
            "--save_steps", "2", "--per_device_train_batch_size", "4", "--logging_steps", "1",
            "--disable_tqdm", "true", "--output_dir", str(out), *extra]
    return parse_textmask_args(argv)


class Kill(TrainerCallback):
    """A process killed right after the checkpoint of step ``at`` was complete."""

    def __init__(self, at: int):
        self.at = at

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"killed after checkpoint {self.at}")


@pytest.mark.slow
def test_a_diverging_run_stops_and_writes_no_final_model(tmp_path):
    with pytest.raises(NonFiniteTrainingError, match="NaN or inf|diverged"):
        run_textmask(*_textmask(tmp_path / "run", "--learning_rate", "1e30", "--max_grad_norm", "0"))
    assert not (tmp_path / "run" / "final").exists()
    assert not (tmp_path / "run" / "run_summary.json").exists()


@pytest.mark.parametrize("flags, message", [
    (["--max_steps", "-5", "--num_train_epochs", "0"], "max_steps must be a positive"),
    (["--max_steps", "-1", "--num_train_epochs", "0"], "num_train_epochs must be a positive"),
    (["--max_steps", "0"], "max_steps must be a positive"),
    (["--learning_rate", "inf"], "learning_rate must be a finite"),
])
def test_impossible_settings_are_refused_before_any_work(tmp_path, flags, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        run_textmask(*_textmask(out, *flags))
    assert not out.exists()


def test_cli_answers_bad_training_settings_with_one_line(tmp_path, capsys):
    from locinsert.cli.main import main

    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    assert main(["train", "textmask", "--preset", "tiny", "--output_dir", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("locinsert train: error: output_dir") and "is a file" in err and len(err.splitlines()) == 1
    assert main(["train", "pretrain", "--output_dir", str(tmp_path / "p"), "--max_steps", "-5",
                 "--num_train_epochs", "0"]) == 2
    assert "max_steps must be a positive" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_with_non_finite_weights(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_textmask(*_textmask(out), callbacks=[Kill(at=2)])
    weights = out / "checkpoint-2" / "model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(weights))
    with pytest.raises(NonFiniteTrainingError, match="checkpoint-2 has NaN or inf weights"):
        run_textmask(*_textmask(out))
    assert not (out / "final").exists()


@pytest.mark.slow
def test_a_run_killed_after_its_last_checkpoint_ends_there(tmp_path):
    fields = dict(preset="tiny", synthetic_scenes=24, max_steps=4, save_steps=2, per_device_train_batch_size=4,
                  logging_steps=1, disable_tqdm=True, image_encoder_checkpoint=None)
    out = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run_stage("pretrain", *synthetic_stage_args("pretrain", out, budget="quick", **fields), callbacks=[Kill(at=4)])
    resumed = run_stage("pretrain", *synthetic_stage_args("pretrain", out, budget="quick", **fields))
    assert resumed.global_step == 4 and resumed.resumed_from.endswith("checkpoint-4")
    final = load_file(os.path.join(resumed.model_path, "model.safetensors"))
    last = load_file(os.path.join(out, "pretrain", "checkpoint-4", "model.safetensors"))
    assert final.keys() == last.keys()
    for k in final:
        torch.testing.assert_close(final[k], last[k], rtol=0, atol=0)
