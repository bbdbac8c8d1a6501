#!/usr/bin/env python3
"""Train the text -> mask model (``TextMaskModel``): `python training/textmask.py --config training/configs/synthetic_textmask.yaml`.

The same as `locinsert train textmask --config ...`. On the synthetic world (about a minute on one CPU
thread) it ends with the mask-quality table on held-out scenes; `training/configs/textmask_pipe.yaml`
trains the `base` preset on PIPE's object masks. Runs on a CPU, one GPU, or several under `torchrun` /
`accelerate launch`; any config field can be overridden on the command line (`--learning_rate 1e-3`).
"""

import sys

from locinsert.segmentation.training import main

if __name__ == "__main__":
    sys.exit(main())
