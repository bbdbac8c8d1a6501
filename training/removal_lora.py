#!/usr/bin/env python3
"""LoRA fine-tuning of an inpainting UNet for object removal (swapped pairs, empty prompt), on accelerate.

    python training/removal_lora.py --config training/configs/removal_lora_synthetic.yaml
    accelerate launch training/removal_lora.py --config training/configs/removal_lora_pipe.yaml
    python training/removal_lora.py --config training/configs/removal_lora_synthetic.yaml --max-steps 50

Any key of the YAML can be overridden as --key value (dashes or underscores). A run resumes from
the last complete checkpoint in output_dir. The LoRA lands in <output_dir>/final; use it with
DiffusersRemover.from_pretrained(pretrained, lora="<output_dir>/final") or
`locinsert edit IMAGE "remove the cup" --remover diffusers --lora <output_dir>/final`.
"""

import argparse
import dataclasses
import sys

from locinsert.training.removal_lora import RemovalLoraConfig, train_removal_lora


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML file of RemovalLoraConfig keys")
    for f in dataclasses.fields(RemovalLoraConfig):
        if f.name == "target_modules":
            p.add_argument("--target-modules", nargs="+", default=None)
        elif f.type in ("bool", bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", type=lambda s: s.lower() in ("1", "true", "yes"),
                           default=None)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None)
    args = vars(p.parse_args(argv))
    try:
        config = RemovalLoraConfig.from_yaml(args.pop("config"), **args)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    report = train_removal_lora(config)
    print(f"{report.steps} steps, last loss {report.losses[-1]:.4f}; LoRA -> {report.final_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
