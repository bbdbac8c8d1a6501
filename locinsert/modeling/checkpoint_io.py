"""Reading a saved checkpoint (``config.json`` + safetensors weights) with errors that name the problem.

Every savable model of the library loads through these steps, so a user who points at the wrong
thing gets one sentence naming the file and what is wrong with it, instead of a hub-id syntax error,
a raw ``SafetensorError`` or torch's list of size mismatches:

1. :class:`CheckpointSource`: is this a local folder or a hub id? A path that exists, or that only
   a path could be (absolute, ``./x``, ``~/x``, ``a/b/c``), is local: a missing one is a
   ``FileNotFoundError``, a file is a ``NotADirectoryError``. Anything else is tried on the hub.
2. :func:`read_config`: ``config.json`` must exist, be JSON, and have this model's ``model_type``.
3. :func:`build`: the config must build the model (bad field values become ``ValueError``).
4. :func:`weight_files` / :func:`read_weights`: ``model.safetensors`` (or the shards an index names)
   must exist and be readable safetensors.
5. :func:`check_state`: the same tensor names and shapes as the model built from the config, and
   only finite values (NaN weights would otherwise load and fail later, while sampling).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import torch

WEIGHTS_NAME, CONFIG_NAME, INDEX_NAME = "model.safetensors", "config.json", "model.safetensors.index.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class CheckpointSource:
    """Where a checkpoint is: ``folder`` (absolute local path) or a hub id (``folder`` is None)."""

    def __init__(self, name_or_path, hub: dict | None = None):
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a folder path or a hub id, got {type(name_or_path).__name__}")
        self.name = os.fspath(name_or_path)
        self.hub = dict(hub or {})
        if not self.name.strip():
            raise ValueError("checkpoint path is empty")
        path = os.path.expanduser(self.name)
        looks_local = (os.path.isabs(path) or path.startswith(".") or self.name.startswith("~")
                       or "\\" in path or not _HUB_ID.match(path))
        if os.path.exists(path):
            if not os.path.isdir(path):
                raise NotADirectoryError(f"{self.name} is a file; give the checkpoint folder "
                                         f"(holding {CONFIG_NAME} and {WEIGHTS_NAME})")
            self.folder: str | None = os.path.abspath(path)
        elif looks_local:
            raise FileNotFoundError(f"checkpoint folder not found: {self.name}")
        else:
            self.folder = None

    def file(self, filename: str, required: bool = True) -> str | None:
        """Local path of ``filename`` in the checkpoint (downloaded/cached for a hub id), or None."""
        if self.folder is not None:
            path = os.path.join(self.folder, self.hub.get("subfolder") or "", filename)
            if os.path.isfile(path):
                return path
            if required:
                raise FileNotFoundError(f"{os.path.dirname(path)} has no {filename}: "
                                        f"not a complete checkpoint folder")
            return None
        from transformers.utils import cached_file

        try:
            return cached_file(self.name, filename, _raise_exceptions_for_missing_entries=required, **self.hub)
        except OSError as e:
            raise OSError(f"{self.name}: no such local folder, and {filename} could not be loaded from the "
                          f"hub id {self.name!r} ({str(e).splitlines()[0]})") from e


def read_config(source: CheckpointSource, config_class) -> Any:
    """``config.json`` -> ``config_class``; ValueError naming the file if it is not JSON or not this model's."""
    path = source.file(CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    expected = config_class.model_type
    if data.get("model_type") != expected:
        found = data.get("model_type")
        raise ValueError(f"{path} is {'a ' + repr(found) if found else 'not a'} model config, not a "
                         f"{expected!r} one ({config_class.__name__}); is this the right folder?")
    try:
        return config_class.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: invalid {config_class.__name__} ({e})") from e


def build(model_class, config, source: CheckpointSource):
    """``model_class(config)``; a config whose values cannot build the model is a ValueError naming it."""
    try:
        return model_class(config)
    except torch.OutOfMemoryError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, AssertionError) as e:
        where = source.file(CONFIG_NAME, required=False) if source.folder else f"{source.name} config"
        raise ValueError(f"{where}: cannot build a {model_class.__name__} from this config "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e


def weight_files(source: CheckpointSource) -> list[str]:
    """``model.safetensors``, or the shards ``model.safetensors.index.json`` names."""
    index = source.file(INDEX_NAME, required=False)
    if not index:
        return [source.file(WEIGHTS_NAME)]
    try:
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{index} is not a valid safetensors index (JSON with a 'weight_map'): {e}") from e
    return [source.file(s) for s in shards]


def read_weights(files: list[str]) -> dict[str, torch.Tensor]:
    """All tensors of the files; a truncated or corrupt file is a ValueError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(f))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ValueError(f"{f} is not a readable safetensors file (truncated or corrupt?): {e}") from e
    return state


def check_state(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], files: list[str]) -> None:
    """Same names, same shapes, finite values; else a ValueError naming the file and the first few tensors."""
    where = files[0] if len(files) == 1 else f"{os.path.dirname(files[0])} (sharded weights)"
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{where} does not match its config: {len(missing)} tensors missing {missing[:5]}, "
                         f"{len(unexpected)} unexpected {unexpected[:5]}")
    wrong = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} for the config"
             for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ValueError(f"{where} does not match its config: {len(wrong)} tensors have other shapes "
                         f"({'; '.join(wrong[:3])})")
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{where} holds NaN or infinite values in {len(bad)} tensors ({', '.join(bad[:5])}); "
                         "the checkpoint is damaged or came from a diverged run")
