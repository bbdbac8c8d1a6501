#!/usr/bin/env python3
"""LoRA fine-tuning of an inpainting UNet for object removal (swapped pairs, empty prompt), on accelerate.

    python training/removal_lora.py --config training/configs/removal_lora_synthetic.yaml
    accelerate launch training/removal_lora.py --config training/configs/removal_lora_pipe.yaml
    python training/removal_lora.py --config training/configs/removal_lora_synthetic.yaml --max_steps 50

The same as `locinsert train removal-lora --config ...`. Any key of the YAML can be overridden as
--key value. A run resumes from the last complete checkpoint in output_dir. The LoRA lands in
<output_dir>/final; use it with DiffusersRemover.from_pretrained(pretrained, lora="<output_dir>/final") or
`locinsert edit IMAGE "remove the cup" --remover diffusers --lora <output_dir>/final`.
"""

import sys

from locinsert.training.removal_lora import main

if __name__ == "__main__":
    sys.exit(main())
