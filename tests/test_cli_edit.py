"""`locinsert remove` and `locinsert edit`, offline: masks and boxes, biharmonic and a tiny SD pipeline + LoRA."""

import json

import numpy as np
import pytest
from PIL import Image

from locinsert.boxes import mask_box
from locinsert.cli.main import main
from locinsert.data import synthetic
from locinsert.data.synthetic.removal import insert_object
from locinsert.inpainting import dilate_mask


@pytest.fixture
def scene_files(tmp_path):
    """A synthetic scene with a cup pasted low on the left, and the cup's mask as a PNG."""
    scene = synthetic.make_scenes(1, seed=7)[0]
    img, cup = insert_object(Image.fromarray(scene.render()), "cup", (6, 50, 14, 60))
    img.save(tmp_path / "room.png")
    Image.fromarray(cup.astype(np.uint8) * 255).save(tmp_path / "cup.png")
    return str(tmp_path / "room.png"), str(tmp_path / "cup.png"), np.asarray(img), cup


def test_remove_with_a_mask_writes_image_overlay_and_json(scene_files, tmp_path):
    image, mask_png, before, cup = scene_files
    out = tmp_path / "out"
    assert main(["remove", image, "remove the cup", "--mask", mask_png, "--out", str(out)]) == 0
    rec = json.loads((out / "room_remove.json").read_text())
    step = rec["steps"][0]
    assert rec["found"] and step["verb"] == "remove" and step["object"] == "cup"
    assert step["mask_pixels"] == int(cup.sum()) and rec["remover"] == "biharmonic"
    after = np.asarray(Image.open(out / "room_edited.png").convert("RGB"))
    grown = dilate_mask(cup, 1)
    assert np.array_equal(after[~grown], before[~grown]) and not np.array_equal(after[cup], before[cup])
    assert Image.open(out / "room_overlay.png").size == (64, 64)


def test_remove_accepts_a_bare_object_and_a_box(scene_files, tmp_path):
    image, _, before, _ = scene_files
    assert main(["remove", image, "the cup", "--box", "6,50,14,60", "--out", str(tmp_path / "o")]) == 0
    rec = json.loads((tmp_path / "o" / "room_remove.json").read_text())
    assert rec["steps"][0]["mask_box"] == [6.0, 50.0, 14.0, 60.0]


def test_edit_moves_and_adds_with_a_tiny_model(scene_files, tmp_path):
    image, mask_png, before, cup = scene_files
    out = tmp_path / "e"
    assert main(["edit", image, "move the cup to the right", "--mask", mask_png, "--model", "tiny", "-n", "4",
                 "--out", str(out)]) == 0
    rec = json.loads((out / "room_edit.json").read_text())
    step = rec["steps"][0]
    assert step["verb"] == "move" and step["source_box"] == list(mask_box(cup))
    assert (step["box"][0] + step["box"][2]) / 2 >= 32 and len(step["candidates"]["boxes"]) == 4
    assert main(["edit", image, "add a chair on the left", "--model", "tiny", "-n", "3",
                 "--out", str(tmp_path / "a")]) == 0


@pytest.mark.slow
def test_remove_with_a_diffusers_pipeline_folder_and_lora(scene_files, tmp_path):
    from helpers_diffusers import tiny_sd_inpaint
    from test_removal import _lora_folder, tiny_unet

    image, mask_png, before, cup = scene_files
    tiny_sd_inpaint().save_pretrained(tmp_path / "sd")
    lora = _lora_folder(tmp_path / "lora", tiny_unet(9))
    assert main(["remove", image, "the cup", "--mask", mask_png, "--remover", "diffusers",
                 "--remover-model", str(tmp_path / "sd"), "--lora", lora, "--remover-steps", "1",
                 "--out", str(tmp_path / "d")]) == 0
    after = np.asarray(Image.open(tmp_path / "d" / "room_edited.png").convert("RGB"))
    grown = dilate_mask(cup, 4)
    assert np.array_equal(after[~grown], before[~grown])


@pytest.mark.parametrize("argv, message", [
    (["remove", "{image}", "remove the cup", "--segmenter-model", "{tmp}/nothing-here"],
     "--segmenter-model {tmp}/nothing-here: checkpoint folder not found"),
    (["remove", "{image}", "remove the cup", "--segmenter", "textmask"], "needs --segmenter-model"),
    (["remove", "{image}", "", "--box", "1,1,5,5"], "no object"),
    (["remove", "{image}", "add a cup", "--box", "1,1,5,5"], "use locinsert edit"),
    (["remove", "{image}", "the cup", "--mask", "{small}"], "but the image is 64x64"),
    (["remove", "{image}", "the cup", "--box", "1,2,3"], "four numbers"),
    (["remove", "{image}", "the cup", "--box", "1,1,5,5", "--lora", "x"], "--remover diffusers"),
    (["remove", "{image}", "the cup", "--box", "1,1,5,5", "--remover", "diffusers", "--remover-model",
      "{tmp}/sd", "--lora", "{tmp}/missing.safetensors"], "not found"),
    (["edit", "{image}", "move the cup", "--box", "1,1,5,5", "--model", "tiny"], "say where to move it"),
    (["remove", "{image}", "the cup", "--box", "1,1,5,5", "--out", "{small}"], "is a file"),
    (["remove", "{image}", "the cup", "--box", "1,1,5,5", "--device", "bogus"], "not a torch device"),
    (["edit", "{image}", "move the cup left", "--box", "1,1,5,5", "--model", "tiny", "--temperature", "-1"],
     "argument --temperature: must be a finite number > 0, got -1"),
    (["edit", "{image}", "remove the cup, then remove the vase", "--box", "1,1,5,5"], "one object"),
    (["edit", "{image}", "add a cup", "--model", "tiny", "--reference", "{small}"], "option of locinsert insert"),
])
def test_user_mistakes_are_one_line_errors_with_exit_code_2(scene_files, tmp_path, capsys, argv, message):
    image = scene_files[0]
    Image.new("L", (10, 10), 255).save(tmp_path / "small.png")
    if "{tmp}/sd" in argv:
        from helpers_diffusers import tiny_sd_inpaint
        tiny_sd_inpaint().save_pretrained(tmp_path / "sd")
    argv = [a.format(image=image, small=tmp_path / "small.png", tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("locinsert")]   # progress bars aside
    assert "Traceback" not in err and len(lines) == 1
    assert lines[0].startswith(f"locinsert {argv[0]}: error:") and message.format(tmp=tmp_path) in lines[0]


def test_remove_finds_the_object_by_name_with_clipseg(scene_files, tmp_path):
    from helpers_diffusers import tiny_clipseg
    from locinsert.segmentation import CLIPSegSegmenter

    image, _, before, _ = scene_files
    tiny_clipseg(tmp_path / "clipseg")
    # Random weights: threshold at the 90th percentile of its map, so a part of the image is "the cup".
    soft = CLIPSegSegmenter.from_pretrained(str(tmp_path / "clipseg")).segment(image, "cup")
    t = float(np.quantile(soft, 0.9))
    args = ["remove", image, "remove the cup", "--segmenter-model", str(tmp_path / "clipseg")]
    assert main(args + ["--threshold", f"{t:.6f}", "--out", str(tmp_path / "f")]) == 0
    rec = json.loads((tmp_path / "f" / "room_remove.json").read_text())
    assert rec["found"] and 0 < rec["steps"][0]["mask_pixels"] <= int((soft > t).sum())
    assert main(args + ["--threshold", "0.9999", "--out", str(tmp_path / "n")]) == 1     # nothing that sure
    rec = json.loads((tmp_path / "n" / "room_remove.json").read_text())
    assert not rec["found"] and rec["not_found"] == ["cup"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "n" / "room_edited.png").convert("RGB")), before)
