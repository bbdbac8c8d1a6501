"""Files and folders written all-or-nothing: a reader sees the old version or the new one, never a mix.

Two tools, for the two shapes of output:

- :func:`write_file_atomic` (and :func:`write_json_atomic`, :func:`write_text_atomic`,
  :func:`save_image_atomic`): one file. The bytes go to a temporary file
  in the same folder, are flushed to disk, and ``os.replace`` puts them in place. Temporary files
  that killed writers left in the folder are removed by the next write there.
- :func:`write_folder_atomic`: a whole folder (a checkpoint: ``config.json`` + weights, or any
  savable model). The files are written into a temporary *sibling* folder, and that folder is
  swapped in for the target with one rename. On Linux the swap is ``renameat2(RENAME_EXCHANGE)``,
  so at every instant the path names either the complete old folder or the complete new one; where
  that call is missing, the old folder is renamed aside and the new one renamed in, and the next
  save puts the old folder back if a crash fell between the two renames.

Rules of :func:`write_folder_atomic` (every savable model of the library goes through it):

- Files already in the target that the new save does not write and that do not match ``replaces``
  (e.g. a model card, a Trainer's ``trainer_state.json``) are carried over as hard links (a copy
  where links are not possible), so the swap loses nothing it was not asked to replace.
- Temporary names are unique per save (host, process id, random token), so two processes saving to
  one folder never trip over each other: each swaps in its own complete folder and the last one wins.
- A save killed half-way leaves a ``.NAME.tmp.*`` sibling behind; the next save into NAME removes
  every such leftover whose process is dead (on this host).
- Written files get ordinary permissions (``0o666`` minus the umask; ``safetensors`` alone would
  leave 0600), and a replaced folder keeps the old folder's mode.
- Inside :func:`saving_in_place` (what the Trainer's checkpoint saves use: other ranks write their
  RNG state into the same ``checkpoint-N`` folder at the same time, so it must not be swapped) the
  files are moved into the existing folder one by one, each atomically; such a folder counts as a
  checkpoint only once ``checkpoint_complete.json`` is written (``training/checkpoints.py``).
  A folder that is a mount point cannot be renamed; it is written the same way, with a warning.
- A symlink to a folder is followed: the folder it points to is replaced, the link stays.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import fnmatch
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

__all__ = ["write_folder_atomic", "write_file_atomic", "write_json_atomic", "write_text_atomic",
           "save_image_atomic", "save_figure", "saving_in_place", "swap_in", "clean_stale_temporaries"]

logger = logging.getLogger(__name__)
_IN_PLACE: contextvars.ContextVar[bool] = contextvars.ContextVar("locinsert_save_in_place", default=False)
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


# -- single files ------------------------------------------------------------------------------------

def _fsync_path(path: str, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return  # some filesystems refuse to open folders; durability is best effort there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode() -> int:
    """``0o666`` minus the process umask, read without changing it (threads may be running)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_file_atomic(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then replace ``path`` with it.

    Readers see the old file or the complete new one. The new file gets ordinary permissions.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    _clean_stale_files(folder)
    tmp = os.path.join(folder, f".tmp-{_token()}{suffix}")
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_path(folder, directory=True)


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """Save a matplotlib figure to ``path`` atomically (its folder made if needed), in the format its
    suffix names (PNG without one); ``savefig_kwargs`` go to ``fig.savefig``. The figure stays open."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix[1:] or "png"
    write_file_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_kwargs), suffix=path.suffix)
    return path


_STALE_FILE = re.compile(r"^\.tmp-(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]+")


def _clean_stale_files(folder: str) -> None:
    """Remove temporary files that killed processes of this host left in ``folder``."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        m = _STALE_FILE.match(entry)
        if m and m["host"] == _HOST and not _pid_alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, entry))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file (UTF-8) all-or-nothing."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    write_file_atomic(path, write, suffix=os.path.splitext(os.fspath(path))[1])


def save_image_atomic(image, path: str | os.PathLike, **save_kwargs) -> None:
    """``image.save(path)`` all-or-nothing (the format follows ``path``'s extension)."""
    fmt = save_kwargs.pop("format", None) or _image_format(os.fspath(path))
    write_file_atomic(path, lambda tmp: image.save(tmp, format=fmt, **save_kwargs))


def _image_format(path: str) -> str:
    from PIL import Image

    ext = os.path.splitext(path)[1].lower()
    Image.init()
    if ext not in Image.EXTENSION:
        raise ValueError(f"{path}: unknown image file extension {ext!r}")
    return Image.EXTENSION[ext]


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON so that readers see either the old file or the whole new one, never a part."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True, default=str)

    write_file_atomic(path, write, suffix=".json")


# -- whole folders -----------------------------------------------------------------------------------

def _token() -> str:
    return f"{_HOST}.{os.getpid()}.{secrets.token_hex(4)}"


def _temp_name(target: str, kind: str) -> str:
    parent, name = os.path.split(target)
    return os.path.join(parent, f".{name}.{kind}.{_token()}")


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]+$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def clean_stale_temporaries(target: str | os.PathLike) -> list[str]:
    """Remove what killed saves into ``target`` left next to it; restore ``target`` if a fallback swap
    was cut between its two renames. Only leftovers of dead processes on this host are touched.

    Returns the removed paths.
    """
    target = os.path.abspath(os.fspath(target))
    parent, name = os.path.split(target)
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for entry in sorted(entries):
        m = _LEFTOVER.match(entry)
        if not m or m["name"] != name or m["host"] != _HOST or _pid_alive(int(m["pid"])):
            continue
        path = os.path.join(parent, entry)
        if m["kind"] == "old" and not os.path.lexists(target):
            with contextlib.suppress(OSError):
                os.rename(path, target)  # the old folder was renamed aside and the new one never arrived
                continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``). False where the call is unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), a)


def swap_in(new: str | os.PathLike, target: str | os.PathLike) -> str | None:
    """Make the folder ``new`` appear at ``target`` in one step; returns where the old folder went
    (to be deleted by the caller), or None if there was none.
    """
    new, target = os.fspath(new), os.fspath(target)
    for _ in range(100):  # another process may create or swap target between our calls
        if not os.path.lexists(target):
            try:
                os.rename(new, target)
                return None
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                continue
        try:
            if _exchange(new, target):
                return new  # now holds the old folder
        except FileNotFoundError:
            continue
        old = _temp_name(target, "old")
        try:
            os.rename(target, old)
        except FileNotFoundError:
            continue
        os.rename(new, target)
        return old
    raise OSError(f"could not swap {new} in for {target}: it keeps changing")


def _link_or_copy_tree(src: str, dst: str) -> None:
    """Recreate ``src`` at ``dst`` with hard links for files (copies where links are impossible)."""
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    elif os.path.isdir(src):
        os.mkdir(dst)
        shutil.copymode(src, dst)
        for entry in os.listdir(src):
            _link_or_copy_tree(os.path.join(src, entry), os.path.join(dst, entry))
    else:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _carry_over(old: str, new: str, replaces: Iterable[str]) -> None:
    patterns = list(replaces)
    try:
        entries = os.listdir(old)
        mode = os.stat(old).st_mode
    except FileNotFoundError:  # another process is swapping the folder right now
        return
    os.chmod(new, stat.S_IMODE(mode))
    for entry in entries:
        if os.path.lexists(os.path.join(new, entry)) or entry.startswith(".tmp-"):
            continue
        if any(fnmatch.fnmatchcase(entry, p) for p in patterns):
            continue
        try:
            _link_or_copy_tree(os.path.join(old, entry), os.path.join(new, entry))
        except FileNotFoundError:  # removed meanwhile, with the folder it was in
            shutil.rmtree(os.path.join(new, entry), ignore_errors=True)


def _finish_files(folder: str, mode: int) -> list[str]:
    """chmod + fsync every file ``write`` produced; returns their names (relative)."""
    names = []
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            if os.path.islink(p):
                continue
            os.chmod(p, mode)
            _fsync_path(p)
            names.append(os.path.relpath(p, folder))
    return names


def _move_files_in(tmp: str, target: str, written: list[str]) -> Path:
    """Move the files ``write`` produced into ``target`` one by one (each atomic), then drop ``tmp``."""
    os.makedirs(target, exist_ok=True)
    for rel in sorted(written):
        dst = os.path.join(target, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(os.path.join(tmp, rel), dst)
    shutil.rmtree(tmp, ignore_errors=True)
    _fsync_path(target, directory=True)
    return Path(target)


@contextlib.contextmanager
def saving_in_place() -> Iterator[None]:
    """Inside this block :func:`write_folder_atomic` moves files into the existing folder one by one
    instead of swapping the folder (for folders other processes write into at the same time, whose
    completeness is marked separately, like the Trainer's ``checkpoint-N``)."""
    token = _IN_PLACE.set(True)
    try:
        yield
    finally:
        _IN_PLACE.reset(token)


def write_folder_atomic(directory: str | os.PathLike, write: Callable[[str], None], *,
                        replaces: Iterable[str] = ()) -> Path:
    """Write a folder all-or-nothing: ``write(tmp)`` fills an empty temporary sibling folder, which
    then replaces ``directory`` in one rename.

    ``write`` receives the temporary folder's path and writes the files there (any writer: safetensors,
    ``config.save_pretrained``, JSON). ``replaces`` are glob patterns of names in an existing
    ``directory`` that this save supersedes even when ``write`` does not produce them (stale shards of
    an older save, say); every other existing entry is carried over. If ``write`` raises, or the
    process dies at any point, ``directory`` still holds its complete previous content (or does not
    exist, if it did not before). See the module docstring for the full rules. Returns ``directory``.
    """
    # through symlinks: saving to ``latest -> run5`` replaces run5's content, and the link stays
    target = os.path.realpath(os.fspath(directory))
    if os.path.lexists(target) and not os.path.isdir(target):
        raise FileExistsError(f"cannot save into {directory}: it is a file, not a folder")
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    clean_stale_temporaries(target)
    tmp = _temp_name(target, "tmp")
    os.mkdir(tmp)  # 0o777 minus the umask, like any new folder (mkdtemp would give 0700)
    old = None
    try:
        write(tmp)
        mode = _file_mode()
        written = _finish_files(tmp, mode)
        if _IN_PLACE.get():
            return _move_files_in(tmp, target, written)
        if os.path.isdir(target):
            _carry_over(target, tmp, replaces)  # and the folder's mode
        _fsync_path(tmp, directory=True)
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        try:
            old = swap_in(tmp, target)
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.EXDEV):
                raise
            # a mount point cannot be renamed: the best left is each file atomically, in place
            logger.warning("%s cannot be swapped (%s); writing its files in place, one by one", target, e)
            return _move_files_in(tmp, target, written)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_path(parent, directory=True)
    if cwd is not None and (cwd == target or cwd.startswith(target + os.sep)):
        # the process stood in the old folder; stand at the same path in the new one
        with contextlib.suppress(OSError):
            os.chdir(cwd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return Path(target)


def is_temporary_name(name: str) -> bool:
    """True for the names this module uses for temporaries (for listings that should skip them)."""
    return name.startswith(".tmp-") or bool(_LEFTOVER.match(name))


# -- outputs checked before the work ---------------------------------------------------------------

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
