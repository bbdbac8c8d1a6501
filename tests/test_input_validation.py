"""Inputs accepted or refused rightly: parameters checked at the API edge, 16-bit images, non-ASCII
objects, and bounded memory for any number of samples."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

import locinsert.modeling.model as model_module
from locinsert.evaluation import RandomBoxes, evaluate
from locinsert.images import load_image
from locinsert.editing.inserter import ObjectInserter
from locinsert.editing.instructions import parse_instruction, parse_instructions
from locinsert.modeling import LocationModelConfig
from locinsert.validation import MAX_BOXES_PER_CALL, check_float, check_int


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)


BAD_SAMPLE_ARGS = [
    (dict(temperature=math.inf), ValueError, "temperature must be a finite number > 0, got inf"),
    (dict(temperature=-1.0), ValueError, "temperature must be a finite number > 0"),
    (dict(temperature="1"), TypeError, "temperature must be a number, got str '1'"),
    (dict(num_samples=2.7), ValueError, "num_samples must be a whole number, got 2.7"),
    (dict(num_samples=True), TypeError, "num_samples must be an integer, got True"),
    (dict(num_samples="3"), TypeError, "num_samples must be an integer"),
    (dict(num_samples=0), ValueError, "num_samples must be an integer >= 1"),
    (dict(num_samples=MAX_BOXES_PER_CALL + 1), ValueError, "num_samples: 10,000,001 boxes in one call exceed"),
    (dict(num_samples=MAX_BOXES_PER_CALL // 2, resample=3), ValueError, "num_samples x resample: 15,000,000"),
    (dict(top_k=1.5), ValueError, "top_k must be a whole number, got 1.5"),
    (dict(top_k=0), ValueError, "top_k must be an integer >= 1"),
    (dict(top_p=math.nan), ValueError, "top_p must be a finite number > 0 and <= 1, got nan"),
    (dict(top_p=1.5), ValueError, "top_p must be a finite number > 0 and <= 1"),
    (dict(min_size="3"), TypeError, "min_size must be a number"),
    (dict(min_size=-1), ValueError, "min_size must be a finite number >= 0"),
    (dict(resample=1.5), ValueError, "resample must be a whole number"),
    (dict(generator=3), TypeError, "generator must be a torch.Generator or None, got int"),
    (dict(region=["left", "right"]), ValueError, "region: got a list of 2 regions for one image"),
    (dict(region={"left": 1}), TypeError, "region must be a phrase, an xyxy box, a mask or a Region, got dict"),
    (dict(region=5), TypeError, "region must be a phrase, an xyxy box, a mask or a Region, got int"),
    (dict(classes=None), TypeError, "classes must be a class name or a list of them, got NoneType"),
    (dict(classes=5), TypeError, "classes must be a class name or a list of them, got int"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_SAMPLE_ARGS, ids=[m for _, _, m in BAD_SAMPLE_ARGS])
def test_sample_checks_every_parameter(model, image, kwargs, error, message, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("sample() started decoding with a bad parameter")

    monkeypatch.setattr(model_module, "decode_boxes", no_work)
    kwargs = dict(kwargs)
    classes = kwargs.pop("classes", "dog")
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        model.sample(image, classes, **{"num_samples": 4, **kwargs})


def test_score_checks_its_parameters(model, image):
    with pytest.raises(TypeError, match="boxes must be xyxy pixel boxes, .* got None"):
        model.score(image, "dog", None)
    with pytest.raises(TypeError, match="constrained must be True or False, got str 'no'"):
        model.score(image, "dog", [[0, 0, 10, 10]], constrained="no")
    with pytest.raises(ValueError, match="got a list of 2 regions for one image"):
        model.score(image, "dog", [[0, 0, 10, 10]], region=["left", "right"])
    with pytest.raises(ValueError, match="min_size must be a finite number >= 0, got inf"):
        model.score(image, "dog", [[0, 0, 10, 10]], min_size=math.inf)


def test_integral_values_of_other_types_are_accepted(model, image):
    s = model.sample(image, "dog", num_samples=np.int64(3), temperature=np.float32(1.0), top_k=4.0)
    assert len(s) == 3


def test_other_entry_points_check_parameters(model, image):
    with pytest.raises(ValueError, match="num_candidates must be a whole number, got 2.5"):
        ObjectInserter(model, None, num_candidates=2.5)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got inf"):
        ObjectInserter(model, None, temperature=math.inf)
    with pytest.raises(TypeError, match="avoid_previous must be True or False"):
        ObjectInserter(model, None, avoid_previous="yes")
    with pytest.raises(ValueError, match="selection must be one of"):
        ObjectInserter(model, None, selection="best")
    with pytest.raises(ValueError, match="num_candidates must be an integer >= 1"):
        ObjectInserter(model, None).propose(image, "cup", num_candidates=0)
    with pytest.raises(ValueError, match="num_samples must be a whole number, got 2.7"):
        RandomBoxes(32).sample([image], ["cup"], num_samples=2.7)
    with pytest.raises(ValueError, match="num_samples x images: 12,000,000 boxes in one call exceed"):
        RandomBoxes(32).sample([image] * 3, ["cup"] * 3, num_samples=4_000_000)
    with pytest.raises(ValueError, match="num_bins .* must be an integer >= 2"):
        RandomBoxes(1)
    with pytest.raises(ValueError, match="num_bins must be a whole number, got 2.5"):
        LocationModelConfig.preset("tiny", num_bins=2.5)
    from locinsert.inpainting import CutoutCompositor

    with pytest.raises(ValueError, match="feather must be an integer >= 0"):
        CutoutCompositor(np.full((4, 4, 4), 255, np.uint8), feather=-1)
    with pytest.raises(TypeError, match="allow_opaque must be True or False"):
        CutoutCompositor(np.full((4, 4, 4), 255, np.uint8), allow_opaque="yes")
    from locinsert.inpainting.base import DiffusionInpainter

    class Backend(DiffusionInpainter):
        def generate(self, crop, prompt, generator=None):
            raise NotImplementedError

    for kwargs, message in ((dict(num_inference_steps=2.5), "num_inference_steps must be a whole number"),
                            (dict(context=0.5), r"context \(window size / box size\) must be a finite number >= 1"),
                            (dict(guidance_scale=math.nan), "guidance_scale must be a finite number >= 0"),
                            (dict(feather=1.5), "feather must be a whole number")):
        with pytest.raises(ValueError, match=message):
            Backend(lambda **k: None, resolution=64, multiple=8, **kwargs)
    from locinsert.data import synthetic

    queries = synthetic.test_split(num_scenes=2, seed=0, size=64)
    for kwargs, message in ((dict(iou_threshold=1.5), "iou_threshold must be a finite number >= 0 and < 1"),
                            (dict(batch_size=0.5), "batch_size must be a whole number"),
                            (dict(count="all"), "count must be one of"),
                            (dict(ks=[10, 2.5]), "ks must be positive integers"),
                            (dict(seed=-1), "seed must be an integer >= 0")):
        with pytest.raises((ValueError, TypeError), match=message):
            evaluate(RandomBoxes(32), queries, **{"ks": [2], "progress": False, **kwargs})


def test_validation_helpers():
    assert check_int(3.0, "n") == 3 and check_int(np.int32(2), "n") == 2 and check_int(None, "n", optional=True) is None
    assert check_float(np.float64(0.5), "p", minimum=0, maximum=1) == 0.5
    with pytest.raises(ValueError, match="n must be a whole number, got inf"):
        check_int(math.inf, "n")
    with pytest.raises(TypeError, match="p must be a number, got None"):
        check_float(None, "p")
    assert check_float(math.inf, "x", finite=False) == math.inf


def test_large_requests_decode_in_chunks_of_bounded_memory(model, image, monkeypatch):
    """Each decoding pass holds at most the chunk's rows, whatever num_samples; results are unchanged in kind."""
    monkeypatch.setattr(model_module, "DECODE_CHUNK_BYTES", 30_000)
    cache = model.encode_prefix(model.load_images(image), ["dog"])
    chunk = model._rows_per_pass(cache)
    assert 1 <= chunk < 20
    seen = []
    real = model_module.decode_boxes

    def recording(decoder, head, cache, n, *a, **k):
        seen.append(n)
        return real(decoder, head, cache, n, *a, **k)

    monkeypatch.setattr(model_module, "decode_boxes", recording)
    s = model.sample(image, "dog", num_samples=45, region="left", generator=torch.Generator().manual_seed(0))
    assert len(s) == 45 and max(seen) <= chunk and len(seen) >= math.ceil(45 / chunk)
    assert torch.all((s.boxes[:, 0] + s.boxes[:, 2]) / 2 <= image.shape[1] / 2)  # centre in the left half
    seen.clear()
    torch.testing.assert_close(model.score(image, "dog", s.boxes, region="left"), s.logprobs, atol=1e-5, rtol=1e-5)
    assert max(seen) <= chunk
    r = model.sample([image, image], "dog", num_samples=30, resample=2, generator=torch.Generator().manual_seed(0))
    assert [len(x) for x in r] == [30, 30]


def test_default_chunk_covers_usual_requests(model, image):
    cache = model.encode_prefix(model.load_images(image), ["dog"])
    assert model._rows_per_pass(cache) >= 10_000  # the tiny model: one pass for any ordinary request


# -- 16-bit images: one rule for every container ------------------------------------------------------

@pytest.mark.parametrize("values", [np.full((8, 8), 200), np.full((8, 8), 65535), np.arange(64).reshape(8, 8) * 1000])
def test_16bit_png_scaled_like_uint16_array(tmp_path, values):
    data = values.astype(np.uint16)
    Image.fromarray(data).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == "I;16"
    from_file = np.asarray(load_image(tmp_path / "a.png"))
    from_array = np.asarray(load_image(data))
    assert np.array_equal(from_file, from_array)
    assert np.array_equal(from_file[..., 0], (data // 257).astype(np.uint8))
    assert np.array_equal(np.asarray(load_image(Image.fromarray(data.astype(np.int32), mode="I"))), from_array)


# -- instructions: an object in any script -----------------------------------------------------------

@pytest.mark.parametrize("text,obj", [("add a 狗 on the left", "狗"), ("put a Hund in the top right", "Hund"),
                                      ("add a chaise à porter", "chaise à porter"), ("add a собака", "собака"),
                                      ("add a 3", "3")])
def test_non_ascii_objects_are_objects(text, obj):
    assert parse_instruction(text).object == obj


def test_no_object_still_refused():
    for text in ("add a ___ on the left", "add a … on the left", "add on the left"):
        with pytest.raises(ValueError, match="no object"):
            parse_instruction(text)
    assert [i.object for i in parse_instructions("add a 狗 on the left, then a 猫 on the right")] == ["狗", "猫"]


@pytest.mark.parametrize("text,obj", [("add a 🐶 on the left", "🐶"), ("remove the ☕ on the right", "☕"),
                                      ("add a 🐕‍🦺", "🐕‍🦺")])
def test_pictograph_objects_are_objects(text, obj):
    """An emoji names a class as well as a word does (``sample()`` takes the same string)."""
    assert parse_instruction(text).object == obj


# -- one grammar for remove and edit: one step where one is taken, locations understood --------------

def test_one_step_and_understood_locations():
    from locinsert.editing.instructions import RemoveInstruction, parse_step

    assert parse_step("the cup", verb="remove") == RemoveInstruction("cup", None)
    assert parse_step("please erase the cup on the left.", verb="remove").region.name == "on the left"
    with pytest.raises(ValueError, match=r"is a sequence of 2 steps \(remove 'cup', then remove 'plant'\), but "
                                         r"one step is expected; use edit"):
        parse_step("remove the cup, then remove the plant", verb="remove", hint="use edit")
    with pytest.raises(ValueError, match="asks to add 'cup', but only remove is possible here"):
        parse_step("add a cup", verb="remove")
    for text in ("remove the cup on the moon", "move the cup on the moon to the left"):
        with pytest.raises(ValueError, match="location in .* is not understood"):
            parse_instruction(text)
        with pytest.raises(ValueError, match="location in .* is not understood"):
            parse_instructions(f"add a plant, then {text}")
    # adding stays lenient: a text-guided inpainter still reads the phrase
    assert parse_instruction("add a cup on the moon").object == "cup on the moon"


# -- constructors: the same vocabulary, messages that name the argument --------------------------------

def test_constructors_check_their_numbers(model, image):
    from locinsert.editing.editor import ObjectEditor
    from locinsert.inpainting import CutoutCompositor
    from locinsert.inpainting.removal import BiharmonicFill
    from locinsert.segmentation import CLIPSegSegmenter

    cutout = CutoutCompositor(np.full((4, 4, 4), 255, np.uint8), allow_opaque=True)
    cases = [
        (lambda: BiharmonicFill(dilate=math.nan), ValueError, "dilate must be a whole number, got nan"),
        (lambda: BiharmonicFill(dilate=-1), ValueError, "dilate must be an integer >= 0, got -1"),
        (lambda: BiharmonicFill(margin=1), ValueError, "margin .* must be an integer >= 2"),
        (lambda: model.heatmap(image, "dog", num_samples=2.5), ValueError, "num_samples must be a whole number"),
        (lambda: CLIPSegSegmenter(None, None, threshold=0), ValueError,
         "threshold must be a finite number > 0 and < 1, got 0"),
        (lambda: CLIPSegSegmenter(None, None, batch_size=2.5), ValueError, "batch_size must be a whole number"),
        (lambda: ObjectEditor(min_pixels=-1), ValueError, "min_pixels must be an integer >= 0, got -1"),
        (lambda: ObjectEditor(threshold="0.5"), TypeError, "threshold must be a number, got str"),
        (lambda: ObjectEditor(strict="no"), TypeError, "strict must be True or False"),
        (lambda: model.score(image, "dog", ["a", "b", "c", "d"]), TypeError, "boxes must be xyxy pixel boxes"),
        (lambda: model.score(image, "dog", [[0, 0, None, 4]]), TypeError, "boxes must be xyxy pixel boxes made of"),
        (lambda: cutout.inpaint(image, "0,0,4,4", "cup"), TypeError, "box must be xyxy pixel boxes"),
        (lambda: cutout.inpaint(image, None, "cup"), TypeError, "box must be xyxy pixel boxes"),
    ]
    for make, error, message in cases:
        with pytest.raises(error, match=message):
            make()


def test_diffusion_constructors_check_their_numbers():
    from helpers_diffusers import tiny_sd_inpaint

    from locinsert.inpainting.repaint import ReferenceRePaintInpainter

    pipe = tiny_sd_inpaint()
    for kwargs, message in ((dict(eta=math.nan), r"eta \(DDIM noise\) must be a finite number >= 0 and <= 1"),
                            (dict(jump_length=2.5), "jump_length must be a whole number, got 2.5"),
                            (dict(jump_n_sample=0), "jump_n_sample must be an integer >= 1")):
        with pytest.raises(ValueError, match=message):
            ReferenceRePaintInpainter(pipe, **kwargs)
