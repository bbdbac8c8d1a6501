#!/usr/bin/env python3
"""Pretrain -> finetune -> DPO on the synthetic world within a CPU budget, then the learning table.

    python training/synthetic_stages.py --out runs/synthetic --budget default   # a few minutes
    python training/synthetic_stages.py --out runs/synthetic --budget quick     # about a minute

The same as `locinsert train synthetic`. Each stage can also be run alone from its YAML config,
e.g. `locinsert train pretrain --config training/configs/synthetic_pretrain.yaml`.
"""

import sys

from locinsert.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", "synthetic", *sys.argv[1:]]))
