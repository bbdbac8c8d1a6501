"""The web app below the browser: the edit session, the page's API through gradio_client, the CLI."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_app import page_args, scene_png, served, tiny_checkpoint
from locinsert.inpainting import box_mask

INSTRUCTION = "add a chair on the left, then a painting near the top"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("app") / "ckpt")


@pytest.fixture(scope="module")
def parts(ckpt):
    from locinsert.cli.app import page_parts

    return page_parts(page_args("--model", ckpt, "-n", "5", "--heatmap-samples", "32"))


@pytest.fixture
def session(parts):
    from locinsert.app.factory import session_factory

    keys = ("model", "inpainter", "objects", "num_candidates", "heatmap_samples")
    return session_factory(**{k: parts[k] for k in keys})()


@pytest.fixture
def image_path(tmp_path):
    return scene_png(tmp_path / "room.png")


def green_disc(path) -> str:
    """An RGBA cut-out: an opaque green disc on transparency."""
    a = np.zeros((16, 16, 4), np.uint8)
    yy, xx = np.mgrid[:16, :16]
    a[(yy - 7.5) ** 2 + (xx - 7.5) ** 2 <= 56] = (0, 220, 0, 255)
    Image.fromarray(a, "RGBA").save(path)
    return str(path)


# -- EditSession ------------------------------------------------------------------------------------

def test_session_proposes_applies_in_steps_and_records(session, image_path):
    p = session.start(image_path, INSTRUCTION, seed=3)
    lps = p.candidates.logprobs
    assert len(p) == 5 and torch.all(lps[:-1] >= lps[1:])                    # best first
    centres_x = (p.candidates.boxes[:, 0] + p.candidates.boxes[:, 2]) / 2
    assert (centres_x <= 32).all()                                            # "on the left" of 64 px
    assert p.heatmap.shape == (64, 64) and abs(float(p.heatmap.sum()) - 1) < 1e-5
    assert float(p.heatmap[:, 32:].sum()) < float(p.heatmap[:, :32].sum())   # its mass sits on the left too

    original = np.asarray(Image.open(image_path).convert("RGB"))
    chosen = p.candidates.boxes[3].clone()
    nxt = session.apply(3)
    after = np.asarray(session.image)
    inside = box_mask(chosen.tolist(), 64, 64)
    assert np.array_equal(after[~inside], original[~inside]) and not np.array_equal(after[inside], original[inside])
    assert nxt is session.proposal and nxt.step.object == "painting" and session.step_index == 1
    assert nxt.region.avoid.tolist() == [chosen.tolist()]                     # keeps away from the chair

    session.finish()
    assert session.done and session.proposal is None
    rec = json.loads(json.dumps(session.record(model="x")))
    assert rec["model"] == "x" and rec["done"] and [s["object"] for s in rec["steps"]] == ["chair", "painting"]
    assert rec["steps"][0]["chosen"] == 3 and rec["steps"][1]["chosen"] == 0
    assert rec["steps"][0]["box"] == [round(v, 2) for v in chosen.tolist()]
    assert rec["steps"][0]["region"]["rect"] == [0.0, 0.0, 32.0, 64.0]
    with pytest.raises(ValueError, match="every step"):
        session.apply()


def test_session_is_reproducible_from_its_seed(session, parts, image_path):
    from locinsert.app.factory import session_factory

    keys = ("model", "inpainter", "objects", "num_candidates", "heatmap_samples")
    other = session_factory(**{k: parts[k] for k in keys})()
    for s in (session, other):
        s.start(image_path, INSTRUCTION, seed=11)
        s.apply(1)
        s.apply(2)
    assert np.array_equal(np.asarray(session.image), np.asarray(other.image))
    session.start(image_path, INSTRUCTION, seed=12)
    assert not torch.equal(session.proposal.candidates.boxes, other.applied[0].proposal.candidates.boxes)


def test_session_pick_hit_tests_the_candidates(session, image_path):
    p = session.start(image_path, "add a cup", seed=0)
    for b in p.candidates.boxes:
        cx, cy = ((b[:2] + b[2:]) / 2).tolist()
        x1, y1, x2, y2 = p.candidates.boxes[session.pick(cx, cy)].tolist()
        assert x1 <= cx <= x2 and y1 <= cy <= y2
    covered = torch.zeros(64, 64, dtype=torch.bool)
    for x1, y1, x2, y2 in p.candidates.boxes.tolist():
        covered[int(np.ceil(y1)):int(np.floor(y2)) + 1, int(np.ceil(x1)):int(np.floor(x2)) + 1] = True
    free = (~covered).nonzero()
    if len(free):
        y, x = free[0].tolist()
        assert session.pick(x + 0.5, y + 0.5) is None


@pytest.mark.parametrize("image, text, message", [
    (None, "add a cup", "no image"),
    ("room", "", "type an instruction"),
    ("room", "add on the left", "no object"),
    ("room", "add a dragon on the left", "can draw only"),
])
def test_session_bad_input_is_a_readable_error(session, image_path, image, text, message):
    with pytest.raises(ValueError, match=message):
        session.start(image_path if image else None, text)


def test_session_impossible_sizes_and_indices(parts, session, image_path):
    from locinsert.app.factory import session_factory

    keys = ("model", "inpainter", "objects", "num_candidates", "heatmap_samples")
    with pytest.raises(ValueError, match="nothing to apply"):
        session.apply()
    session.start(image_path, "add a cup", seed=0)
    with pytest.raises(ValueError, match="choose 1 to 5"):
        session.apply(7)
    huge = session_factory(**{k: parts[k] for k in keys}, min_size=1000)()
    with pytest.raises(ValueError, match="does not fit"):
        huge.start(image_path, "add a cup on the left")


def test_session_inserts_this_object_from_a_reference(session, image_path, tmp_path):
    disc = green_disc(tmp_path / "disc.png")
    p = session.start(image_path, "add this chair on the left, then a plant", seed=0, reference=disc)
    assert p.step.extra["reference"] is not None and "your reference (as a chair)" in p.note
    assert (((p.candidates.boxes[:, 0] + p.candidates.boxes[:, 2]) / 2) <= 32).all()
    box = p.candidates.boxes[0].tolist()
    nxt = session.apply(0)
    assert "reference" not in nxt.step.extra                      # the plant is drawn from text
    inside = box_mask(box, 64, 64)
    pixels = np.asarray(session.image).astype(int)[inside]
    assert ((pixels == (0, 220, 0)).all(-1)).any()
    assert session.record()["steps"][0]["reference"] is True

    with pytest.raises(ValueError, match="marked as the reference"):
        session.start(image_path, "add a chair, then a plant", reference=disc)
    with pytest.raises(ValueError, match="no transparency"):
        session.start(image_path, "add this chair", reference=image_path)
    with pytest.raises(FileNotFoundError):
        session.start(image_path, "add this chair", reference=tmp_path / "missing.png")


# -- the page through its API -------------------------------------------------------------------------

@pytest.mark.slow
def test_page_api_propose_choose_insert_finish(parts, image_path, tmp_path, request):
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from locinsert.app.factory import create_app, example_scenes

    examples = example_scenes(tmp_path / "examples", n=2, size=64)
    with served(create_app(examples=examples, **parts), allowed_paths=[str(tmp_path)]) as url:
        client = Client(url, verbose=False, analytics_enabled=False)
        request.addfinalizer(client.close)   # its heartbeat thread ends with it
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert {"/propose", "/choose", "/insert", "/finish"} <= set(api)

        with pytest.raises(AppError, match="No image"):
            client.predict(None, "add a cup", 5, 0, None, api_name="/propose")
        with pytest.raises(AppError, match="no object"):
            client.predict(handle_file(image_path), "add on the left", 5, 0, None, api_name="/propose")

        cands, heat, radio, status, out, _, _, caption = client.predict(
            handle_file(examples[0][0]), INSTRUCTION, 4, 5, None, api_name="/propose")
        assert Image.open(cands).size == Image.open(heat).size == (512, 512)   # 64 px shown 8x
        assert [c[1] for c in radio["choices"]] == [0, 1, 2, 3] and radio["value"] == 0
        assert "Step 1 of 2" in status and out is None
        assert caption.startswith("**Heatmap**")

        client.predict(2, api_name="/choose")
        shown, png, js, *_, status, _ = client.predict(None, api_name="/insert")   # None: the chosen one
        record = json.loads(open(js["value"]).read())
        assert record["steps"][0]["chosen"] == 2 and record["model"] == parts["record_info"]["model"]
        assert "Step 2 of 2" in status
        edited = np.asarray(Image.open(png["value"]).convert("RGB"))
        original = np.asarray(Image.open(examples[0][0]).convert("RGB"))
        inside = box_mask(record["steps"][0]["box"], 64, 64)
        assert np.array_equal(edited[~inside], original[~inside])
        assert Image.open(shown).size == (512, 512) and png["value"].endswith("scene_1_edited.png")

        *_, heat, _, status, caption = client.predict(api_name="/finish")
        assert "Done" in status
        # Done: the last step's heatmap stays on the edited picture, captioned as the last step's.
        assert heat is not None and Image.open(heat).size == (512, 512)
        assert "Heatmap of the last step" in caption and "add painting" in caption
        with pytest.raises(AppError, match="every step"):
            client.predict(None, api_name="/insert")

        # Insert *this* object: an RGBA cut-out as the reference.
        disc = green_disc(tmp_path / "disc.png")
        status = client.predict(handle_file(image_path), "add this chair on the left", 3, 0, handle_file(disc),
                                api_name="/propose")[3]
        assert "your reference (as a chair)" in status
        _, png, js, *_ = client.predict(None, api_name="/insert")
        record = json.loads(open(js["value"]).read())
        assert record["steps"][0]["reference"] is True
        box = box_mask(record["steps"][0]["box"], 64, 64)
        edited = np.asarray(Image.open(png["value"]).convert("RGB")).astype(int)
        assert ((edited[box] == (0, 220, 0)).all(-1)).any()          # the disc's own green, inside the box
        with pytest.raises(AppError, match="no transparency"):
            client.predict(handle_file(image_path), "add this chair", 3, 0, handle_file(image_path),
                           api_name="/propose")


# -- the command line ---------------------------------------------------------------------------------

def test_cli_app_without_a_model_says_how_to_get_one(tmp_path, capsys):
    from locinsert.cli.main import main

    assert main(["app", "--demo-dir", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "locinsert demo" in err and "--model" in err and "Traceback" not in err


def test_cli_app_uses_the_demo_model_and_warns_for_random_ones(ckpt, tmp_path):
    import shutil

    from locinsert.app.factory import find_demo_model
    from locinsert.cli.app import page_parts

    demo = tmp_path / "demo"
    assert find_demo_model(demo) is None
    shutil.copytree(ckpt, demo / "models" / "finetune" / "final")
    assert find_demo_model(demo) == demo / "models" / "finetune" / "final"
    shutil.copytree(ckpt, demo / "models" / "dpo" / "final")
    parts = page_parts(page_args("--demo-dir", str(demo)))
    assert parts["warning"] is None and str(demo / "models" / "dpo" / "final") in parts["info"]
    assert parts["record_info"]["untrained"] is False

    random = page_parts(page_args("--model", "tiny"))
    assert "UNTRAINED" in random["warning"] and random["record_info"]["untrained"] is True


@pytest.mark.slow
def test_cli_app_page_shows_the_warning_banner(tmp_path):
    pytest.importorskip("gradio")
    from locinsert.cli.app import build_page

    page = build_page(page_args("--model", "tiny", "--heatmap-samples", "0"), str(tmp_path))
    try:
        texts = [c["props"]["value"] for c in page.config["components"] if c["props"].get("elem_id") == "banner"]
        assert texts and "UNTRAINED" in texts[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"scene_{i}.png" for i in range(1, 5)]
    finally:
        page.close()


def test_cli_app_without_gradio_names_the_extra(monkeypatch, capsys):
    from locinsert.cli.main import main

    monkeypatch.setitem(sys.modules, "gradio", None)
    assert main(["app", "--model", "tiny"]) == 2
    assert 'pip install "locinsert[app]"' in capsys.readouterr().err


def test_cli_app_help_and_bad_numbers(capsys):
    from locinsert.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["app", "--help"])
    assert e.value.code == 0
    assert "--demo-dir" in capsys.readouterr().out
    pytest.importorskip("gradio")
    assert main(["app", "--model", "tiny", "-n", "0"]) == 2
    assert "argument -n/--num-samples/--num-candidates: must be an integer >= 1, got 0" in capsys.readouterr().err


def test_session_step_without_room_keeps_the_edit_and_says_why(parts, image_path):
    from locinsert.app.factory import session_factory

    keys = ("model", "inpainter", "objects", "num_candidates", "heatmap_samples")
    # Boxes at least 34 px in a 64 px image: a second one with its centre in the left half cannot
    # avoid the first.
    s = session_factory(**{k: parts[k] for k in keys}, min_size=34)()
    s.start(image_path, "add a cup on the left, then a cup on the left", seed=0)
    assert s.apply() is None and not s.done
    assert "satisfy" in s.blocked or "redraws" in s.blocked
    assert not np.array_equal(np.asarray(s.image), np.asarray(s.original))   # the first cup stands
    assert s.record()["blocked"] == s.blocked and len(s.record()["steps"]) == 1
    with pytest.raises(ValueError, match="step 2 has no candidates"):
        s.apply()


@pytest.mark.slow
def test_core_imports_never_need_gradio():
    import os
    import subprocess
    from pathlib import Path

    code = ("import sys; sys.modules['gradio'] = None\n"   # as if the [app] extra were not installed
            "import locinsert.app as app\n"
            "from locinsert.cli.main import build_parser\n"
            "build_parser().parse_args(['app', '--model', 'tiny'])\n"
            "assert app.EditSession and app.AddObject and app.find_demo_model('nowhere') is None\n")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr


def test_proposal_shows_log_p_and_the_fit_verdict(session, image_path):
    p = session.start(image_path, INSTRUCTION, seed=3)
    fit = p.candidates.fit
    assert fit is not None and fit.where == "on the left" and 0 <= fit.mass <= 1
    assert fit.message[1:] in p.note                           # the verdict is on the page, under the picture
    assert f"log p {float(p.candidates.log_p[0]):.2f}" in p.label(0)
    assert p.candidates.log_q is not None and not torch.equal(p.candidates.log_q, p.candidates.log_p)
    session.apply(0)
    record = session.applied[-1].to_dict(64, 64)
    assert record["log_p"] == round(float(p.candidates.log_p[0]), 4) and record["fit"]["where"] == "on the left"
