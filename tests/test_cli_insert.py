"""`locinsert propose` and `locinsert insert`, offline: tiny models, cut-outs, a tiny SD pipeline."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert.cli.main import main
from locinsert.inpainting import box_mask


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "room.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 200, (48, 64, 3), dtype=np.uint8)).save(path)
    return str(path)


def disc_png(tmp_path, mode="RGBA"):
    a = np.zeros((16, 16, 4), np.uint8)
    yy, xx = np.mgrid[:16, :16]
    a[(yy - 7.5) ** 2 + (xx - 7.5) ** 2 <= 64] = (0, 220, 0, 255)
    path = tmp_path / f"disc_{mode}.png"
    Image.fromarray(a, "RGBA").convert(mode).save(path)
    return str(path)


def test_propose_writes_json_and_overlay(image_path, tmp_path, capsys):
    out = tmp_path / "props"
    assert main(["propose", image_path, "--object", "cup", "--where", "left", "-n", "5", "--model", "tiny",
                 "--out", str(out)]) == 0
    assert "UNTRAINED" in capsys.readouterr().err
    rec = json.loads((out / "room_proposals.json").read_text())
    assert (rec["width"], rec["height"], rec["object"], rec["untrained"]) == (64, 48, "cup", True)
    boxes = torch.tensor(rec["boxes"])
    assert boxes.shape == (5, 4) and len(rec["log_p"]) == 5 and len(rec["log_q"]) == 5
    assert rec["log_p"] == sorted(rec["log_p"], reverse=True)
    assert ((boxes[:, 0] + boxes[:, 2]) / 2 <= 32.01).all()       # centres in the left half
    assert rec["region"]["rect"] == [0.0, 0.0, 32.0, 48.0]
    assert Image.open(out / "room_proposals.png").size == (64, 48)


def test_propose_loads_a_saved_checkpoint(image_path, tmp_path, tiny_model_dir):
    args = ["propose", image_path, "--object", "dog", "-n", "3", "--model", tiny_model_dir, "--seed", "4"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "room_proposals.json").read_text())
    b = json.loads((tmp_path / "b" / "room_proposals.json").read_text())
    assert a["boxes"] == b["boxes"] and a["untrained"] is False      # same seed, same boxes


def test_insert_with_cutout_png_changes_only_chosen_boxes(image_path, tmp_path):
    out = tmp_path / "ins"
    assert main(["insert", image_path, "add a ball on the right, then a ball at the bottom", "--model", "tiny",
                 "-n", "4", "--cutout", disc_png(tmp_path), "--out", str(out)]) == 0
    rec = json.loads((out / "room_insert.json").read_text())
    assert [s["object"] for s in rec["steps"]] == ["ball", "ball"]
    edited = np.asarray(Image.open(out / "room_edited.png").convert("RGB"))
    orig = np.asarray(Image.open(image_path).convert("RGB"))
    changed = np.zeros(orig.shape[:2], bool)
    for s in rec["steps"]:
        changed |= box_mask(s["box"], 64, 48)
    assert edited.shape == orig.shape and np.array_equal(edited[~changed], orig[~changed])
    assert not np.array_equal(edited[changed], orig[changed])
    assert Image.open(out / "room_overlay.png").size == (64, 48)


def test_insert_uses_synthetic_sprites_without_cutout(image_path, tmp_path):
    assert main(["insert", image_path, "add a chair on the left", "--model", "tiny", "-n", "3",
                 "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "room_edited.png").exists()


def test_insert_with_a_diffusers_pipeline_folder(image_path, tmp_path):
    from helpers_diffusers import tiny_sd_inpaint

    tiny_sd_inpaint().save_pretrained(tmp_path / "sd")
    assert main(["insert", image_path, "add a cup", "--model", "tiny", "-n", "2", "--inpainter", "diffusers",
                 "--inpainter-model", str(tmp_path / "sd"), "--steps", "1", "--out", str(tmp_path / "o")]) == 0
    rec = json.loads((tmp_path / "o" / "room_insert.json").read_text())
    edited = np.asarray(Image.open(tmp_path / "o" / "room_edited.png").convert("RGB"))
    m = box_mask(rec["steps"][0]["box"], 64, 48)
    assert np.array_equal(edited[~m], np.asarray(Image.open(image_path).convert("RGB"))[~m])


@pytest.mark.parametrize("argv_tail, message", [
    (["add on the left", "--model", "tiny"], "no object"),
    (["add a cup", "--model", "tiny", "--cutout", "RGB"], "no alpha"),
    (["add a unicorn", "--model", "tiny"], "no built-in sprite"),
    (["add a cup"], "--model is required"),
    (["add a cup", "--model", "./no/such/folder"], "not found"),
    (["add a cup", "--model", "tiny", "--inpainter", "gligen", "--inpainter-model", "./no/such/gligen"],
     "no/such/gligen"),
])
def test_insert_bad_inputs_fail_with_one_clear_line(image_path, tmp_path, capsys, argv_tail, message):
    argv = ["insert", image_path] + [disc_png(tmp_path, "RGB") if a == "RGB" else a for a in argv_tail]
    assert main(argv + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_propose_bad_inputs(image_path, tmp_path, capsys):
    assert main(["propose", image_path, "--object", "cup", "--where", "behind the sofa", "--model", "tiny"]) == 2
    assert "unknown position" in capsys.readouterr().err
    assert main(["propose", str(tmp_path / "nope.png"), "--object", "cup", "--model", "tiny"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["propose", image_path, "--object", "cup", "-n", "0", "--model", "tiny"]) == 2


def test_help_explains_backends_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["insert", "--help"])
    text = capsys.readouterr().out
    assert "gligen" in text and "powerpaint" in text and "examples:" in text
