"""Saves are all-or-nothing (locinsert/io.py) and loading a bad checkpoint names the file and the problem."""

import json
import os
import shutil

import pytest
import safetensors.torch
import torch

from locinsert import io as atomic_io
from locinsert.modeling import LocationModel, LocationModelConfig
from locinsert.modeling.checkpoint_io import CheckpointSource, HubUnavailableError
from locinsert.training.checkpoints import SafeCheckpointMixin


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    old = LocationModel(LocationModelConfig.preset("tiny")).eval()
    torch.manual_seed(1)
    new = LocationModel(LocationModelConfig.preset("tiny")).eval()
    return old, new


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _which(folder, models) -> str:
    loaded = LocationModel.from_pretrained(folder)
    old, new = models
    if _same(loaded, old):
        return "old"
    if _same(loaded, new):
        return "new"
    raise AssertionError("the folder holds neither the old nor the new model")


# Each step of a save, as (what to patch, name, the folder's content if the save dies there).
STEPS = [
    (lambda mp, die: mp.setattr(safetensors.torch, "save_file", die), "weights", "old"),
    (lambda mp, die: mp.setattr(LocationModelConfig, "save_pretrained", die), "config", "old"),
    (lambda mp, die: mp.setattr(atomic_io, "_finish_files", die), "chmod+fsync", "old"),
    (lambda mp, die: mp.setattr(atomic_io, "_carry_over", die), "carry over", "old"),
    (lambda mp, die: mp.setattr(atomic_io, "_exchange", die), "exchange", "old"),
    (lambda mp, die: mp.setattr(atomic_io.shutil, "rmtree", die), "delete old", "new"),
]


def _kill_during_save(model, folder, patch) -> int:
    """Save ``model`` in a forked child that dies (os._exit, no cleanup) at the patched step."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            mp = pytest.MonkeyPatch()
            patch(mp, lambda *a, **k: os._exit(17))
            model.save_pretrained(folder)
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("patch,step,expected", STEPS, ids=[s[1] for s in STEPS])
def test_killed_save_leaves_old_or_new_checkpoint(models, tmp_path, patch, step, expected):
    old, new = models
    folder = tmp_path / "ckpt"
    old.save_pretrained(folder)
    assert _kill_during_save(new, folder, patch) == 17, f"the save did not reach step {step!r}"
    assert _which(folder, models) == expected
    # the next save removes what the killed one left behind and succeeds
    leftovers = [p for p in os.listdir(tmp_path) if p != "ckpt"]
    assert step == "delete old" or leftovers, "a killed save should have left its temporary folder"
    new.save_pretrained(folder)
    assert os.listdir(tmp_path) == ["ckpt"]
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize("patch,step,expected", STEPS[:5], ids=[s[1] for s in STEPS[:5]])
def test_failed_save_keeps_old_checkpoint_and_cleans_up(models, tmp_path, monkeypatch, patch, step, expected):
    old, new = models
    folder = tmp_path / "ckpt"
    old.save_pretrained(folder)

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    patch(monkeypatch, fail)
    with pytest.raises(OSError, match="No space left"):
        new.save_pretrained(folder)
    monkeypatch.undo()
    assert _which(folder, models) == "old"
    assert os.listdir(tmp_path) == ["ckpt"]
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]


def test_fallback_swap_killed_between_renames_is_restored(models, tmp_path):
    """Without renameat2 the old folder is renamed aside first; the next save (or clean-up) restores it."""
    old, new = models
    folder = tmp_path / "ckpt"
    old.save_pretrained(folder)
    real_rename = os.rename
    calls = []

    def rename(a, b):
        calls.append(b)
        if len(calls) == 2:  # target renamed aside; the new folder is about to be renamed in
            os._exit(17)
        return real_rename(a, b)

    def patch(mp, die):
        mp.setattr(atomic_io, "_exchange", lambda a, b: False)
        mp.setattr(atomic_io.os, "rename", rename)

    assert _kill_during_save(new, folder, patch) == 17
    assert not folder.exists()
    atomic_io.clean_stale_temporaries(folder)
    assert _which(folder, models) == "old"


def test_concurrent_saves_do_not_crash_each_other(models, tmp_path):
    folder = tmp_path / "ckpt"
    models[0].save_pretrained(folder)
    (folder / "README.md").write_text("card")  # carried over by every save, while the other one swaps
    pids = []
    for model in models:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for _ in range(10):
                    model.save_pretrained(folder)
            except BaseException:
                code = 3
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids] == [0, 0]
    assert _which(folder, models) in ("old", "new")
    assert os.listdir(tmp_path) == ["ckpt"] and (folder / "README.md").read_text() == "card"


def test_permissions_and_other_files(models, tmp_path):
    old, new = models
    folder = tmp_path / "ckpt"
    old.save_pretrained(folder)
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode(folder / "model.safetensors") == mode(folder / "config.json") == 0o666 & ~umask
    # a model card stays; stale weights of an older sharded save are replaced, not kept
    (folder / "README.md").write_text("my model")
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"stale")
    (folder / "model.safetensors.index.json").write_text("{}")
    os.chmod(folder, 0o750)
    new.save_pretrained(folder)
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    assert (folder / "README.md").read_text() == "my model"
    assert mode(folder) == 0o750
    assert _which(folder, models) == "new"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        new.save_pretrained(tmp_path / "file")


def test_save_into_cwd_keeps_the_process_there(models, tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    models[0].save_pretrained(folder)
    monkeypatch.chdir(folder)
    models[1].save_pretrained(".")
    assert os.path.samefile(os.getcwd(), folder) and os.path.isfile("config.json")
    assert _which(folder, models) == "new"


def test_symlinked_folder_and_mount_point(models, tmp_path, monkeypatch):
    real = tmp_path / "run5"
    models[0].save_pretrained(real)
    (tmp_path / "latest").symlink_to(real)
    models[1].save_pretrained(tmp_path / "latest")
    assert (tmp_path / "latest").is_symlink() and _which(real, models) == "new"
    assert sorted(os.listdir(tmp_path)) == ["latest", "run5"]

    def busy(new, target):  # what rename(2) says for a mount point
        raise OSError(16, "Device or resource busy", target)

    monkeypatch.setattr(atomic_io, "swap_in", busy)
    models[0].save_pretrained(real)
    assert _which(real, models) == "old" and sorted(os.listdir(tmp_path)) == ["latest", "run5"]


def test_trainer_checkpoints_write_in_place(models, tmp_path):
    """checkpoint-N is shared with other ranks: saved in place, completeness is the marker's job."""
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "rng_state_1.pth").write_bytes(b"rank 1")
    inode = os.stat(folder).st_ino
    with atomic_io.saving_in_place():
        models[1].save_pretrained(folder)
    assert os.stat(folder).st_ino == inode
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "rng_state_1.pth"]

    seen = []

    class Base:
        def save_model(self, output_dir=None, _internal_call=False):
            seen.append(atomic_io._IN_PLACE.get())

    class T(SafeCheckpointMixin, Base):
        pass

    T().save_model("x", _internal_call=True)
    T().save_model("x")
    assert seen == [True, False]


def test_json_written_atomically(tmp_path):
    path = tmp_path / "a.json"
    pid = os.fork()
    if pid == 0:  # a writer killed after writing its temporary file
        try:
            atomic_io.write_file_atomic(path, lambda tmp: (open(tmp, "w").write("{}"), os._exit(17)))
        finally:
            os._exit(3)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 17
    assert len(os.listdir(tmp_path)) == 1 and not path.exists()
    atomic_io.write_json_atomic(path, {"x": 1})  # the next write in that folder removes the orphan
    assert os.listdir(tmp_path) == ["a.json"]

    def fail(*a, **k):
        raise OSError("disk full")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(atomic_io.json, "dump", fail)
        with pytest.raises(OSError):
            atomic_io.write_json_atomic(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 1} and os.listdir(tmp_path) == ["a.json"]

    from PIL import Image

    png = tmp_path / "b.png"
    atomic_io.save_image_atomic(Image.new("RGB", (4, 4), (255, 0, 0)), png)
    with pytest.raises(ValueError, match="unknown image file extension"):
        atomic_io.save_image_atomic(Image.new("RGB", (4, 4)), tmp_path / "c.nope")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Image.Image, "save", fail)
        with pytest.raises(OSError):
            atomic_io.save_image_atomic(Image.new("RGB", (4, 4)), png)
    assert Image.open(png).getpixel((0, 0)) == (255, 0, 0)
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.png"]


# -- loading: every broken checkpoint gives one error naming the file and the problem ------------------

def _break(folder, how, models):
    from transformers import GPT2Config

    if how == "truncated weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "no weights":
        (folder / "model.safetensors").unlink()
    elif how == "no config":
        (folder / "config.json").unlink()
    elif how == "config not json":
        (folder / "config.json").write_text("{num_bins: 16")
    elif how == "gpt2 config":
        (folder / "config.json").unlink()
        GPT2Config(n_layer=1).save_pretrained(folder)
    elif how == "shape mismatch":
        cfg = json.loads((folder / "config.json").read_text())
        cfg["num_bins"] = 8
        (folder / "config.json").write_text(json.dumps(cfg))
    elif how == "bad config value":
        cfg = json.loads((folder / "config.json").read_text())
        cfg["decoder_config"]["n_embd"] = 33
        (folder / "config.json").write_text(json.dumps(cfg))
    elif how == "nan weights":
        state = safetensors.torch.load_file(folder / "model.safetensors")
        state["lm_head.weight"][0, 0] = float("nan")
        safetensors.torch.save_file(state, folder / "model.safetensors")
    elif how == "extra tensor":
        state = safetensors.torch.load_file(folder / "model.safetensors")
        state["surplus.weight"] = torch.zeros(2)
        safetensors.torch.save_file(state, folder / "model.safetensors")
    elif how == "broken index":
        (folder / "model.safetensors.index.json").write_text("[]")


BROKEN = [
    ("truncated weights", ValueError, r"model\.safetensors is not a readable safetensors file"),
    ("no weights", FileNotFoundError, r"ckpt has no model\.safetensors"),
    ("no config", FileNotFoundError, r"ckpt has no config\.json"),
    ("config not json", ValueError, r"config\.json is not valid JSON"),
    ("gpt2 config", ValueError, r"config\.json is a 'gpt2' model config, not a 'locinsert' one"),
    ("shape mismatch", ValueError, r"model\.safetensors does not match its config: 2 tensors have other shapes"),
    ("bad config value", ValueError, r"config\.json: cannot build a LocationModel"),
    ("nan weights", ValueError, r"model\.safetensors holds NaN or infinite values in 1 tensors \(lm_head\.weight\)"),
    ("extra tensor", ValueError, r"model\.safetensors does not match its config: 0 tensors missing \[\], 1 unexpected"),
    ("broken index", ValueError, r"model\.safetensors\.index\.json is not a valid safetensors index"),
]


@pytest.mark.parametrize("how,error,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_checkpoint_errors_name_the_problem(models, tmp_path, how, error, message):
    folder = tmp_path / "ckpt"
    models[0].save_pretrained(folder)
    _break(folder, how, models)
    with pytest.raises(error, match=message):
        LocationModel.from_pretrained(folder)


def test_missing_folder_and_file_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found: .*nope"):
        LocationModel.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found: runs/a/final"):
        LocationModel.from_pretrained("runs/a/final")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="weights.bin is a file; give the checkpoint folder"):
        LocationModel.from_pretrained(tmp_path / "weights.bin")
    # A name shaped like a hub id is resolved through the hub cache only (offline here): the error says so.
    source = CheckpointSource("someone/no-such-model", {"local_files_only": True})
    assert source.folder is None
    with pytest.raises(HubUnavailableError, match="no such local folder, and config.json could not be loaded "
                                                  "from the hub id"):
        source.file("config.json")   # a CheckpointError and still an OSError, for old `except` clauses
    with pytest.raises(TypeError, match="folder path or a hub id"):
        LocationModel.from_pretrained(None)
