"""LoRA fine-tuning of a tiny real SD-inpaint pipeline for removal: loss, save, reload, resume."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from helpers_diffusers import tiny_sd_inpaint
from locinsert.data.synthetic.removal import removal_examples
from locinsert.inpainting import DiffusersRemover
from locinsert.training.removal_lora import (RemovalLoraConfig, RemovalPairs, _empty_prompt, add_removal_lora,
                                             removal_loss, train_removal_lora)


def eval_loss(pipe, pairs):
    from diffusers import DDPMScheduler

    batch = [torch.stack([pairs[i][k] for i in range(len(pairs))]) for k in range(3)]
    with torch.no_grad():
        return float(removal_loss(pipe, pipe.unet, DDPMScheduler.from_config(pipe.scheduler.config), batch,
                                  torch.Generator().manual_seed(123), _empty_prompt(pipe)))


@pytest.mark.slow
def test_lora_training_lowers_the_loss_saves_reloads_exactly_and_resumes_exactly(tmp_path):
    # 32 px training crops (16x16 latents) keep the test fast; the UNet is convolutional.
    pairs = RemovalPairs.synthetic(8, seed=0, size=64, resolution=32, dilate=1)
    cfg = RemovalLoraConfig(output_dir=str(tmp_path / "run"), resolution=32, max_steps=4, batch_size=8,
                            save_steps=2, learning_rate=5e-2, rank=4)
    pipe = tiny_sd_inpaint()
    before = eval_loss(pipe, pairs)
    report = train_removal_lora(cfg, pipe=pipe, pairs=pairs, progress=False)
    assert report.steps == 4 and len(report.losses) == 4
    assert eval_loss(pipe, pairs) < before - 0.01             # the tuned UNet fits the pairs better
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint-2", "checkpoint-4", "final", "run_summary.json"]

    # The saved LoRA loads into a fresh pipeline and reproduces the tuned outputs exactly.
    ex = removal_examples(1, seed=5)[0]
    run = lambda p: np.asarray(p.remove(ex.image, ex.mask, generator=torch.Generator().manual_seed(0)))  # noqa: E731
    tuned = run(DiffusersRemover(pipe, num_inference_steps=2))
    reloaded = DiffusersRemover(tiny_sd_inpaint(), num_inference_steps=2, lora=report.final_dir)
    assert np.array_equal(run(reloaded), tuned)
    assert not np.array_equal(run(DiffusersRemover(tiny_sd_inpaint(), num_inference_steps=2)), tuned)

    # Interrupted after step 2 (later checkpoints gone): the resumed run takes the same steps.
    shutil.rmtree(tmp_path / "run" / "checkpoint-4")
    shutil.rmtree(tmp_path / "run" / "final")
    again = train_removal_lora(cfg, pipe=tiny_sd_inpaint(), pairs=pairs, progress=False)
    assert again.resumed_from.endswith("checkpoint-2") and again.losses == report.losses


def test_bad_configs_and_targets_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="data must be one of"):
        RemovalLoraConfig(data="coco")
    with pytest.raises(ValueError, match="learning_rate"):
        RemovalLoraConfig(learning_rate=0)
    (tmp_path / "c.yaml").write_text("ranks: 4\n")
    with pytest.raises(ValueError, match="unknown keys"):
        RemovalLoraConfig.from_yaml(str(tmp_path / "c.yaml"))
    with pytest.raises(ValueError, match="match no module"):
        add_removal_lora(tiny_sd_inpaint().unet, target_modules=["q_proj"])


def test_shipped_yaml_configs_parse():
    root = os.path.join(os.path.dirname(__file__), "..", "training", "configs")
    for name in ("removal_lora_synthetic.yaml", "removal_lora_pipe.yaml"):
        cfg = RemovalLoraConfig.from_yaml(os.path.join(root, name))
        assert cfg.pretrained == "stabilityai/stable-diffusion-2-inpainting" and cfg.rank == 4


def test_pipe_rows_become_swapped_pairs_with_their_masks(tmp_path):
    from helpers_data import build_pipe
    from locinsert.data.pipe import load_pipe

    pipe, masks = build_pipe(tmp_path, split="train")
    ds, _ = load_pipe(pipe, masks, split="train", cache_dir=tmp_path / "cache", keep_target=True, with_mask=True)
    pairs = RemovalPairs.pipe(ds, resolution=32, rows=3)
    assert len(pairs) == 3
    for image, target, mask in pairs.items:
        inside = mask[0] > 0
        assert inside.any() and not inside.all()
        magenta = (image[0] > 0.8) & (image[1] < -0.5) & (image[2] > 0.3)          # the object, (250, 30, 200)
        assert magenta[inside].float().mean() > 0.5 and not magenta[~inside].any()
        assert not ((target[0] > 0.8) & (target[1] < -0.5)).any()                # the target has no object
    streamed, _ = load_pipe(pipe, masks, split="train", streaming=True, cache_dir=tmp_path / "cache",
                            keep_target=True, with_mask=True)
    assert len(RemovalPairs.pipe(streamed, resolution=32, rows=2)) == 2


def test_training_script_reads_the_yaml_and_overrides(tmp_path):
    import importlib.util

    root = os.path.join(os.path.dirname(__file__), "..", "training")
    spec = importlib.util.spec_from_file_location("removal_lora_script", os.path.join(root, "removal_lora.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    tiny_sd_inpaint().save_pretrained(tmp_path / "sd")
    out = tmp_path / "run"
    assert script.main(["--config", os.path.join(root, "configs", "removal_lora_synthetic.yaml"),
                        "--pretrained", str(tmp_path / "sd"), "--synthetic-examples", "4", "--resolution", "32",
                        "--max-steps", "2", "--batch-size", "2", "--output-dir", str(out), "--resume", "false"]) == 0
    info = json.loads((out / "final" / "removal_lora.json").read_text())
    assert info["steps"] == 2 and info["config"]["resolution"] == 32 and info["config"]["resume"] is False
    with pytest.raises(FileNotFoundError, match="config file not found"):
        script.main(["--config", str(tmp_path / "missing.yaml")])
