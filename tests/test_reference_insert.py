"""Insert *this* object end to end: which step is the reference, its class (user, instruction or CLIP
zero-shot with a tiny random open_clip model loaded through ``local-dir:``), ``ObjectInserter``,
``locinsert insert --reference`` and the fidelity metrics."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_diffusers import tiny_clip, tiny_open_clip
from locinsert import ObjectInserter
from locinsert.cli.main import main
from locinsert.inpainting import CutoutCompositor, DiffusersInpainter, as_reference, box_mask
from locinsert.editing.metrics import CLIPScorer, reference_clip_similarity, reference_pixel_error, sprite_pixel_error
from locinsert.editing.zero_shot import (COCO_CLASSES, ZeroShotClassifier, named_class, reference_steps,
                                       refers_to_reference)


def mug(colour=(220, 30, 30)):
    a = np.zeros((24, 20, 4), np.uint8)
    yy, xx = np.mgrid[:24, :20]
    a[(yy - 13) ** 2 + (xx - 10) ** 2 <= 49] = (*colour, 255)
    return Image.fromarray(a, "RGBA")


def noise(w, h, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 200, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("open_clip")
    tiny_open_clip(str(path))
    return path


@pytest.fixture(scope="module")
def classifier(clip_dir):
    return ZeroShotClassifier.from_pretrained(f"local-dir:{clip_dir}")


class SpyModel:
    """The tiny location model, recording the class each ``sample`` call asked for."""

    def __init__(self, model):
        self.model, self.classes = model, []

    def sample(self, image, cls, **kw):
        self.classes.append(cls)
        return self.model.sample(image, cls, **kw)


# -- which object is the reference, and its class ------------------------------------------------

@pytest.mark.parametrize("objects, marks, names", [
    (["it"], [True], [None]),
    (["this one"], [True], [None]),
    (["object"], [True], [None]),                     # "add the object ..." after the article is dropped
    (["this mug"], [True], ["mug"]),
    (["my red chair"], [True], ["red chair"]),
    (["mug"], [True], ["mug"]),                       # a single object is the reference
    (["it", "lamp"], [True, False], [None, "lamp"]),
    (["cup", "this"], [False, True], ["cup", None]),
])
def test_reference_steps_and_named_class(objects, marks, names):
    assert reference_steps(objects) == marks
    assert [named_class(o) for o in objects] == names


def test_several_objects_without_a_marked_reference_is_ambiguous():
    assert not refers_to_reference("lamp") and refers_to_reference("That")
    with pytest.raises(ValueError, match="none of them is marked as the reference"):
        reference_steps(["mug", "lamp"])


def test_zero_shot_is_clip_softmax_over_the_vocabulary(clip_dir, classifier):
    import open_clip

    clip, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{clip_dir}")
    tok = open_clip.get_tokenizer(f"local-dir:{clip_dir}")
    vocab = ["cup", "chair", "potted plant"]
    photo = Image.new("RGB", (20, 30), (200, 30, 30))
    with torch.no_grad():
        i = clip.encode_image(preprocess(photo)[None])
        t = clip.encode_text(tok([f"a photo of a {c}." for c in vocab]))
    i, t = i / i.norm(dim=-1, keepdim=True), t / t.norm(dim=-1, keepdim=True)
    want = (clip.logit_scale.exp() * i @ t.T).softmax(-1)[0]
    got = classifier(photo, vocab)
    assert got.label == vocab[int(want.argmax())]
    assert [got.probs[c] for c in vocab] == pytest.approx(want.tolist(), abs=1e-4)
    assert list(got.probs.values()) == sorted(got.probs.values(), reverse=True)
    full = classifier(photo)
    assert len(full.probs) == len(COCO_CLASSES) == 80 and sum(full.probs.values()) == pytest.approx(1, abs=1e-3)
    # a cut-out is seen on white, not on whatever colour its transparent pixels hold
    assert classifier(mug(), vocab).probs == classifier(as_reference(mug()).rgb(), vocab).probs


def test_zero_shot_bad_inputs(classifier):
    with pytest.raises(ValueError, match="at least 2"):
        classifier(mug(), ["cup"])
    with pytest.raises(ValueError, match="without pretrained weights"):
        ZeroShotClassifier.from_pretrained("ViT-B-32", pretrained=None)


# -- ObjectInserter with a reference ------------------------------------------------------------

def test_inserter_classifies_the_reference_and_pastes_it(model, classifier):
    spy = SpyModel(model)
    ins = ObjectInserter(spy, CutoutCompositor(), num_candidates=4, reference=mug(), classifier=classifier,
                         vocabulary=["cup", "chair", "bird"], min_size=12)
    img = noise(72, 48)
    out = ins(img, "add it on the left", generator=torch.Generator().manual_seed(0))
    label = ins.reference_zero_shot.label
    assert out.object == label and spy.classes == [label] and out.steps[0].reference
    assert reference_pixel_error(out.image, out.box.tolist(), mug()) < 0.03          # the object itself
    m = box_mask(out.box.tolist(), 72, 48)
    assert np.array_equal(np.asarray(img)[~m], np.asarray(out.image)[~m])


def test_inserter_class_priority_user_then_instruction_then_zero_shot(model):
    calls = []

    def classify(ref, vocabulary):
        calls.append(vocabulary)
        return "bird"

    spy = SpyModel(model)
    ins = ObjectInserter(spy, CutoutCompositor(), num_candidates=2, reference=mug(), classifier=classify)
    g = torch.Generator().manual_seed(0)
    assert ins(noise(64, 48), "add this mug on the left", generator=g).object == "mug" and not calls
    assert ins(noise(64, 48), "add it", generator=g).object == "bird" and len(calls) == 1
    ins.reference_class = "teapot"
    assert ins(noise(64, 48), "add this mug", generator=g).object == "teapot"
    assert spy.classes == ["mug", "bird", "teapot"]


def test_inserter_without_class_or_classifier_says_what_to_pass(model, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("cannot reach the hub")

    monkeypatch.setattr(ZeroShotClassifier, "from_pretrained", offline)
    ins = ObjectInserter(model, CutoutCompositor(), num_candidates=2, reference=mug())
    with pytest.raises(ValueError, match="names no class.*cannot reach the hub.*reference_class="):
        ins(noise(64, 48), "add it")


def test_inserter_reference_goes_to_its_step_only(model):
    from locinsert.data.synthetic import sprite

    ins = ObjectInserter(model, CutoutCompositor(sprite, allow_opaque=True), num_candidates=3, reference=mug(),
                         reference_class="mug", min_size=12)
    out = ins(noise(72, 48), "add it on the left, then a chair on the right", generator=torch.Generator().manual_seed(0))
    assert [(s.object, s.reference) for s in out.steps] == [("mug", True), ("chair", False)]
    with pytest.raises(ValueError, match="none of them is marked"):
        ins(noise(72, 48), "add a cup, then a chair")
    # the call can bring its own reference
    blue = ins(noise(72, 48), "add it", generator=torch.Generator().manual_seed(0), reference=mug((30, 30, 220)))
    assert reference_pixel_error(blue.image, blue.box.tolist(), mug((30, 30, 220))) < 0.03


def test_inserter_refuses_a_reference_its_inpainter_cannot_use(model):
    from helpers_diffusers import tiny_sd_inpaint

    with pytest.raises(ValueError, match="cannot use a reference image"):
        ObjectInserter(model, DiffusersInpainter(tiny_sd_inpaint()), reference=mug())

    class TextOnly:
        def inpaint(self, image, box, prompt, generator=None):
            return image

    with pytest.raises(ValueError, match="TextOnly cannot use a reference"):
        ObjectInserter(model, TextOnly(), reference=mug())
    with pytest.raises(ValueError, match="fully transparent"):
        ObjectInserter(model, CutoutCompositor(), reference=Image.new("RGBA", (5, 5)))
    with pytest.raises(ValueError, match="reference_class"):
        ObjectInserter(model, CutoutCompositor(), reference=mug(), reference_class=" ")


# -- metrics ------------------------------------------------------------------------------------

def test_pixel_error_is_zero_for_the_object_itself_and_sees_others():
    from locinsert.data.synthetic import paste_sprite

    bg = noise(64, 64)
    drawn = paste_sprite(bg, "chair", (10, 20, 34, 52))
    assert sprite_pixel_error(drawn, (10, 20, 34, 52), "chair") == 0.0
    assert sprite_pixel_error(drawn, (10, 20, 34, 52), "cup") > 0.1
    assert sprite_pixel_error(bg, (10, 20, 34, 52), "chair") > 0.1
    pasted = CutoutCompositor().inpaint(bg, (5, 5, 35, 35), reference=mug())
    assert reference_pixel_error(pasted, (5, 5, 35, 35), mug()) < 0.03
    assert reference_pixel_error(pasted, (5, 5, 35, 35), mug((30, 30, 220))) > 0.2
    with pytest.raises(ValueError, match="covers no pixel"):
        reference_pixel_error(bg, (0, 0, 1, 1), Image.fromarray(np.full((9, 9, 4), (9, 9, 9, 60), np.uint8), "RGBA"))


def test_reference_clip_similarity_is_the_cosine_of_image_embeddings(tmp_path):
    model, processor = tiny_clip(str(tmp_path / "clip"))
    scorer = CLIPScorer.from_pretrained(str(tmp_path / "clip"))
    img = noise(48, 48)
    crop = img.crop((8, 8, 40, 40))
    ref = as_reference(mug()).rgb()
    inputs = processor(text=["x"], images=[crop, ref], return_tensors="pt", padding=True)
    with torch.no_grad():
        e = model(**inputs).image_embeds
    want = float(e[0] @ e[1])
    assert reference_clip_similarity(img, (8, 8, 40, 40), mug(), model=scorer) == pytest.approx(want, abs=1e-5)
    assert reference_clip_similarity(img, (8, 8, 40, 40), mug(), model=model, processor=processor) == \
        pytest.approx(want, abs=1e-5)
    assert scorer.image_similarity(img, (8, 8, 40, 40), crop) == pytest.approx(1.0, abs=1e-5)


# -- command line -------------------------------------------------------------------------------

@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "room.png"
    noise(64, 48).save(path)
    return str(path)


@pytest.fixture
def mug_png(tmp_path):
    mug().save(tmp_path / "mug.png")
    return str(tmp_path / "mug.png")


def test_cli_reference_with_cutout_and_zero_shot(image_path, mug_png, clip_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["insert", image_path, "add it on the left", "--model", "tiny", "-n", "3", "--min-size", "12",
                 "--reference", mug_png,
                 "--zero-shot-model", f"local-dir:{clip_dir}", "--classes", "cup,chair,bird",
                 "--out", str(out)]) == 0
    rec = json.loads((out / "room_insert.json").read_text())
    step = rec["steps"][0]
    assert rec["reference"] == mug_png and step["reference"] is True
    assert step["object"] in ("cup", "chair", "bird") and list(rec["reference_zero_shot"])[0] == step["object"]
    assert "by CLIP zero-shot" in capsys.readouterr().out
    edited = Image.open(out / "room_edited.png").convert("RGB")
    assert reference_pixel_error(edited, step["box"], mug()) < 0.03


def test_cli_reference_with_paint_by_example_folder(image_path, mug_png, tmp_path):
    from helpers_diffusers import tiny_paint_by_example

    tiny_paint_by_example().save_pretrained(tmp_path / "pbe")
    out = tmp_path / "o"
    assert main(["insert", image_path, "add this cup on the left", "--model", "tiny", "-n", "2", "--reference",
                 mug_png, "--inpainter", "paint-by-example", "--inpainter-model", str(tmp_path / "pbe"),
                 "--steps", "2", "--out", str(out)]) == 0
    rec = json.loads((out / "room_insert.json").read_text())
    assert rec["steps"][0]["object"] == "cup" and "reference_zero_shot" not in rec
    m = box_mask(rec["steps"][0]["box"], 64, 48)
    edited, orig = np.asarray(Image.open(out / "room_edited.png").convert("RGB")), np.asarray(Image.open(image_path))
    assert np.array_equal(edited[~m], orig[~m]) and not np.array_equal(edited[m], orig[m])


def test_cli_reference_with_repaint_on_an_sd_inpainting_folder(image_path, tmp_path):
    from helpers_diffusers import tiny_sd_inpaint

    tiny_sd_inpaint().save_pretrained(tmp_path / "sd")
    Image.new("RGB", (12, 16), (200, 40, 40)).save(tmp_path / "photo.jpg")          # a photo: no alpha
    out = tmp_path / "o"
    assert main(["insert", image_path, "add this mug at the bottom", "--model", "tiny", "-n", "2", "--reference",
                 str(tmp_path / "photo.jpg"), "--inpainter", "repaint", "--inpainter-model", str(tmp_path / "sd"),
                 "--steps", "4", "--jump-length", "2", "--jump-n-sample", "2", "--schedule", "linear",
                 "--guidance-scale", "1", "--out", str(out)]) == 0
    rec = json.loads((out / "room_insert.json").read_text())
    assert rec["inpainter"] == "repaint" and rec["steps"][0]["object"] == "mug"
    m = box_mask(rec["steps"][0]["box"], 64, 48)
    edited, orig = np.asarray(Image.open(out / "room_edited.png").convert("RGB")), np.asarray(Image.open(image_path))
    assert np.array_equal(edited[~m], orig[~m]) and not np.array_equal(edited[m], orig[m])


@pytest.mark.parametrize("argv_tail, message", [
    (["--reference", "MUG", "--inpainter", "gligen"], "cannot use a --reference"),
    (["--reference", "MISSING"], "not found"),
    (["--reference", "RGB"], "no transparency"),
    (["--reference", "EMPTY"], "fully transparent"),
    (["--reference", "MUG", "--cutout", "MUG"], "not both"),
    (["--reference", "MUG", "--schedule", "paste"], "only apply to --inpainter repaint"),
    (["--reference-class", "cup"], "needs --reference"),
    (["--inpainter", "paint-by-example"], "draws only from a --reference"),
    (["--reference", "MUG", "--zero-shot-model", "local-dir:NOWHERE"], "--reference-class"),
])
def test_cli_bad_references_fail_with_one_clear_line(image_path, mug_png, tmp_path, capsys, argv_tail, message):
    Image.new("RGB", (9, 9), (1, 2, 3)).save(tmp_path / "rgb.png")
    Image.new("RGBA", (9, 9)).save(tmp_path / "empty.png")
    files = {"MUG": mug_png, "MISSING": str(tmp_path / "nope.png"), "RGB": str(tmp_path / "rgb.png"),
             "EMPTY": str(tmp_path / "empty.png"), "local-dir:NOWHERE": f"local-dir:{tmp_path / 'nowhere'}"}
    argv = ["insert", image_path, "add it on the left", "--model", "tiny", "--out", str(tmp_path / "x")]
    assert main(argv + [files.get(a, a) for a in argv_tail]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_explains_the_reference_options(capsys):
    with pytest.raises(SystemExit):
        main(["insert", "--help"])
    text = capsys.readouterr().out
    for word in ("--reference", "--reference-class", "paint-by-example", "repaint", "--schedule", "zero-shot"):
        assert word in text
