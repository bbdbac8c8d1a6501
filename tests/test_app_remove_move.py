"""The web app removes and moves objects: the session's remove and move steps, and remove through the page's API."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_app import page_args, scene_png, served, tiny_checkpoint
from locinsert.inpainting import box_mask
from locinsert.segmentation import MaskSegmenter


def two_blobs() -> np.ndarray:
    """Two objects of one name in a 64 px image: a big one on the left, a small one on the right."""
    m = np.zeros((64, 64), bool)
    m[20:36, 6:22] = True     # 16x16, centre x 14
    m[40:48, 44:52] = True    # 8x8, centre x 48
    return m


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from locinsert.cli.app import page_parts

    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("app2") / "ckpt")
    return page_parts(page_args("--model", ckpt, "-n", "4", "--heatmap-samples", "16"))


def make_session(parts, segmenter=None):
    from locinsert.app.factory import session_factory

    keys = ("model", "inpainter", "objects", "num_candidates", "heatmap_samples")
    return session_factory(**{k: parts[k] for k in keys}, segmenter=segmenter)()


@pytest.fixture
def image_path(tmp_path):
    return scene_png(tmp_path / "room.png")


def test_remove_offers_each_part_and_fills_only_the_chosen_one(parts, image_path):
    blobs = two_blobs()
    session = make_session(parts, MaskSegmenter(blobs))
    p = session.start(image_path, "remove the cup", seed=0)
    assert len(p) == 2                                                    # the two parts, largest first
    assert p.candidates.boxes.tolist() == [[6, 20, 22, 36], [44, 40, 52, 48]]
    assert "256 px" in p.label(0) and "64 px" in p.label(1)
    assert p.heatmap.shape == (64, 64) and abs(float(p.heatmap.sum()) - 1) < 1e-5
    assert float(p.heatmap[~torch.from_numpy(blobs)].sum()) == 0          # the segmenter's mask, nothing else

    assert session.apply(1) is None and session.done
    before = np.asarray(Image.open(image_path).convert("RGB"))
    after = np.asarray(session.image)
    small = np.zeros_like(blobs)
    small[40:48, 44:52] = True
    grown = box_mask([40, 36, 56, 52], 64, 64)                            # the fill may grow the mask a little
    assert np.array_equal(after[~grown], before[~grown])                  # the big cup is untouched
    assert not np.array_equal(after[small], before[small])                # the small one was filled
    step = session.record()["steps"][0]
    assert step["operation"] == "remove" and step["chosen"] == 1 and step["mask_pixels"] == 64


def test_remove_keeps_only_parts_in_the_region(parts, image_path):
    session = make_session(parts, MaskSegmenter(two_blobs()))
    p = session.start(image_path, "remove the cup on the right", seed=0)
    assert p.candidates.boxes.tolist() == [[44, 40, 52, 48]]


def test_remove_without_segmenter_or_object_is_a_readable_error(parts, image_path):
    with pytest.raises(ValueError, match="needs a segmenter.*--segmenter clipseg"):
        make_session(parts).start(image_path, "remove the cup", seed=0)
    session = make_session(parts, MaskSegmenter(np.zeros((64, 64), bool)))
    with pytest.raises(ValueError, match="no 'cup' found"):
        session.start(image_path, "remove the cup", seed=0)
    with pytest.raises(ValueError, match="say where to move"):
        make_session(parts, MaskSegmenter(two_blobs())).start(image_path, "move the cup", seed=0)


def test_move_fills_the_hole_and_pastes_the_object_in_the_chosen_box(parts, image_path):
    blobs = two_blobs()
    blobs[40:48, 44:52] = False          # one object: the 16x16 one on the left
    session = make_session(parts, MaskSegmenter(blobs))
    p = session.start(image_path, "move the cup to the right", seed=1)
    assert len(p) == 4 and p.heatmap is not None
    centres_x = (p.candidates.boxes[:, 0] + p.candidates.boxes[:, 2]) / 2
    assert (centres_x >= 32).all()                                        # "to the right" of 64 px
    session.apply(2)
    box = p.candidates.boxes[2].tolist()
    before = np.asarray(Image.open(image_path).convert("RGB"))
    after = np.asarray(session.image)
    changed = box_mask([2, 16, 26, 40], 64, 64) | box_mask(box, 64, 64)  # the (grown) hole and the new box
    assert np.array_equal(after[~changed], before[~changed])
    step = session.record()["steps"][0]
    assert step["operation"] == "move" and step["source_box"] == [6, 20, 22, 36] and step["mask_pixels"] == 256
    assert step["target"] == "to the right"
    assert step["box"] == [round(v, 2) for v in box]


def test_move_by_redraw_draws_the_class_sprite_instead_of_the_pixels(parts, image_path):
    blobs = two_blobs()
    blobs[40:48, 44:52] = False
    moved = {}
    for how in ("cutout", "redraw"):
        session = make_session(parts, MaskSegmenter(blobs))
        p = session.start(image_path, "move the chair to the right", seed=1, move_by=how)
        session.apply(0)
        box = [int(round(v)) for v in p.candidates.boxes[0].tolist()]
        moved[how] = np.asarray(session.image)[box[1]:box[3], box[0]:box[2]]
        assert session.record()["steps"][0]["operation"] == "move"
    assert moved["cutout"].shape == moved["redraw"].shape
    assert not np.array_equal(moved["cutout"], moved["redraw"])     # the sprite, not the room's own pixels
    with pytest.raises(ValueError, match="move by must be one of"):
        make_session(parts, MaskSegmenter(blobs)).start(image_path, "move the chair to the right", move_by="warp")


def test_remove_then_add_may_use_the_freed_place(parts, image_path):
    session = make_session(parts, MaskSegmenter(two_blobs()))
    session.start(image_path, "remove the cup, then add a chair", seed=0)
    session.apply(0)
    assert session.proposal is not None and session.proposal.step.verb == "add"
    assert session.proposal.region is None        # no avoid boxes: the removed cup's place is free again


@pytest.mark.slow
def test_page_api_removes_the_chosen_part(parts, image_path, tmp_path, request):
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from locinsert.app.factory import create_app

    page = create_app(**{**parts, "segmenter": MaskSegmenter(two_blobs())})
    with served(page, allowed_paths=[str(tmp_path)]) as url:
        client = Client(url, verbose=False, analytics_enabled=False)
        request.addfinalizer(client.close)
        cands, heat, radio, status, *_ = client.predict(handle_file(image_path), "remove the cup", 4, 0, None,
                                                        api_name="/propose")
        assert [c[1] for c in radio["choices"]] == [0, 1] and "2 part(s) found" in status
        client.predict(0, api_name="/choose")
        _, png, js, *_ = client.predict(None, api_name="/insert")
        record = json.loads(open(js["value"]).read())
        assert record["steps"][0]["operation"] == "remove" and record["steps"][0]["chosen"] == 0
        before = np.asarray(Image.open(image_path).convert("RGB"))
        after = np.asarray(Image.open(png["value"]).convert("RGB"))
        grown = box_mask([2, 16, 26, 40], 64, 64)
        assert np.array_equal(after[~grown], before[~grown]) and not np.array_equal(after, before)
        with pytest.raises(AppError, match="no .cup. found in the top right corner"):
            client.predict(handle_file(image_path), "remove the cup in the top right corner", 4, 0, None,
                           api_name="/propose")


# -- the command line ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_app_loads_the_segmenter_and_remover(tmp_path):
    from helpers_diffusers import tiny_clipseg
    from locinsert.cli.app import page_parts
    from locinsert.inpainting.removal import BiharmonicFill
    from locinsert.segmentation import CLIPSegSegmenter

    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    tiny_clipseg(tmp_path / "clipseg")
    got = page_parts(page_args("--model", ckpt, "--segmenter", "clipseg", "--segmenter-model",
                               str(tmp_path / "clipseg"), "--dilate", "2"))
    assert isinstance(got["segmenter"], CLIPSegSegmenter) and isinstance(got["remover"], BiharmonicFill)
    assert got["remover"].dilate == 2 and "clipseg segmenter" in got["info"]
    assert got["record_info"]["segmenter"] == "clipseg"
    plain = page_parts(page_args("--model", ckpt))
    assert plain["segmenter"] is None and "remove/move: off" in plain["info"]


@pytest.mark.slow
def test_cli_app_uses_the_segmenter_the_demo_trained(tmp_path):
    """Without --model and --segmenter, the app finds objects with the demo's text-mask model."""
    from locinsert.cli.app import page_parts
    from locinsert.segmentation import TextMaskConfig, TextMaskModel, TextMaskSegmenter

    demo = tmp_path / "demo"
    tiny_checkpoint(demo / "models" / "dpo" / "final")
    TextMaskModel(TextMaskConfig.preset("tiny")).save_pretrained(demo / "models" / "textmask" / "final")
    got = page_parts(page_args("--demo-dir", str(demo)))
    assert isinstance(got["segmenter"], TextMaskSegmenter) and "textmask" in got["info"]
    assert "the demo's" in got["record_info"]["segmenter"]
    # With a model of one's own, the synthetic world's segmenter is not assumed to fit.
    own = page_parts(page_args("--demo-dir", str(demo), "--model", str(demo / "models" / "dpo" / "final")))
    assert own["segmenter"] is None


@pytest.mark.parametrize("argv, message", [
    (["--segmenter-model", "somewhere"], "--segmenter-model needs --segmenter"),
    (["--segmenter", "textmask"], "--segmenter textmask needs --segmenter-model"),
    (["--segmenter", "clipseg", "--segmenter-model", "no-such-folder"], "cannot load the clipseg segmenter"),
    (["--lora", "x"], "--lora and --remover-model need"),
])
def test_cli_app_bad_segmenter_options_are_one_line(argv, message, capsys):
    pytest.importorskip("gradio")
    from locinsert.cli.main import main

    assert main(["app", "--model", "tiny", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("locinsert app: error:")
