"""LoRA fine-tuning of a diffusers inpainting UNet for object removal, on accelerate.

Data are **swapped pairs**: the input is the image *with* the object, the target the same image
*without* it, and the mask the object's pixels (grown by ``dilate``). PIPE gives them for real
photos (its ``target_img`` has the object, its ``source_img`` does not; the mask is PIPE_Masks'
mask, read by ``load_pipe(with_mask=True)``), the synthetic world gives exact ones
(:mod:`locinsert.data.synthetic.removal`).

One step is the standard 9-channel inpainting objective with an **empty prompt** (what the
remover uses at inference): the target is encoded by the VAE, noised at a random timestep, and the
UNet sees ``cat([noisy latents, mask at latent size, latents of the input with the mask blanked])``
and predicts the noise (epsilon MSE; ``v_prediction`` schedulers get the velocity target). Only
the LoRA weights train: peft through diffusers' ``unet.add_adapter(LoraConfig(...))`` on
``to_q``, ``to_k``, ``to_v``, ``to_out.0``.

Saving: ``save_lora_weights`` (keys prefixed ``unet.``, so ``pipe.load_lora_weights`` attaches
them; :func:`locinsert.inpainting.load_lora` checks it). ``output_dir/checkpoint-N/`` holds the
LoRA, the optimizer state (safetensors + JSON) and the loss history; each is written into a
temporary folder that is renamed into place with the completion marker already inside, so a
checkpoint is complete or absent. A run resumes from the last one; every step draws its batch,
noise and timesteps from a generator seeded by ``seed + step``, so a resumed run takes exactly the
steps an uninterrupted one would. ``output_dir/final/`` holds the LoRA and ``removal_lora.json``, and
``output_dir/run_summary.json`` the runner's summary (``training.runner.RunSummary``). The config is a
flat YAML file with command-line overrides, read as the Trainer stages read theirs
(``locinsert train removal-lora --config FILE.yaml --max_steps 50``); a NaN or inf loss stops the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..io import check_output_dir, write_folder_atomic, write_json_atomic
from .checkpoints import COMPLETE_MARKER, last_checkpoint, load_state, save_state
from .runner import FINAL_DIR, SUMMARY_FILE, NonFiniteTrainingError, RunSummary, arg, config_argv, parse_config

__all__ = ["RemovalLoraConfig", "RemovalLoraReport", "RemovalPairs", "add_removal_lora", "removal_loss",
           "train_removal_lora", "lora_state_dict", "DEFAULT_TARGETS"]

DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
DATA = ("synthetic", "pipe")


@dataclass
class RemovalLoraConfig:
    """Everything a run needs; ``RemovalLoraConfig.from_yaml(path, **overrides)`` reads a YAML file."""

    output_dir: str = arg("runs/removal_lora", "Checkpoints and the final LoRA.")
    pretrained: str = arg("stabilityai/stable-diffusion-2-inpainting",
                          "The 9-channel inpainting pipeline to adapt (hub id or folder).")
    data: str = arg("synthetic", "synthetic (exact swapped pairs) or pipe.")
    synthetic_examples: int = arg(2000, "Synthetic: swapped pairs to draw.")
    synthetic_seed: int = arg(0, "Synthetic: seed of the world.")
    synthetic_size: int = arg(64, "Synthetic: scene side in pixels.")
    pipe_source: str = arg("paint-by-inpaint/PIPE", "PIPE: hub id or parquet folder.")
    pipe_masks: str | None = arg("paint-by-inpaint/PIPE_Masks", "PIPE: object masks.")
    pipe_rows: int | None = arg(None, "PIPE: stream at most this many rows.")
    resolution: int = arg(512, "Training crop side in pixels.")
    dilate: int = arg(2, "Grow each object mask by this many pixels.")
    rank: int = arg(4, "LoRA rank.")
    target_modules: list[str] = arg(help="Attention projections that get a LoRA.",
                                    default_factory=lambda: list(DEFAULT_TARGETS))
    learning_rate: float = arg(1e-4, "AdamW learning rate.")
    max_steps: int = arg(1000, "Optimizer steps.")
    batch_size: int = arg(4, "Pairs per step.")
    gradient_accumulation_steps: int = arg(1, "Batches per optimizer step.")
    save_steps: int = arg(250, "Checkpoint every N steps.")
    mixed_precision: str = arg("no", "no, fp16 or bf16 (accelerate).")
    seed: int = arg(0, "Seed of batches, noise and timesteps (step N: seed + N).")
    resume: bool = arg(True, "Continue from the last complete checkpoint.")

    def __post_init__(self):
        if self.data not in DATA:
            raise ValueError(f"data must be one of {DATA}, got {self.data!r}")
        for name in ("rank", "max_steps", "batch_size", "save_steps", "resolution", "gradient_accumulation_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.target_modules:
            raise ValueError("target_modules is empty: name the attention projections to adapt")

    @classmethod
    def from_yaml(cls, path: str | None = None, **overrides) -> "RemovalLoraConfig":
        """The fields of a YAML file (``path``), with ``overrides`` (None: keep the file's value) on top."""
        return parse_removal_lora_args(config_argv(path, **{k: v for k, v in overrides.items() if v is not None}))


def parse_removal_lora_args(argv=None, prog: str | None = None) -> RemovalLoraConfig:
    """``[--config file.yaml] [--field value ...]`` -> a :class:`RemovalLoraConfig` (the stages' config rules)."""
    return parse_config((RemovalLoraConfig,), argv, prog)[0]


def main(argv=None, prog: str | None = None) -> int:
    """Entry point of ``training/removal_lora.py`` and ``locinsert train removal-lora``."""
    report = train_removal_lora(parse_removal_lora_args(argv, prog))
    print(f"{report.steps} steps, last loss {report.losses[-1]:.4f}; LoRA -> {report.final_dir}")
    return 0


@dataclass
class RemovalLoraReport:
    losses: list[float]
    steps: int
    final_dir: str
    resumed_from: str | None = None


class RemovalPairs(torch.utils.data.Dataset):
    """(input with the object, target without it, mask) as tensors at ``resolution``: images in
    [-1, 1] (3, R, R), mask in {0, 1} (1, R, R). ``pairs`` yields ``(image, target, mask)``."""

    def __init__(self, pairs, resolution: int, dilate: int = 0):
        from ..inpainting.removal import dilate_mask

        self.items = [(_to_tensor(image, resolution), _to_tensor(target, resolution),
                       _mask_tensor(dilate_mask(np.asarray(mask, bool), dilate), resolution))
                      for image, target, mask in pairs]
        if not self.items:
            raise ValueError("no removal pairs: the data source gave no examples")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]

    @classmethod
    def synthetic(cls, n: int, seed: int, size: int, resolution: int, dilate: int = 0) -> "RemovalPairs":
        from ..data.synthetic.removal import removal_examples

        return cls(((e.image, e.target, e.mask) for e in removal_examples(n, seed=seed, size=size)),
                   resolution, dilate)

    @classmethod
    def pipe(cls, dataset, resolution: int, dilate: int = 0, rows: int | None = None) -> "RemovalPairs":
        """From ``load_pipe(..., keep_target=True, with_mask=True).dataset`` (map-style or streaming):
        input ``target_img`` (with the object), target ``image`` (without), mask = the ``mask`` column
        (its box if the column is absent)."""
        def pairs():
            for i, row in enumerate(dataset):
                if rows is not None and i >= rows:
                    return
                image, target = row["target_img"].convert("RGB"), row["image"].convert("RGB")
                if row.get("mask") is not None:
                    m = np.asarray(row["mask"].convert("L").resize(target.size, Image.NEAREST)) > 127
                else:
                    m = np.zeros((target.height, target.width), bool)
                    x1, y1, x2, y2 = (int(round(v)) for v in row["box"])
                    m[y1:y2, x1:x2] = True
                yield image.resize(target.size), target, m
        return cls(pairs(), resolution, dilate)


def _to_tensor(image, resolution: int) -> torch.Tensor:
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    img = img.convert("RGB").resize((resolution, resolution), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, np.float32) / 127.5 - 1.0).permute(2, 0, 1)


def _mask_tensor(mask: np.ndarray, resolution: int) -> torch.Tensor:
    img = Image.fromarray(mask.astype(np.uint8) * 255, "L").resize((resolution, resolution), Image.BILINEAR)
    return torch.from_numpy((np.asarray(img) > 0).astype(np.float32))[None]


def add_removal_lora(unet, rank: int = 4, target_modules=DEFAULT_TARGETS, adapter_name: str = "default") -> int:
    """Freeze ``unet`` and add a LoRA (peft, via diffusers' ``add_adapter``); returns trainable parameters."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    try:
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                    target_modules=list(target_modules)), adapter_name=adapter_name)
    except ValueError as e:   # peft's NoMatchingPeftModuleError
        raise ValueError(f"LoRA targets {list(target_modules)} match no module of the UNet ({e})") from e
    n = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    if n == 0:
        raise ValueError(f"LoRA targets {list(target_modules)} match no module of the UNet")
    return n


def lora_state_dict(unet) -> dict[str, torch.Tensor]:
    """The LoRA weights in diffusers' layout (what ``save_lora_weights(unet_lora_layers=...)`` takes)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def _empty_prompt(pipe) -> torch.Tensor:
    tok, enc = pipe.tokenizer, pipe.text_encoder
    ids = tok([""], padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    with torch.no_grad():
        return enc(ids.to(enc.device))[0]


def removal_loss(pipe, unet, scheduler, batch, generator: torch.Generator, text: torch.Tensor) -> torch.Tensor:
    """The epsilon (or v) MSE of one batch ``(image, target, mask)``; noise and timesteps from ``generator``."""
    image, target, mask = batch
    vae = pipe.vae
    dev, dtype = vae.device, vae.dtype
    image, target, mask = image.to(dev, dtype), target.to(dev, dtype), mask.to(dev, dtype)
    scale = vae.config.scaling_factor
    with torch.no_grad():
        latents = vae.encode(target).latent_dist.sample(generator=generator) * scale
        masked = vae.encode(image * (mask < 0.5)).latent_dist.sample(generator=generator) * scale
    small = torch.nn.functional.interpolate(mask, size=latents.shape[-2:])
    noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(dev)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator).to(dev)
    noisy = scheduler.add_noise(latents, noise, t)
    cond = text.to(dev).expand(latents.shape[0], -1, -1)
    pred = unet(torch.cat([noisy, small, masked], 1), t, encoder_hidden_states=cond).sample
    want = scheduler.get_velocity(latents, noise, t) if scheduler.config.prediction_type == "v_prediction" else noise
    return torch.nn.functional.mse_loss(pred.float(), want.float())


def _save_lora(pipe, unet, folder: str) -> None:
    type(pipe).save_lora_weights(folder, unet_lora_layers=lora_state_dict(unet), safe_serialization=True)


def _load_checkpoint(unet, optimizer, folder: str) -> tuple[int, list[float]]:
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(os.path.join(folder, "pytorch_lora_weights.safetensors"))
    state = convert_unet_state_dict_to_peft({k.removeprefix("unet."): v for k, v in state.items()})
    result = set_peft_model_state_dict(unet, state, adapter_name="default")
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"checkpoint {folder} does not fit this UNet: unexpected {result.unexpected_keys[:3]}")
    optimizer.load_state_dict(load_state(folder, "optimizer"))
    with open(os.path.join(folder, "trainer_state.json")) as f:
        st = json.load(f)
    return int(st["global_step"]), list(st["losses"])


def train_removal_lora(config: RemovalLoraConfig, pipe=None, pairs: RemovalPairs | None = None,
                       progress: bool = True) -> RemovalLoraReport:
    """Train the removal LoRA as ``config`` says; ``pipe`` / ``pairs`` default to loading them."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from tqdm.auto import tqdm

    check_output_dir(config.output_dir, flag="output_dir")
    t0 = time.time()
    accelerator = Accelerator(mixed_precision=config.mixed_precision,
                              gradient_accumulation_steps=config.gradient_accumulation_steps)
    if pipe is None:
        from ..inpainting.diffusers_inpaint import DiffusersInpainter
        pipe = DiffusersInpainter.from_pretrained(config.pretrained).pipe
    if pairs is None:
        pairs = _load_pairs(config)
    pipe.to(accelerator.device)
    pipe.vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    unet = pipe.unet
    if unet.config.in_channels != 9:
        raise ValueError(f"removal LoRA needs a 9-channel inpainting UNet, got in_channels={unet.config.in_channels}")
    add_removal_lora(unet, config.rank, config.target_modules)
    if accelerator.mixed_precision in ("fp16", "bf16"):
        from diffusers.training_utils import cast_training_params
        cast_training_params(unet, dtype=torch.float32)
    optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=config.learning_rate)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    text = _empty_prompt(pipe)

    resumed = last_checkpoint(config.output_dir) if config.resume else None
    step, losses = _load_checkpoint(unet, optimizer, resumed) if resumed else (0, [])
    unet_p, optimizer = accelerator.prepare(unet, optimizer)
    unet_p.train()
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, desc="removal LoRA")
    while step < config.max_steps:
        g = torch.Generator().manual_seed(config.seed + step)
        idx = torch.randint(len(pairs), (config.batch_size,), generator=g).tolist()
        batch = [torch.stack([pairs[i][k] for i in idx]) for k in range(3)]
        with accelerator.accumulate(unet_p):
            loss = removal_loss(pipe, unet_p, scheduler, batch, g, text)
            if not torch.isfinite(loss):
                raise NonFiniteTrainingError(f"the loss is {float(loss)} at step {step + 1}: training diverged "
                                             f"(learning_rate={config.learning_rate}); no final LoRA was written")
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if step % config.save_steps == 0 or step == config.max_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                _save_checkpoint(pipe, accelerator.unwrap_model(unet_p), optimizer, config, step, losses)
    bar.close()
    final = os.path.join(config.output_dir, FINAL_DIR)
    if accelerator.is_main_process:
        info = {"config": dataclasses.asdict(config), "steps": step, "losses": losses, "resumed_from": resumed}

        def write(tmp):
            _save_lora(pipe, accelerator.unwrap_model(unet_p), tmp)
            write_json_atomic(os.path.join(tmp, "removal_lora.json"), info)
        write_folder_atomic(final, write)
        summary = RunSummary(stage="removal-lora", output_dir=config.output_dir, model_path=final, global_step=step,
                             num_examples=len(pairs), world_size=accelerator.num_processes, resumed_from=resumed,
                             train_metrics={"train_loss": losses[-1]}, seconds=round(time.time() - t0, 2))
        write_json_atomic(os.path.join(config.output_dir, SUMMARY_FILE), dataclasses.asdict(summary))
    accelerator.wait_for_everyone()
    return RemovalLoraReport(losses, step, final, resumed)


def _save_checkpoint(pipe, unet, optimizer, config, step: int, losses: list[float]) -> None:
    def write(tmp):
        _save_lora(pipe, unet, tmp)
        opt = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
        save_state(tmp, "optimizer", opt.state_dict())
        write_json_atomic(os.path.join(tmp, "trainer_state.json"), {"global_step": step, "losses": losses})
        write_json_atomic(os.path.join(tmp, COMPLETE_MARKER), {"global_step": step})
    write_folder_atomic(os.path.join(config.output_dir, f"checkpoint-{step}"), write)


def _load_pairs(config: RemovalLoraConfig) -> RemovalPairs:
    if config.data == "synthetic":
        return RemovalPairs.synthetic(config.synthetic_examples, config.synthetic_seed, config.synthetic_size,
                                      config.resolution, config.dilate)
    from ..data.pipe import load_pipe
    # A row budget streams PIPE (80 GB) instead of materialising it.
    data = load_pipe(config.pipe_source, config.pipe_masks, streaming=config.pipe_rows is not None,
                     keep_target=True, with_mask=True)
    return RemovalPairs.pipe(data.dataset, config.resolution, config.dilate, config.pipe_rows)
