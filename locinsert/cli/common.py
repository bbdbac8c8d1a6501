"""What every subcommand checks before it works, so that a user's mistake costs a second, not a run.

The error policy itself lives in ``cli/main.py`` (a user error is one line ``locinsert X: error: ...``
and exit code 2; ``--debug`` adds the traceback). This module holds the checks a command runs
*first*, each raising ``ValueError`` with a message naming the option:

- :func:`check_output_dir` / :func:`check_output_file`: the output can be written (not a file where
  a folder is wanted, not a folder where a file is, a writable parent), checked before any work, so a
  long evaluation is never lost to a typo in ``--out``;
- :func:`check_device`: ``--device`` names a device that exists on this machine;
- :func:`load_location_model`: a trained checkpoint or a random preset, or one line saying why not.

Numbers are checked earlier, while argparse reads them (``cli/options.py``).

New commands call these at the top of ``run`` and get the same behaviour for free.
"""

from __future__ import annotations

import os
import sys

from ..io import check_output_dir, check_output_file  # noqa: F401 (re-exported: the commands' checks)

#: --model names that build a random (untrained) model of a preset.
RANDOM_PRESETS = ("tiny", "synthetic")


def check_device(spec: str, flag: str = "--device") -> str:
    """A torch device that exists here: 'cpu', 'cuda', 'cuda:1', 'mps'...; else ``ValueError``."""
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ValueError(f"{flag} {spec!r} is not a torch device (use cpu, cuda, cuda:N or mps)") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag} {spec}: no CUDA GPU is available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{flag} {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{flag} {spec}: Apple MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        try:
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as e:
            raise ValueError(f"{flag} {spec}: device not usable here ({str(e).splitlines()[0]})") from e
    return spec


def load_location_model(spec: str | None, device: str = "cpu", seed: int = 0, flag: str = "--model"):
    """A ``LocationModel`` from a checkpoint folder / hub id, or a random one for 'tiny' / 'synthetic'.

    Every way the checkpoint can be wrong (missing, a file, broken config or weights) is a one-line
    ``ValueError`` naming ``flag`` and the problem.
    """
    import torch

    from ..modeling import LocationModel, LocationModelConfig

    if not spec:
        raise ValueError(f"{flag} is required: a trained LocationModel checkpoint (folder or hub id), or "
                         f"{' / '.join(RANDOM_PRESETS)} for an untrained random model (offline; random boxes)")
    device = check_device(device)
    if spec in RANDOM_PRESETS and not os.path.exists(spec):
        print(f"warning: {flag} {spec}: an UNTRAINED random model; its boxes carry no meaning", file=sys.stderr)
        torch.manual_seed(seed)
        model = LocationModel(LocationModelConfig.preset(spec, pretrained=False))
    else:
        try:
            model = LocationModel.from_pretrained(os.path.expanduser(spec))
        except (OSError, ValueError) as e:
            raise ValueError(f"{flag} {spec}: {e}") from e
    return model.to(device).eval()
