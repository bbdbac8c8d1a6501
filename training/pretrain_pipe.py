#!/usr/bin/env python3
"""Stage 'pretrain' of the location model: `python training/pretrain_pipe.py --config training/configs/pretrain_pipe.yaml`.

Runs on a CPU, one GPU, or several GPUs / nodes under `torchrun` / `accelerate launch`. The dataset
comes from the config (`dataset: synthetic`, a PIPE hub id / parquet folder, or an OPA root);
any config field can be overridden on the command line (`--learning_rate 1e-4`). See docs/guides/training.md.
"""

import sys

from locinsert.training.stages import main

if __name__ == "__main__":
    sys.exit(main("pretrain"))
