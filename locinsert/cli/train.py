"""Train a location model, one stage at a time, from a YAML config.

  locinsert train pretrain --config training/configs/pretrain_pipe.yaml
  locinsert train finetune --config training/configs/finetune_opa.yaml --learning_rate 1e-4
  locinsert train dpo      --config training/configs/dpo_opa.yaml --beta 0.2
  locinsert train encoder  --config training/configs/synthetic_encoder.yaml
  locinsert train synthetic --out runs/synthetic [--budget quick|default|long] [--seed 0]
  locinsert train textmask --config training/configs/synthetic_textmask.yaml

Stages (the paper's recipe): pretrain (box cross-entropy on PIPE), finetune (the same loss on OPA
positives), dpo (preference pairs of OPA, reference = the frozen finetuned model). The dataset comes
from the config: `dataset: synthetic`, a PIPE hub id / parquet folder, or an OPA root.
`encoder` (optional, before pretrain) trains the image encoder on the synthetic world's per-pixel part
labels; a location stage starts from it, frozen, with `image_encoder_checkpoint: <its output_dir>/final`.
`synthetic` runs the encoder stage and the three stages on the synthetic world within a CPU budget.
`textmask` trains the text -> mask model (TextMaskModel) for removal and moving, on the synthetic
world (about a minute; ends with its IoU/Dice table) or on PIPE's object masks.

Any field of the config (ModelArguments, DataArguments, and transformers' TrainingArguments or
trl's DPOConfig) can be given on the command line as `--name value`; it overrides the file.
`locinsert train <stage> --help` lists them all. The final model goes to <output_dir>/final; an
interrupted run resumes from its last complete checkpoint when started again with the same config.
Several GPUs / nodes: `torchrun --nproc_per_node N training/pretrain_pipe.py --config ...` or
`accelerate launch ...` (see docs/guides/training.md).
"""

from __future__ import annotations

import argparse

STAGE_CHOICES = ("encoder", "pretrain", "finetune", "dpo", "synthetic", "textmask")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=STAGE_CHOICES, help="which stage to run")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="--config FILE.yaml and --field value overrides (synthetic: --out DIR "
                             "--budget quick|default --seed N)")


def _synthetic_parser() -> argparse.ArgumentParser:
    from .options import Parser, seed

    p = Parser(prog="locinsert train synthetic",
               description="Pretrain, finetune and DPO on the synthetic world, then print "
                           "each stage's figures on the held-out test split.")
    p.add_argument("--out", default="runs/synthetic", help="output folder (one subfolder per stage)")
    p.add_argument("--budget", default="default", help="quick (about a minute, a smoke run), default (the demo's, "
                                                       "about 8 minutes) or long (under an hour)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the world and of training (0 <= seed < 2**31)")
    p.add_argument("--no-eval", action="store_true", help="train only, skip the learning table")
    return p


def run(args: argparse.Namespace) -> int:
    if args.stage == "synthetic":
        from ..training.synthetic import format_class_table, format_learning_table, run_synthetic_stages

        from .common import check_output_dir

        opts = _synthetic_parser().parse_args(args.options)
        check_output_dir(opts.out)
        report = run_synthetic_stages(opts.out, budget=opts.budget, seed=opts.seed, evaluate=not opts.no_eval)
        if report.table:
            print(format_learning_table(report.table))
            print("\noracle precision per class (K=100):\n" + format_class_table(report.table))
        return 0

    if args.stage == "textmask":
        from ..segmentation.training import main as textmask_main

        return textmask_main(args.options, prog="locinsert train textmask")

    from ..training.stages import main

    return main(args.stage, args.options, prog=f"locinsert train {args.stage}")
