"""Checkpoints that are complete or invisible, pickle-free, and resuming from the last complete one.

``transformers.Trainer`` (5.x) writes ``output_dir/checkpoint-N/`` in place: weights
(``model.safetensors``, via ``save_pretrained``), then optimizer, scheduler and RNG state, then
``trainer_state.json``. A run killed half-way leaves a folder that *looks* like a checkpoint, and the
Trainer's own ``get_last_checkpoint`` would pick it. Instead of overriding the Trainer's private
``_save_checkpoint``, a public callback (``on_save``, which runs on every rank after the Trainer has
finished writing) waits for all ranks and then atomically drops a small ``checkpoint_complete.json``
into the folder (write to a temporary file, ``os.replace``). A checkpoint exists for this library
only once that marker does; ``last_checkpoint`` ignores everything else and
``discard_incomplete_checkpoints`` deletes it before a resumed run can write into it again.

**No pickles.** The Trainer writes ``training_args.bin``, ``optimizer.pt``, ``scheduler.pt``,
``scaler.pt`` and ``rng_state.pth`` (``rng_state_{rank}.pth`` with several processes) with
``torch.save``. The same ``on_save`` callback, *before* it writes the marker, turns each into
safetensors + JSON and deletes the pickle:

- ``optimizer.pt`` -> ``optimizer.safetensors`` (every tensor, keys like ``state.0.exp_avg``) +
  ``optimizer.json`` (``param_groups`` and non-tensor state, tensors referenced by key);
- ``scheduler.pt`` -> ``scheduler.json``; ``scaler.pt`` -> ``scaler.json``;
- ``rng_state[_R].pth`` -> ``rng_state[_R].safetensors`` (torch CPU/CUDA generator states, uint8) +
  ``rng_state[_R].json`` (python ``random`` and numpy states as lists); each rank converts its own;
- ``training_args.bin`` -> ``training_args.json``.

The JSON keeps what JSON alone would lose (tuples, int dict keys, numpy arrays) as small tagged
objects, so ``decode_state(encode_state(x))`` rebuilds ``x`` exactly. A crash half-way through the
conversion leaves a folder without the marker, which is never resumed from.

**The model files** inside ``checkpoint-N`` are written by ``LocationModel.save_pretrained``, whose
saves are otherwise all-or-nothing folder swaps (``locinsert/io.py``). A checkpoint folder is shared:
under DDP the other ranks write their RNG state into it while rank 0 writes the weights, so swapping
it would lose their files. :class:`SafeCheckpointMixin` therefore runs the Trainer's own checkpoint
saves inside ``saving_in_place()`` (each file replaced atomically, in the existing folder), and the
completion marker is what makes the folder a checkpoint: the same all-or-nothing promise, kept by
the marker instead of the rename. ``save_final_model`` swaps the final folder in with the same
``swap_in`` as every other save.

**Loading it back** is done by :class:`SafeCheckpointMixin` (the base of ``runner.ModelLossTrainer`` and
``BoxDPOTrainer``), which overrides the Trainer's ``_load_optimizer_and_scheduler``,
``_load_scaler`` and ``_load_rng_state``. Public hooks are not enough for an *exact* resume: the
Trainer restores the RNG state at a precise point inside its epoch loop (after the dataloader
iterator has drawn its shuffling seed from the global torch generator and the already-trained
batches have been skipped), and ``on_train_begin`` runs before that iterator exists, so restoring
there would reshuffle the data. Overriding the loader methods keeps the Trainer's own timing and
only changes the file format; when no converted files are present they fall back to the Trainer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import random
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from ..io import saving_in_place, swap_in, write_file_atomic, write_json_atomic  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "checkpoint_complete.json"
PICKLED_ARGS = "training_args.bin"
ARGS_JSON = "training_args.json"
# the Trainer's torch.save files (transformers.trainer OPTIMIZER_NAME, SCHEDULER_NAME, SCALER_NAME)
OPTIMIZER_PT, SCHEDULER_PT, SCALER_PT = "optimizer.pt", "scheduler.pt", "scaler.pt"
OPTIMIZER_NAME, SCHEDULER_JSON, SCALER_JSON = "optimizer", "scheduler.json", "scaler.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def _wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def _replace_pickled_args(folder: str, args: Any) -> None:
    """Swap the Trainer's pickled ``training_args.bin`` for a readable JSON copy."""
    pickled = os.path.join(folder, PICKLED_ARGS)
    write_json_atomic(os.path.join(folder, ARGS_JSON), json.loads(args.to_json_string()))
    if os.path.exists(pickled):
        os.remove(pickled)


# -- pickle-free state files ------------------------------------------------------------------------

def encode_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """A JSON-able copy of ``obj`` with every tensor moved into ``tensors`` under its dotted path.

    Tuples, dicts with non-string keys and numpy arrays/scalars become tagged objects so that
    :func:`decode_state` gives back exactly the same structure. Anything else raises ``TypeError``
    (rather than being silently stringified).
    """
    def path(key) -> str:
        return f"{prefix}.{key}" if prefix else str(key)

    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, tensors, path(i)) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, tensors, path(i)) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode_state(v, tensors, path(k)) for k, v in obj.items()}
        if all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in obj):
            return {"__items__": [[k, encode_state(v, tensors, path(k))] for k, v in obj.items()]}
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix or '<root>'!r} without pickle")


def decode_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_state`."""
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        key = obj["__tensor__"]
        if key not in tensors:
            raise ValueError(f"checkpoint state refers to tensor {key!r}, which its safetensors file lacks")
        return tensors[key]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(decode_state(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: decode_state(v, tensors) for k, v in obj["__items__"]}
    return {k: decode_state(v, tensors) for k, v in obj.items()}


def save_state(folder: str, name: str, state: Any, json_only: bool = False) -> None:
    """Write ``state`` as ``name.json`` (+ ``name.safetensors`` holding its tensors), each atomically.

    The tensor file is written first, so a ``name.json`` on disk always has its tensors next to it.
    """
    tensors: dict[str, torch.Tensor] = {}
    payload = encode_state(state, tensors)
    if tensors and json_only:
        raise TypeError(f"{name}: state holds tensors ({sorted(tensors)[:3]}...) but only JSON is written")
    if tensors:
        write_file_atomic(os.path.join(folder, f"{name}.safetensors"), lambda tmp: save_file(tensors, tmp),
                          suffix=".safetensors")
    write_json_atomic(os.path.join(folder, f"{name}.json"), {"state": payload, "tensors": bool(tensors)})


def load_state(folder: str, name: str) -> Any:
    """Read back what :func:`save_state` wrote (tensors on the CPU)."""
    with open(os.path.join(folder, f"{name}.json")) as f:
        payload = json.load(f)
    tensors = load_file(os.path.join(folder, f"{name}.safetensors")) if payload.get("tensors") else {}
    return decode_state(payload["state"], tensors)


def has_state(folder: str, name: str) -> bool:
    return os.path.isfile(os.path.join(folder, f"{name}.json"))


def _torch_load_tensors(path: str) -> Any:
    """Read a Trainer ``torch.save`` file the safe way (tensors and allow-listed numpy objects only)."""
    from transformers.trainer_pt_utils import safe_globals

    with safe_globals():
        return torch.load(path, map_location="cpu", weights_only=True)


def _convert(folder: str, pickled: str, name: str, json_only: bool = False) -> None:
    """The Trainer's ``torch.save`` file ``pickled`` (if there is one) -> :func:`save_state` ``name``."""
    path = os.path.join(folder, pickled)
    if os.path.isfile(path):
        save_state(folder, name, _torch_load_tensors(path), json_only=json_only)
        os.remove(path)


def rng_state_name(process_index: int, world_size: int) -> str:
    """``rng_state`` or ``rng_state_{rank}`` (the Trainer's naming, without the extension)."""
    return "rng_state" if world_size <= 1 else f"rng_state_{process_index}"


def convert_shared_state(folder: str) -> None:
    """``optimizer.pt``, ``scheduler.pt``, ``scaler.pt`` -> safetensors/JSON (main process)."""
    _convert(folder, OPTIMIZER_PT, OPTIMIZER_NAME)
    _convert(folder, SCHEDULER_PT, "scheduler", json_only=True)
    _convert(folder, SCALER_PT, "scaler")


def pickled_files(folder: str) -> list[str]:
    """Files in ``folder`` with a pickle-format extension."""
    return sorted(f for f in os.listdir(folder) if f.endswith(PICKLE_SUFFIXES))


class SafeCheckpointMixin:
    """Put before ``transformers.Trainer`` in the bases: resumes from the pickle-free files at the Trainer's own
    points (see the module docstring); DeepSpeed / FSDP formats and older checkpoints use its own loaders."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The Trainer's own saves (checkpoints, hub pushes) write in place; see the module docstring."""
        if not _internal_call:
            return super().save_model(output_dir, _internal_call)
        with saving_in_place():
            return super().save_model(output_dir, _internal_call=True)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None or self.is_deepspeed_enabled or self.is_fsdp_enabled or \
                not (has_state(checkpoint, OPTIMIZER_NAME) and has_state(checkpoint, "scheduler")):
            return super()._load_optimizer_and_scheduler(checkpoint)
        # optimizer.load_state_dict moves each state tensor to its parameter's device and dtype
        self.optimizer.load_state_dict(load_state(checkpoint, OPTIMIZER_NAME))
        self.lr_scheduler.load_state_dict(load_state(checkpoint, "scheduler"))

    def _load_scaler(self, checkpoint: str | None) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        if checkpoint is None or scaler is None or not has_state(checkpoint, "scaler"):
            return super()._load_scaler(checkpoint)
        scaler.load_state_dict(load_state(checkpoint, "scaler"))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        name = rng_state_name(self.args.process_index, self.args.world_size)
        if checkpoint is None or not has_state(checkpoint, name):
            return super()._load_rng_state(checkpoint)  # logs that reproducibility is not guaranteed
        state = load_state(checkpoint, name)
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.random.set_rng_state(state["cpu"])
        if torch.cuda.is_available() and "cuda" in state:
            # a list (all devices) under DDP, one state otherwise: as the Trainer saved it
            if isinstance(state["cuda"], (list, tuple)):
                torch.cuda.random.set_rng_state_all(state["cuda"])
            else:
                torch.cuda.random.set_rng_state(state["cuda"])
        others = sorted(set(state) - {"python", "numpy", "cpu", "cuda"})
        if others:
            logger.warning("RNG state of %s in %s is not restored: resuming may not be exact", others, checkpoint)


# -- finding checkpoints ---------------------------------------------------------------------------

def checkpoint_step(path: str) -> int | None:
    """N for a folder named ``checkpoint-N``, else None."""
    m = _CHECKPOINT_RE.match(os.path.basename(os.path.normpath(path)))
    return int(m.group(1)) if m else None


def is_complete_checkpoint(path: str) -> bool:
    """True when the folder carries the completion marker for its own step."""
    try:
        with open(os.path.join(path, COMPLETE_MARKER)) as f:
            return json.load(f).get("global_step") == checkpoint_step(path)
    except (OSError, ValueError):
        return False


def list_checkpoints(output_dir: str) -> list[tuple[int, str, bool]]:
    """``(step, path, complete)`` for every ``checkpoint-N`` folder, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        step = checkpoint_step(name)
        if step is not None and os.path.isdir(path):
            found.append((step, path, is_complete_checkpoint(path)))
    return sorted(found)


def last_checkpoint(output_dir: str) -> str | None:
    """The newest *complete* checkpoint under ``output_dir``, or None."""
    complete = [path for _, path, ok in list_checkpoints(output_dir) if ok]
    return complete[-1] if complete else None


def discard_incomplete_checkpoints(output_dir: str) -> list[str]:
    """Delete checkpoint folders without a completion marker (what an interrupted save leaves behind).

    Call on the main process only, before training starts. Returns the deleted paths.
    """
    removed = []
    for _, path, ok in list_checkpoints(output_dir):
        if not ok:
            logger.warning("removing incomplete checkpoint %s (interrupted while saving)", path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def resolve_resume(output_dir: str, resume_from_checkpoint: str | bool | None) -> str | None:
    """Turn ``resume_from_checkpoint`` into a path or None: True / "last" = the last complete one, if any;
    None, False, "" and "false" / "no" / "none" / "never" (any case) = start afresh; else a checkpoint path."""
    path = str(resume_from_checkpoint)
    if resume_from_checkpoint in (None, False) or path.lower() in ("", "false", "no", "none", "never"):
        return None
    if resume_from_checkpoint is True or path.lower() in ("true", "last"):
        return last_checkpoint(output_dir)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"resume_from_checkpoint: no such checkpoint folder {path!r}")
    if not is_complete_checkpoint(path):
        raise ValueError(f"resume_from_checkpoint: {path!r} is incomplete (no {COMPLETE_MARKER}); "
                         "it was interrupted while saving")
    return path


class AtomicCheckpointCallback(TrainerCallback):
    """Makes each checkpoint pickle-free, then complete once every rank is done (see the module docstring)."""

    def on_save(self, args, state, control, **kwargs):
        """Convert the Trainer's pickled state to safetensors and JSON, then mark the checkpoint complete."""
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):  # each rank wrote (and now converts) its own RNG state
            name = rng_state_name(args.process_index, args.world_size)
            _convert(folder, f"{name}.pth", name)
        _wait_for_everyone()  # every rank has written and converted its RNG state / shards
        if args.should_save and os.path.isdir(folder):
            convert_shared_state(folder)
            _replace_pickled_args(folder, args)
            files = sorted(f for f in os.listdir(folder) if not f.startswith(".tmp-"))
            write_json_atomic(os.path.join(folder, COMPLETE_MARKER),
                              {"global_step": state.global_step, "files": files})
        _wait_for_everyone()
        return control


def save_final_model(trainer, path: str) -> str:
    """``trainer.save_model`` into ``path`` atomically: write ``path.tmp``, then swap it in (``io.swap_in``).

    A reader of ``path`` sees the previous model or the new one, never a half-written folder.
    Call on every rank (sharded models gather collectively). Returns ``path``.
    """
    path = os.path.normpath(path)
    tmp = path + ".tmp"
    should_save = trainer.args.should_save
    if should_save:
        shutil.rmtree(tmp, ignore_errors=True)
    _wait_for_everyone()
    trainer.save_model(tmp)
    _wait_for_everyone()
    if should_save:
        _replace_pickled_args(tmp, trainer.args)
        old = swap_in(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    _wait_for_everyone()
    return path
