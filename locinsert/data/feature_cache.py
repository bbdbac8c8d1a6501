"""Frozen-encoder features computed once, stored on disk in safetensors shards, read back by key.

The image encoder is frozen in every training stage, so its output for a given image never changes.
:class:`FeatureCache` stores ``encode_fn(images)`` per image key and hands it back by key; training
then passes ``image_features=`` to the model and skips the ViT.

Layout under ``root``::

    encoder-<sha256(encoder_id)[:16]>/       one folder per encoder identity
        encoder.json                          {"encoder_id": ...}
        shard-<digest of its keys>.safetensors    tensors "0", "1", ... (one per key)
        shard-<digest of its keys>.json           manifest: keys, encoder_id, bytes, sha256

- **Identity.** Features are looked up under the encoder's identity string (for a
  :class:`~locinsert.LocationModel`, ``model.image_encoder_id``: config + weights digest), so a
  different or retrained encoder can never read stale features; its keys simply miss.
- **Keys** name images: dataset ids (``"opa/442445"``, ``"pipe/COCO/150265/417517"``) or
  :func:`content_key` (a digest of the pixels) when there are none. A flipped image is another key.
- **Several processes** fill disjoint shards: the key list is cut into chunks of ``shard_size``
  and chunk ``c`` belongs to rank ``c % world_size`` (pass ``accelerator.process_index`` /
  ``num_processes``, then ``wait_for_everyone()`` and :meth:`FeatureCache.refresh`).
- **Crash safety.** A shard is written to a temporary file and ``os.replace``-d into place, then
  its manifest the same way; a shard without a manifest does not exist for readers.
- **Corruption.** Opening checks each manifest's shard size (a truncated file is dropped at once).
  With ``verify="hash"`` (default) a shard's SHA-256 is also checked the first time it is read, and
  :meth:`fill` checks every shard it relies on: a corrupt shard is deleted and recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..images import load_image

__all__ = ["FeatureCache", "content_key"]


def content_key(image) -> str:
    """A key from the pixels of an image (PIL, path or uint8 array): same pixels, same key."""
    img = load_image(image)
    h = hashlib.sha256(f"{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return "sha256:" + h.hexdigest()[:32]


def _digest(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FeatureCache:
    """Encoder outputs per image key, in safetensors shards under ``root``; see the module docstring.

    Args:
        root: the cache folder (shared by all encoders; each gets its own subfolder).
        encoder_id: the encoder's identity string; a different id never sees these features.
        encode_fn: ``list of RGB PIL images -> Tensor (B, ...)``; needed only to :meth:`fill`.
        shard_size: images per shard.
        dtype: store features in this dtype (e.g. ``torch.float16`` halves the disk); default as computed.
        verify: ``"hash"`` (check SHA-256 on first read; default) or ``"size"`` (file size only).
    """

    def __init__(self, root: str | os.PathLike, encoder_id: str, encode_fn: Callable | None = None, *,
                 shard_size: int = 256, dtype: torch.dtype | None = None, verify: str = "hash"):
        if not isinstance(encoder_id, str) or not encoder_id.strip():
            raise ValueError("encoder_id must be a non-empty string naming the encoder (config + weights)")
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
        if verify not in ("hash", "size"):
            raise ValueError(f"verify must be 'hash' or 'size', got {verify!r}")
        self.encoder_id, self.encode_fn = encoder_id, encode_fn
        self.shard_size, self.dtype, self.verify = shard_size, dtype, verify
        self.dir = Path(root) / f"encoder-{_digest(encoder_id)}"
        self.dir.mkdir(parents=True, exist_ok=True)
        ident = self.dir / "encoder.json"
        if ident.exists():
            stored = json.loads(ident.read_text()).get("encoder_id")
            if stored != encoder_id:
                raise ValueError(f"{self.dir} belongs to encoder {stored!r}, not {encoder_id!r}")
        else:
            _atomic_write_bytes(ident, json.dumps({"encoder_id": encoder_id}).encode())
        self.invalid: list[str] = []  # shards found bad, with the reason
        self.refresh()

    @classmethod
    def for_model(cls, model, root: str | os.PathLike, **kwargs) -> "FeatureCache":
        """A cache of ``model.encode_image(model.preprocess(images))`` under ``model.image_encoder_id``."""
        for attr in ("preprocess", "encode_image", "image_encoder_id"):
            if not hasattr(model, attr):
                raise TypeError(f"model has no {attr!r}; pass encode_fn and encoder_id to FeatureCache instead")

        @torch.no_grad()
        def encode_fn(images):
            was_training = getattr(model, "training", False)
            if hasattr(model, "eval"):
                model.eval()
            try:
                pixel_values = model.preprocess(images)
                param = next(model.parameters(), None) if hasattr(model, "parameters") else None
                if param is not None:
                    pixel_values = pixel_values.to(device=param.device, dtype=param.dtype)
                return model.encode_image(pixel_values).detach().cpu()
            finally:
                if was_training:
                    model.train()

        return cls(root, model.image_encoder_id, encode_fn, **kwargs)

    # -- index ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the manifests (e.g. after other processes have filled their shards)."""
        self._index: dict[str, tuple[str, int]] = {}  # key -> (shard stem, position)
        self._shards: dict[str, dict] = {}
        self._verified: set[str] = set()
        self._handles: dict[str, Any] = {}
        for manifest in sorted(self.dir.glob("shard-*.json")):
            stem = manifest.stem
            try:
                info = json.loads(manifest.read_text())
                keys, size = info["keys"], int(info["bytes"])
                if info.get("encoder_id") != self.encoder_id:
                    raise ValueError("manifest of another encoder")
            except (ValueError, KeyError, TypeError) as e:
                self.invalid.append(f"{manifest.name}: unreadable manifest ({e})")
                continue
            shard = self.dir / f"{stem}.safetensors"
            actual = shard.stat().st_size if shard.exists() else None
            if actual != size:
                self.invalid.append(f"{shard.name}: {actual} bytes on disk, manifest says {size} (truncated?)")
                continue
            self._shards[stem] = info
            for pos, key in enumerate(keys):
                self._index.setdefault(key, (stem, pos))

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> list[str]:
        """Every key with stored features."""
        return list(self._index)

    @property
    def shards(self) -> list[str]:
        """File names of the valid shards."""
        return [f"{s}.safetensors" for s in self._shards]

    def _check(self, stem: str) -> bool:
        """Full check of one shard (hash and header); drops it from the index when bad."""
        if stem in self._verified:
            return True
        info, shard = self._shards[stem], self.dir / f"{stem}.safetensors"
        problem = ""
        if self.verify == "hash" and _file_sha256(shard) != info.get("sha256"):
            problem = "SHA-256 differs from its manifest (corrupt)"
        else:
            try:
                with safe_open(str(shard), framework="pt") as f:
                    if set(f.keys()) != {str(i) for i in range(len(info["keys"]))}:
                        problem = "tensor names differ from its manifest"
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
                problem = f"unreadable ({e})"
        if problem:
            self.invalid.append(f"{shard.name}: {problem}")
            self._drop(stem)
            return False
        self._verified.add(stem)
        return True

    def _drop(self, stem: str) -> None:
        self._handles.pop(stem, None)
        for key in self._shards.pop(stem, {}).get("keys", []):
            if self._index.get(key, ("",))[0] == stem:
                del self._index[key]
        for suffix in (".json", ".safetensors"):  # manifest first: readers never see a half-deleted shard
            try:
                (self.dir / f"{stem}{suffix}").unlink()
            except FileNotFoundError:
                pass

    def verify_all(self) -> list[str]:
        """Check every shard in full now; returns the problems found (bad shards are removed)."""
        before = len(self.invalid)
        for stem in list(self._shards):
            self._check(stem)
        return self.invalid[before:]

    # -- reading --------------------------------------------------------------------------------

    def get(self, key: str) -> torch.Tensor:
        """The features stored for ``key``; ``KeyError`` if absent, ``ValueError`` if its shard is corrupt."""
        if key not in self._index:
            raise KeyError(f"no cached features for {key!r} under encoder {self.encoder_id!r}; run fill() first")
        stem, pos = self._index[key]
        if not self._check(stem):
            raise ValueError(f"the shard holding {key!r} is corrupt ({self.invalid[-1]}); it was removed: "
                             "run fill() again to recompute it")
        handle = self._handles.get(stem)
        if handle is None:
            handle = self._handles[stem] = safe_open(str(self.dir / f"{stem}.safetensors"), framework="pt")
        return handle.get_tensor(str(pos))

    __getitem__ = get

    def get_many(self, keys: Sequence[str]) -> torch.Tensor:
        """Features of several keys, stacked along a new first dimension."""
        return torch.stack([self.get(k) for k in keys])

    def transform(self, key_column: str = "key", column: str = "image_features") -> Callable[[dict], dict]:
        """A function for ``datasets.Dataset.with_transform``: adds ``column`` (a stacked tensor) by key."""
        def fn(batch: dict) -> dict:
            out = dict(batch)
            out[column] = self.get_many([str(k) for k in batch[key_column]])
            return out
        return fn

    # -- writing --------------------------------------------------------------------------------

    def _write_shard(self, keys: list[str], features: list[torch.Tensor]) -> str:
        stem = f"shard-{_digest(json.dumps(keys))}"
        tensors = {str(i): (t.to(self.dtype) if self.dtype is not None else t).contiguous() for i, t in
                   enumerate(features)}
        shard, manifest = self.dir / f"{stem}.safetensors", self.dir / f"{stem}.json"
        tmp = shard.with_name(f".{shard.name}.tmp-{os.getpid()}")
        save_file(tensors, str(tmp), metadata={"encoder_id": self.encoder_id})
        os.replace(tmp, shard)
        info = {"keys": keys, "encoder_id": self.encoder_id, "bytes": shard.stat().st_size,
                "sha256": _file_sha256(shard), "shape": list(features[0].shape), "dtype": str(tensors["0"].dtype)}
        _atomic_write_bytes(manifest, json.dumps(info).encode())
        return stem

    def fill(self, keys: Sequence[str], images: Sequence | Mapping | Callable, *, rank: int = 0,
             world_size: int = 1, batch_size: int = 32, progress: bool = True) -> dict:
        """Compute and store the features of this rank's share of ``keys`` that are not cached yet.

        ``images`` gives the image of each key: a sequence aligned with ``keys``, a mapping from
        key, or a function of the key; images are PIL, paths or uint8 arrays, read only when needed.
        Returns counts: ``{"computed", "cached", "shards_written", "keys_of_rank"}``.
        """
        from tqdm.auto import tqdm

        if self.encode_fn is None:
            raise ValueError("this FeatureCache has no encode_fn: it can read but not fill")
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
        keys = [str(k) for k in keys]
        if len(set(keys)) != len(keys):
            raise ValueError("keys must be unique (one image per key)")
        if not callable(images) and not isinstance(images, Mapping) and len(images) != len(keys):
            raise ValueError(f"images has {len(images)} entries for {len(keys)} keys")
        position = {k: i for i, k in enumerate(keys)}

        def image_of(key):
            src = images(key) if callable(images) and not isinstance(images, Mapping) else (
                images[key] if isinstance(images, Mapping) else images[position[key]])
            return load_image(src, name=f"image of {key!r}")

        chunks = [keys[i:i + self.shard_size] for i in range(0, len(keys), self.shard_size)]
        mine = [c for ci, c in enumerate(chunks) if ci % world_size == rank]
        stats = {"computed": 0, "cached": 0, "shards_written": 0, "keys_of_rank": sum(map(len, mine))}
        bar = tqdm(total=stats["keys_of_rank"], desc=f"encoder features (rank {rank})", disable=not progress)
        for chunk in mine:
            for stem in {self._index[k][0] for k in chunk if k in self._index}:
                self._check(stem)  # a corrupt shard leaves the index here, so its keys are recomputed
            todo = [k for k in chunk if k not in self._index]
            stats["cached"] += len(chunk) - len(todo)
            bar.update(len(chunk) - len(todo))
            if not todo:
                continue
            feats = []
            for i in range(0, len(todo), batch_size):
                batch = todo[i:i + batch_size]
                out = self.encode_fn([image_of(k) for k in batch])
                if not isinstance(out, torch.Tensor) or out.shape[0] != len(batch):
                    raise ValueError(f"encode_fn must return a tensor with one row per image ({len(batch)}), "
                                     f"got {type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
                feats.extend(t.detach().cpu() for t in out)
                bar.update(len(batch))
            stem = self._write_shard(todo, feats)
            self._shards[stem] = json.loads((self.dir / f"{stem}.json").read_text())
            self._verified.add(stem)
            self._handles.pop(stem, None)
            for pos, key in enumerate(todo):
                self._index[key] = (stem, pos)
            stats["computed"] += len(todo)
            stats["shards_written"] += 1
        bar.close()
        return stats
