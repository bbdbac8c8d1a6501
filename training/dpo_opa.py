#!/usr/bin/env python3
"""Stage 'dpo' of the location model: `python training/dpo_opa.py --config training/configs/dpo_opa.yaml`.

Runs on a CPU, one GPU, or several GPUs / nodes under `torchrun` / `accelerate launch`. The dataset
comes from the config (`dataset: synthetic`, a PIPE hub id / parquet folder, or an OPA root);
any config field can be overridden on the command line (`--learning_rate 1e-4`). See docs/guides/training.md.
"""

import sys

from locinsert.training.stages import main

if __name__ == "__main__":
    sys.exit(main("dpo"))
