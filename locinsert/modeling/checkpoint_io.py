"""One save/load contract for every model: ``config.json`` + safetensors, all-or-nothing, named load errors.

A model class gets it by inheriting :class:`CheckpointMixin` first (``class M(CheckpointMixin,
PreTrainedModel)`` with ``config_class``): an atomic ``save_pretrained`` (never pickle), a
``from_pretrained`` for a folder or a hub id (the usual hub keywords; encoder weights are never
downloaded: ``offline_fields``) and registration with ``AutoConfig`` / ``AutoModel``.

Each way a checkpoint can be wrong is a named :class:`CheckpointError` whose message names the file
and the problem; each is also the built-in error it was before (in brackets), so old ``except``
clauses still catch it: :class:`CheckpointNotFoundError` (FileNotFoundError: the folder or a file it
needs is missing), :class:`NotACheckpointError` (ValueError: a file, JSON that does not parse, a
config that builds nothing), :class:`WrongModelTypeError` (ValueError: another model's config),
:class:`TruncatedCheckpointError` (ValueError: unreadable safetensors), :class:`WeightMismatchError`
(ValueError: tensors missing, unexpected or of other shapes), :class:`NonFiniteWeightsError`
(ValueError: NaN or inf), :class:`HubUnavailableError` (OSError: a hub id that cannot be fetched).
:func:`loaded` gives another library's loader (CLIPSeg) the same errors.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable

import torch

WEIGHTS_NAME, CONFIG_NAME, INDEX_NAME = "model.safetensors", "config.json", "model.safetensors.index.json"
#: what a save replaces in an existing folder, even if it does not write it (stale shards, old formats)
CHECKPOINT_FILES = (CONFIG_NAME, WEIGHTS_NAME, INDEX_NAME, "model-*-of-*.safetensors", "pytorch_model*.bin")
#: ``from_pretrained`` keywords that say where and how to fetch a hub id's files
HUB_KEYWORDS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")
# keywords AutoModel and Trainer pass that mean nothing to a local safetensors load
_IGNORED_KEYWORDS = ("trust_remote_code", "_from_auto", "_commit_hash", "adapter_kwargs", "code_revision")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class CheckpointError(Exception):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The local checkpoint folder, or a file it must hold (config, weights, a shard), does not exist."""


class NotACheckpointError(CheckpointError, ValueError):
    """The path is not a checkpoint folder: a file, or a config/index that is not valid, or builds nothing."""


class _FileNotFolderError(NotACheckpointError, NotADirectoryError):
    """A file where the checkpoint folder should be (a ``NotADirectoryError`` too, as it always was)."""


class WrongModelTypeError(CheckpointError, ValueError):
    """``config.json`` belongs to another model (its ``model_type`` differs)."""


class TruncatedCheckpointError(CheckpointError, ValueError):
    """A weights file that is not readable safetensors (cut short by a full disk or a copy, or corrupt)."""


class WeightMismatchError(CheckpointError, ValueError):
    """Tensors missing, unexpected or of other shapes than the config builds."""


class NonFiniteWeightsError(CheckpointError, ValueError):
    """NaN or infinite values in the weights (a damaged file or a diverged run)."""


class HubUnavailableError(CheckpointError, OSError):
    """A hub id whose files cannot be fetched: offline without a cached copy, no such repository, no access."""


class CheckpointSource:
    """Where a checkpoint is: ``folder`` (absolute local path) or a hub id (``folder`` is None).

    A path that exists, or that only a path could be (absolute, ``./x``, ``~/x``, ``a/b/c``), is
    local: a missing one is a :class:`CheckpointNotFoundError`, a file a :class:`NotACheckpointError`.
    Anything else is tried on the hub.
    """

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
                raise _FileNotFolderError(f"{self.name} is a file; give the checkpoint folder "
                                          f"(holding {CONFIG_NAME} and {WEIGHTS_NAME})")
            self.folder: str | None = os.path.abspath(path)
        elif looks_local:
            raise CheckpointNotFoundError(f"checkpoint folder not found: {self.name}")
        else:
            self.folder = None

    def file(self, filename: str, required: bool = True) -> str | None:
        """Local path of ``filename`` in the checkpoint (downloaded/cached for a hub id), or None."""
        if self.folder is not None:
            path = os.path.join(self.folder, self.hub.get("subfolder") or "", filename)
            if os.path.isfile(path):
                return path
            if required:
                raise CheckpointNotFoundError(f"{os.path.dirname(path)} has no {filename}: "
                                              f"not a complete checkpoint folder")
            return None
        from transformers.utils import cached_file

        try:
            return cached_file(self.name, filename, _raise_exceptions_for_missing_entries=required, **self.hub)
        except OSError as e:
            raise HubUnavailableError(f"{self.name}: no such local folder, and {filename} could not be loaded "
                                      f"from the hub id {self.name!r} ({str(e).splitlines()[0]})") from e


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotACheckpointError(f"{path} is not valid JSON ({e})") from e


def config_dict(path: str, model_type: str, class_name: str) -> dict:
    """``config.json`` at ``path`` as a dict of this ``model_type``; else a named error."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise NotACheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    found = data.get("model_type")
    if found != model_type:
        raise WrongModelTypeError(f"{path} is {'a ' + repr(found) if found else 'not a'} model config, not a "
                                  f"{model_type!r} one ({class_name}); is this the right folder?")
    return data


def read_config(source: CheckpointSource, config_class) -> Any:
    """``config.json`` -> ``config_class``, or the named error for a file that is not JSON or not this model's."""
    path = source.file(CONFIG_NAME)
    data = config_dict(path, config_class.model_type, config_class.__name__)
    try:
        return config_class.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise NotACheckpointError(f"{path}: invalid {config_class.__name__} ({e})") from e


def build(model_class, config, source: CheckpointSource):
    """``model_class(config)``; a config whose values cannot build the model is a named error."""
    try:
        return model_class(config)
    except torch.OutOfMemoryError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, AssertionError) as e:
        where = source.file(CONFIG_NAME, required=False) if source.folder else f"{source.name} config"
        raise NotACheckpointError(f"{where}: cannot build a {model_class.__name__} from this config "
                                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e


def weight_files(source: CheckpointSource) -> list[str]:
    """``model.safetensors``, or the shards ``model.safetensors.index.json`` names."""
    index = source.file(INDEX_NAME, required=False)
    if not index:
        return [source.file(WEIGHTS_NAME)]
    try:
        shards = sorted(set(_read_json(index)["weight_map"].values()))
    except (KeyError, TypeError, AttributeError) as e:
        raise NotACheckpointError(f"{index} is not a valid safetensors index (JSON with a 'weight_map'): {e}") from e
    return [source.file(s) for s in shards]


def read_weights(files: list[str]) -> dict[str, torch.Tensor]:
    """All tensors of the files; a truncated or corrupt file is a :class:`TruncatedCheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(f))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise TruncatedCheckpointError(f"{f} is not a readable safetensors file (truncated or corrupt?): "
                                           f"{e}") from e
    return state


def check_state(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], files: list[str]) -> None:
    """Same names, same shapes, finite values; else a named error naming the file and the first few tensors."""
    where = files[0] if len(files) == 1 else f"{os.path.dirname(files[0])} (sharded weights)"
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightMismatchError(f"{where} does not match its config: {len(missing)} tensors missing "
                                  f"{missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}")
    wrong = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} for the config"
             for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise WeightMismatchError(f"{where} does not match its config: {len(wrong)} tensors have other shapes "
                                  f"({'; '.join(wrong[:3])})")
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise NonFiniteWeightsError(f"{where} holds NaN or infinite values in {len(bad)} tensors "
                                    f"({', '.join(bad[:5])}); the checkpoint is damaged or came from a diverged run")


class CheckpointMixin:
    """``save_pretrained`` / ``from_pretrained`` / Auto registration for a ``PreTrainedModel`` subclass.

    Inherit it first: ``class MyModel(CheckpointMixin, PreTrainedModel)`` with ``config_class`` set.
    A subclass may set ``offline_fields`` (config fields that name hub weights, with the value that
    turns them off: the weights are in the checkpoint), ``checkpoint_files`` (names a save supersedes
    in an existing folder) and override ``save_extra`` to write more files into the new folder.
    """

    offline_fields: dict[str, Any] = {}
    checkpoint_files: tuple[str, ...] = CHECKPOINT_FILES

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        config_class = cls.__dict__.get("config_class")
        if getattr(config_class, "model_type", ""):
            from transformers import AutoConfig, AutoModel

            AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
            AutoModel.register(config_class, cls, exist_ok=True)

    def save_extra(self, folder: str, state: dict[str, torch.Tensor]) -> None:
        """Write files besides ``config.json`` and ``model.safetensors`` into ``folder`` (default: none)."""

    def save_pretrained(self, save_directory, state_dict: dict | None = None, is_main_process: bool = True,
                        **kwargs) -> None:
        """Write ``config.json``, ``model.safetensors`` and ``save_extra``'s files into a temporary sibling
        folder swapped in with one rename (``locinsert.io.write_folder_atomic``): after any failure or
        kill the folder holds the whole old checkpoint or the whole new one. Other files in it (a model
        card) are kept; ``checkpoint_files`` (older shards, ``pytorch_model.bin``) are replaced. Tensor
        names stay as in memory. ``Trainer``'s extra keywords are ignored; ``push_to_hub`` is refused.
        """
        from safetensors.torch import save_file

        from ..io import write_folder_atomic

        if kwargs.get("push_to_hub"):
            raise ValueError("push_to_hub is not supported; upload the saved folder with huggingface_hub")
        if not is_main_process:
            return
        state = self.state_dict() if state_dict is None else state_dict
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        self.config.architectures = [type(self).__name__]

        def write(folder: str) -> None:
            save_file(state, os.path.join(folder, WEIGHTS_NAME), metadata={"format": "pt"})
            self.config.save_pretrained(folder)
            self.save_extra(folder, state)

        write_folder_atomic(save_directory, write, replaces=self.checkpoint_files)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """Load a saved model (a folder or a hub id, with the hub keywords) from safetensors.

        Rebuilt from its config with ``offline_fields`` set (no encoder download), then filled from the
        checkpoint. ``dtype`` (or ``torch_dtype``) casts it; other keywords override config fields.

        Raises:
            CheckpointError: the named errors of this module. TypeError: an unknown argument.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes no positional model arguments")
        hub = {k: kwargs.pop(k) for k in HUB_KEYWORDS if k in kwargs}
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        for k in _IGNORED_KEYWORDS:
            kwargs.pop(k, None)
        source = CheckpointSource(pretrained_model_name_or_path, hub)
        if config is None:
            config = read_config(source, cls.config_class)
        for k, v in kwargs.items():
            if not hasattr(config, k):
                raise TypeError(f"unexpected keyword argument {k!r}")
            setattr(config, k, v)
        for k, v in cls.offline_fields.items():
            setattr(config, k, v)
        model = build(cls, config, source)
        files = weight_files(source)
        state = read_weights(files)
        check_state(model.state_dict(), state, files)
        model.load_state_dict(state, strict=True)
        if dtype is not None and dtype != "auto":
            model = model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        model.config.name_or_path = source.name
        return model.eval()


def loaded(load: Callable[[], Any], name, model_type: str, class_name: str) -> Any:
    """``load()``, another library's ``from_pretrained`` of ``name``, with this module's named errors.

    A local folder must hold a config of ``model_type``; the library's own errors for a damaged file
    (safetensors' errors, torch's size-mismatch list) become the named ones.
    """
    from safetensors import SafetensorError

    source = CheckpointSource(name)
    if source.folder is not None:
        config_dict(source.file(CONFIG_NAME), model_type, class_name)
    try:
        return load()
    except SafetensorError as e:
        raise TruncatedCheckpointError(f"{name}: a weights file is not readable safetensors (truncated or "
                                       f"corrupt?): {e}") from e
    except RuntimeError as e:
        if "size mismatch" not in str(e):
            raise
        raise WeightMismatchError(f"{name} does not match its config: {str(e).splitlines()[-1].strip()}") from e
