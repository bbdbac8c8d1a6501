"""Checkpoints that are complete or invisible, and resuming from the last complete one.

``transformers.Trainer`` (5.x) writes ``output_dir/checkpoint-N/`` in place: weights
(``model.safetensors``, via ``save_pretrained``), then optimizer, scheduler and RNG state, then
``trainer_state.json``. A run killed half-way leaves a folder that *looks* like a checkpoint, and the
Trainer's own ``get_last_checkpoint`` would pick it. Instead of overriding the Trainer's private
``_save_checkpoint``, a public callback (``on_save``, which runs on every rank after the Trainer has
finished writing) waits for all ranks and then atomically drops a small ``checkpoint_complete.json``
into the folder (write to a temporary file, ``os.replace``). A checkpoint exists for this library
only once that marker does; ``last_checkpoint`` ignores everything else and
``discard_incomplete_checkpoints`` deletes it before a resumed run can write into it again.

The Trainer also pickles its ``TrainingArguments`` to ``training_args.bin``; the callback replaces it
by ``training_args.json`` so that no checkpoint holds an arbitrary pickle. Optimizer, scheduler and
RNG state stay in torch's tensor format, which the Trainer loads with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "checkpoint_complete.json"
PICKLED_ARGS = "training_args.bin"
ARGS_JSON = "training_args.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def _wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def write_json_atomic(path: str, payload: Any) -> None:
    """Write JSON so that readers see either the old file or the whole new one, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _replace_pickled_args(folder: str, args: Any) -> None:
    """Swap the Trainer's pickled ``training_args.bin`` for a readable JSON copy."""
    pickled = os.path.join(folder, PICKLED_ARGS)
    write_json_atomic(os.path.join(folder, ARGS_JSON), json.loads(args.to_json_string()))
    if os.path.exists(pickled):
        os.remove(pickled)


def checkpoint_step(path: str) -> int | None:
    """N for a folder named ``checkpoint-N``, else None."""
    m = _CHECKPOINT_RE.match(os.path.basename(os.path.normpath(path)))
    return int(m.group(1)) if m else None


def is_complete_checkpoint(path: str) -> bool:
    """True when the folder carries the completion marker for its own step."""
    marker = os.path.join(path, COMPLETE_MARKER)
    if not os.path.isfile(marker):
        return False
    try:
        with open(marker) as f:
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
    """Turn ``resume_from_checkpoint`` (True = "the last complete one, if any", or a path) into a path or None."""
    if resume_from_checkpoint in (None, False, "", "false", "False"):
        return None
    if resume_from_checkpoint in (True, "true", "True", "last"):
        return last_checkpoint(output_dir)
    path = str(resume_from_checkpoint)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"resume_from_checkpoint: no such checkpoint folder {path!r}")
    if not is_complete_checkpoint(path):
        raise ValueError(f"resume_from_checkpoint: {path!r} is incomplete (no {COMPLETE_MARKER}); "
                         "it was interrupted while saving")
    return path


class AtomicCheckpointCallback(TrainerCallback):
    """Marks each checkpoint complete once every rank has finished writing it (see the module docstring)."""

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        _wait_for_everyone()  # every rank has written its RNG state / shards
        if args.should_save and os.path.isdir(folder):
            _replace_pickled_args(folder, args)
            files = sorted(f for f in os.listdir(folder) if not f.startswith(".tmp-"))
            write_json_atomic(os.path.join(folder, COMPLETE_MARKER),
                              {"global_step": state.global_step, "files": files})
        _wait_for_everyone()
        return control


def save_final_model(trainer, path: str) -> str:
    """``trainer.save_model`` into ``path`` atomically: write ``path.tmp``, then rename.

    A reader of ``path`` sees the previous model or the new one, never a half-written folder.
    Call on every rank (sharded models gather collectively). Returns ``path``.
    """
    path = os.path.normpath(path)
    tmp, old = path + ".tmp", path + ".old"
    should_save = trainer.args.should_save
    if should_save:
        shutil.rmtree(tmp, ignore_errors=True)
    _wait_for_everyone()
    trainer.save_model(tmp)
    _wait_for_everyone()
    if should_save:
        _replace_pickled_args(tmp, trainer.args)
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    _wait_for_everyone()
    return path
