#!/usr/bin/env python3
"""Stage 0, the image encoder: `python training/pretrain_encoder.py --config training/configs/synthetic_encoder.yaml`.

Trains the preset's image tower to label every pixel of synthetic scenes (wall, floor, window frame,
glass, crate, table top, ...), then saves it to `<output_dir>/final`. A location stage starts from
it, frozen, with `image_encoder_checkpoint: <output_dir>/final`. Any config field can be overridden
on the command line. See docs/guides/training.md.
"""

import sys

from locinsert.training.stages import main

if __name__ == "__main__":
    sys.exit(main("encoder"))
