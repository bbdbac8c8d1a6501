"""What every subcommand checks before it works, so that a user's mistake costs a second, not a run.

The error policy itself lives in ``cli/main.py`` (a user error is one line ``locinsert X: error: ...``
and exit code 2; ``--debug`` adds the traceback). This module holds the checks a command runs
*first*, each raising ``ValueError`` with a message naming the option:

- :func:`check_output_dir` / :func:`check_output_file`: the output can be written (not a file where
  a folder is wanted, not a folder where a file is, a writable parent), checked before any work, so a
  long evaluation is never lost to a typo in ``--out``;
- :func:`check_device`: ``--device`` names a device that exists on this machine;
- :func:`load_location_model`: a trained checkpoint or a random preset, or one line saying why not;
- :func:`check_sampling_options`: ``--temperature``/``--top-k``/``--top-p``/``--min-size``.

New commands call these at the top of ``run`` and get the same behaviour for free.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: --model names that build a random (untrained) model of a preset.
RANDOM_PRESETS = ("tiny", "synthetic")


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable_parent(path: Path, flag: str) -> None:
    anc = _existing_ancestor(path.parent if not path.exists() else path)
    if not anc.is_dir():
        raise ValueError(f"{flag} {path}: cannot be created, {anc} is a file")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: no permission to write in {anc}")


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """An output folder that exists or can be created; raises ``ValueError`` naming ``flag`` otherwise.

    Nothing is created here: call it before the work, ``mkdir`` when writing.
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    if not str(path).strip():
        raise ValueError(f"{flag} is empty")
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {path} is a file; give a folder for the outputs")
    if p.exists():
        if not os.access(p, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path}: no permission to write in this folder")
        return p
    _check_writable_parent(p, flag)
    return p


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """An output file that can be written (its folder exists or can be created, it is not a folder)."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if not str(path).strip():
        raise ValueError(f"{flag} is empty")
    if p.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{flag} {path}: no permission to overwrite this file")
    _check_writable_parent(p, flag)
    return p


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


def check_sampling_options(args) -> dict:
    """``sample()`` keywords from --temperature/--top-k/--top-p/--min-size, each checked and named."""
    from ..validation import check_float, check_int

    def named(fn, value, flag, **kw):
        try:
            return fn(value, flag, **kw)
        except TypeError as e:
            raise ValueError(str(e)) from e

    return dict(
        temperature=named(check_float, args.temperature, "--temperature", minimum=0, low_open=True),
        top_k=named(check_int, args.top_k, "--top-k", minimum=1, optional=True),
        top_p=named(check_float, args.top_p, "--top-p", minimum=0, maximum=1, low_open=True, optional=True),
        min_size=named(check_float, args.min_size, "--min-size", minimum=0, optional=True))


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
