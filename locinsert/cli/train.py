"""Train a location model, one stage at a time, from a YAML config.

  locinsert train pretrain --config training/configs/pretrain_pipe.yaml
  locinsert train finetune --config training/configs/finetune_opa.yaml --learning_rate 1e-4
  locinsert train dpo      --config training/configs/dpo_opa.yaml --beta 0.2
  locinsert train encoder  --config training/configs/synthetic_encoder.yaml
  locinsert train synthetic --out runs/synthetic [--budget quick|default|long] [--seed 0]
  locinsert train textmask --config training/configs/synthetic_textmask.yaml
  locinsert train removal-lora --config training/configs/removal_lora_synthetic.yaml

Stages (the paper's recipe): pretrain (box cross-entropy on PIPE), finetune (the same loss on OPA
positives), dpo (preference pairs of OPA, reference = the frozen finetuned model). The dataset comes
from the config: `dataset: synthetic`, a PIPE hub id / parquet folder, or an OPA root.
`encoder` (optional, before pretrain) trains the image encoder on the synthetic world's per-pixel part
labels; a location stage starts from it, frozen, with `image_encoder_checkpoint: <its output_dir>/final`.
`synthetic` runs the encoder stage and the three stages on the synthetic world within a CPU budget.
`textmask` trains the text -> mask model (TextMaskModel) for removal and moving, on the synthetic
world (about a minute; ends with its IoU/Dice table) or on PIPE's object masks. `removal-lora` trains
a LoRA of an inpainting UNet for object removal (training/configs/removal_lora_*.yaml).

Any field of the config (ModelArguments, DataArguments, and transformers' TrainingArguments or
trl's DPOConfig) can be given on the command line as `--name value`; it overrides the file.
`locinsert train <stage> --help` lists them all. The final model goes to <output_dir>/final; an
interrupted run resumes from its last complete checkpoint when started again with the same config.
Several GPUs / nodes: `torchrun --nproc_per_node N training/pretrain_pipe.py --config ...` or
`accelerate launch ...` (see docs/guides/training.md).
"""

from __future__ import annotations

import argparse

from .options import STAGE_CHOICES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=STAGE_CHOICES, help="which training run (locinsert.registry.TRAINING_STAGES)")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="--config FILE.yaml and --field value overrides (synthetic: --out DIR "
                             "--budget quick|default --seed N)")


def run(args: argparse.Namespace) -> int:
    from ..registry import TRAINING_STAGES

    return TRAINING_STAGES.get(args.stage)(argv=args.options, prog=f"locinsert train {args.stage}")
