"""Each stage trains end to end from the configs in training/configs: the synthetic world and real-format fixtures."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers_data import PIPE_ROWS, build_opa_archive, build_pipe

from locinsert.cli.main import main as cli
from locinsert.modeling import LocationModel
from locinsert.training.config import ALL_STAGES, STAGES, load_stage_config
from locinsert.training.synthetic import synthetic_stage_fields

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
REAL = {"pretrain": "pretrain_pipe.yaml", "finetune": "finetune_opa.yaml", "dpo": "dpo_opa.yaml"}
FAST = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--save_steps", "2", "--logging_steps", "1",
        "--disable_tqdm", "true", "--dataloader_num_workers", "0"]


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return tiny_model_dir


def _train(stage, config, out, *extra):
    assert cli(["train", stage, "--config", str(config), "--output_dir", str(out), *FAST, *extra]) == 0
    summary = json.loads((Path(out) / "run_summary.json").read_text())
    assert summary["stage"] == stage and summary["global_step"] == 2
    model = LocationModel.from_pretrained(Path(out) / "final")
    return model, summary


@pytest.mark.parametrize("stage", STAGES)
def test_configs_parse(stage):
    for name in (REAL[stage], f"synthetic_{stage}.yaml"):
        model_args, data_args, args = load_stage_config(stage, CONFIGS / name)
        assert args.output_dir and args.remove_unused_columns is False
        assert data_args.dataset
    _, data_args, args = load_stage_config(stage, CONFIGS / REAL[stage], learning_rate=0.123)
    assert args.learning_rate == 0.123  # the command line overrides the file
    real = yaml.safe_load((CONFIGS / REAL[stage]).read_text())
    if stage == "pretrain":
        assert real["dataset"] == "paint-by-inpaint/PIPE" and real["masks_dataset"] == "paint-by-inpaint/PIPE_Masks"
        assert real["preset"] == "base" and real["pretrained_encoders"] is True
    else:
        assert real["model_name_or_path"].endswith("/final")


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_synthetic_configs_are_the_default_budget(stage):
    assert yaml.safe_load((CONFIGS / f"synthetic_{stage}.yaml").read_text()) == \
        synthetic_stage_fields(stage, "runs/synthetic", "default")


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: synthetic\nno_such_field: 1\n")
    with pytest.raises(ValueError, match="no_such_field"):
        load_stage_config("pretrain", bad)
    with pytest.raises(ValueError, match="unknown training stage"):
        load_stage_config("rlhf")
    with pytest.raises(ValueError, match="unsupported DPO loss_type"):
        load_stage_config("dpo", loss_type="kto")
    with pytest.raises(ValueError, match="dataset_format"):
        load_stage_config("pretrain", dataset_format="coco")
    with pytest.raises(FileNotFoundError):
        load_stage_config("pretrain", tmp_path / "missing.yaml")
    assert cli(["train", "pretrain", "--config", str(tmp_path / "missing.yaml")]) == 2


@pytest.mark.slow
def test_synthetic_stages_from_their_configs(tmp_path):
    small = ["--preset", "tiny", "--synthetic_scenes", "8", "--preset_overrides", "{}"]
    assert cli(["train", "encoder", "--config", str(CONFIGS / "synthetic_encoder.yaml"), "--output_dir",
                str(tmp_path / "encoder"), *FAST, *small]) == 0
    assert json.loads((tmp_path / "encoder" / "run_summary.json").read_text())["stage"] == "encoder"
    pre, _ = _train("pretrain", CONFIGS / "synthetic_pretrain.yaml", tmp_path / "pretrain", *small,
                    "--image_encoder_checkpoint", str(tmp_path / "encoder" / "final"))
    assert pre.config.freeze_image_encoder
    fine, _ = _train("finetune", CONFIGS / "synthetic_finetune.yaml", tmp_path / "finetune", *small,
                     "--model_name_or_path", str(tmp_path / "pretrain" / "final"))
    dpo, summary = _train("dpo", CONFIGS / "synthetic_dpo.yaml", tmp_path / "dpo", *small,
                          "--model_name_or_path", str(tmp_path / "finetune" / "final"),
                          "--eval_split", "test", "--max_eval_queries", "2", "--eval_strategy", "steps",
                          "--eval_steps", "2")
    state = json.loads((tmp_path / "dpo" / "checkpoint-2" / "trainer_state.json").read_text())
    evals = [h for h in state["log_history"] if "eval_loss" in h]
    assert evals and "eval_rewards/margins" in evals[0] and "eval_logps/chosen" in evals[0]
    assert pre.config.num_bins == fine.config.num_bins == dpo.config.num_bins == 16
    sd_pre, sd_fine = pre.state_dict(), fine.state_dict()
    assert any(not torch.equal(sd_pre[k], v) for k, v in sd_fine.items())  # finetuning continued training
    assert summary["num_examples"] > 0


@pytest.mark.slow
def test_pipe_parquet_pretrain(tmp_path):
    pipe_dir, masks_dir = build_pipe(tmp_path / "data")
    model, summary = _train("pretrain", CONFIGS / "pretrain_pipe.yaml", tmp_path / "run", "--preset", "tiny",
                            "--pretrained_encoders", "false", "--dataset", str(pipe_dir),
                            "--masks_dataset", str(masks_dir), "--hflip", "false")
    usable = sum(1 for row in PIPE_ROWS if not row.reason)  # the others are skipped and counted by the reader
    assert summary["num_examples"] == usable == 8
    assert model.config.num_bins == 16


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["finetune", "dpo"])
def test_opa_archive(stage, tmp_path, tiny_model):
    root = tmp_path / "OPA"
    build_opa_archive(root, split="test")
    _, summary = _train(stage, CONFIGS / REAL[stage], tmp_path / "run", "--model_name_or_path", tiny_model,
                        "--dataset", str(root), "--train_split", "test", "--pairs_per_query", "3")
    assert summary["num_examples"] > 0


@pytest.mark.slow
def test_feature_cache(tmp_path):
    """A frozen image encoder's features are computed once and read back in the next run."""
    from locinsert.data.feature_cache import FeatureCache

    args = ["--preset", "tiny", "--synthetic_scenes", "6", "--feature_cache", str(tmp_path / "cache"),
            "--preset_overrides", json.dumps({"freeze_image_encoder": True}), "--hflip", "true",
            "--image_encoder_checkpoint", ""]  # a random frozen tower: no encoder stage in this test
    config = CONFIGS / "synthetic_pretrain.yaml"
    model, _ = _train("pretrain", config, tmp_path / "a", *args)
    cache = FeatureCache(tmp_path / "cache", model.image_encoder_id)
    assert len(cache) == 12  # 6 scenes, each also flipped
    key = next(k for k in cache.keys() if not k.endswith(":hflip"))
    assert cache.get(key).shape[-1] == model.image_encoder.dim
    _train("pretrain", config, tmp_path / "b", *args)
    assert len(FeatureCache(tmp_path / "cache", model.image_encoder_id)) == 12  # reused, not recomputed
    with pytest.raises(ValueError, match="frozen image encoder"):
        from locinsert.training.stages import run_stage

        run_stage("pretrain", *load_stage_config("pretrain", config, preset="tiny", synthetic_scenes=2,
                                                 feature_cache=str(tmp_path / "cache2"), image_encoder_checkpoint="",
                                                 output_dir=str(tmp_path / "c")))
