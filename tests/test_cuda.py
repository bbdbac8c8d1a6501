"""CUDA correctness: the GPU paths compute what the CPU paths compute (run on a GPU with `pytest -m cuda`).

Skipped without a CUDA GPU. ``scripts/device_check.sh`` runs this file first on a lent GPU.
- sampling and scoring on CUDA equal the CPU's for the same tokens (float tolerance);
- bf16 sampling keeps every constraint; compiled decode steps (CUDA graphs) equal the eager step;
- a training step runs under bf16 autocast through the real Trainer;
- the tiny inpainter pipelines (reference backends too), loaded in fp16 on CUDA, still paste back
  byte-identically.
"""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from locinsert.inpainting import box_mask
from locinsert.modeling import LocationModel, LocationModelConfig
from locinsert.modeling.constraints import BoxConstraints
from locinsert.modeling.sampling import decode_boxes
from locinsert.regions import Region

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run with -m cuda on one)")]

IMAGE = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)  # H 48, W 64
BLOB = np.zeros((48, 64), dtype=bool)
BLOB[10:40, 5:30] = True
REGIONS = [None, "left", Region((6.0, 4.0, 50.0, 30.0)), Region(BLOB), Region(BLOB, mode="center"),
           Region(None, avoid=[[10, 8, 30, 30]]), Region((25.0, 3.0, 40.0, 20.0), mode="center",
                                                         avoid=[[30, 0, 34, 48]])]


@pytest.fixture(autouse=True)
def strict_fp32():
    """TF32 off (cuDNN convolutions use it by default): fp32 on the GPU is then compared with the CPU's fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def cpu_model():
    torch.manual_seed(0)
    return LocationModel(LocationModelConfig.preset("synthetic")).eval()


@pytest.fixture(scope="module")
def cuda_model(cpu_model):
    return copy.deepcopy(cpu_model).to("cuda")


@pytest.mark.parametrize("region", [None, "left", Region(BLOB)])
def test_scores_on_cuda_equal_cpu(cpu_model, cuda_model, region):
    s = cpu_model.sample(IMAGE, "cup", num_samples=64, region=region, generator=torch.Generator().manual_seed(1))
    on_cuda = cuda_model.score(IMAGE, "cup", s.boxes, region=region)
    assert on_cuda.device.type == "cpu"
    torch.testing.assert_close(on_cuda, s.logprobs, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(cuda_model.score(IMAGE, "cup", s.boxes, constrained=False),
                               cpu_model.score(IMAGE, "cup", s.boxes, constrained=False), atol=1e-3, rtol=1e-4)


def test_forced_decoding_on_cuda_equals_cpu(cpu_model, cuda_model):
    tokens = torch.randint(0, cpu_model.num_bins, (2, 40, 4))
    logps = []
    for m in (cpu_model, cuda_model):
        with torch.no_grad():
            cache = m.encode_prefix(m.load_images([IMAGE, IMAGE[::-1].copy()]), ["cup", "chair"])
            logps.append(decode_boxes(m.decoder, m.lm_head, cache, 40, forced=tokens.to(m.device))[1].cpu())
    torch.testing.assert_close(logps[1], logps[0], atol=1e-3, rtol=1e-4)


def test_sampling_on_cuda_gives_cpu_scores(cpu_model, cuda_model):
    g = torch.Generator("cuda").manual_seed(0)
    s = cuda_model.sample(IMAGE, "bird", num_samples=100, region="top", generator=g)
    torch.testing.assert_close(cpu_model.score(IMAGE, "bird", s.boxes, region="top"), s.logprobs,
                               atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_sampling_keeps_every_constraint(cpu_model, dtype):
    model = copy.deepcopy(cpu_model).to("cuda", dtype)
    for region in REGIONS:
        for min_size in (None, 6.0):
            s = model.sample([IMAGE, IMAGE], "cup", num_samples=200, region=region, min_size=min_size,
                             generator=torch.Generator("cuda").manual_seed(2))
            for one in s:
                c = BoxConstraints(64, 48, model.num_bins, region, min_size)
                assert c.satisfied(one.boxes).all(), (region, min_size)
                assert torch.isfinite(one.logprobs).all()


@pytest.mark.parametrize("mode", ["cudagraphs", "reduce-overhead"])
def test_compiled_decode_step_equals_eager_on_cuda(cpu_model, mode):
    model = copy.deepcopy(cpu_model).to("cuda")
    s = model.sample(IMAGE, "cup", num_samples=50, generator=torch.Generator("cuda").manual_seed(3))
    eager = model.score(IMAGE, "cup", s.boxes)
    try:
        model.compile_decoding(mode)
        for _ in range(3):  # warm-up, graph recording, replay
            compiled = model.score(IMAGE, "cup", s.boxes)
            torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
        for n in (1, 50):  # a new shape, then replays of the recorded one
            t = model.sample(IMAGE, "cup", num_samples=n, region="left")
            assert BoxConstraints(64, 48, model.num_bins, "left").satisfied(t.boxes).all()
            torch.testing.assert_close(model.score(IMAGE, "cup", t.boxes, region="left"), t.logprobs,
                                       atol=1e-4, rtol=1e-4)
    finally:
        model.compile_decoding("none")


def test_training_step_under_bf16_autocast(tmp_path):
    from locinsert.data.synthetic import splits
    from locinsert.training.config import load_stage_config
    from locinsert.training.datasets import BoxDataset, collate
    from locinsert.training.runner import ModelLossTrainer

    torch.manual_seed(0)
    model = LocationModel(LocationModelConfig.preset("synthetic"))
    queries = splits.opa_like(8, seed=0, num_bins=model.num_bins)
    before = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    args = load_stage_config("pretrain", None, output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8,
                             save_strategy="no", logging_steps=1, report_to="none", bf16=True, disable_tqdm=True)[2]
    assert args.bf16
    trainer = ModelLossTrainer(model=model, args=args, data_collator=collate,
                            train_dataset=BoxDataset(queries, model.num_bins, preprocess=model.preprocessor))
    trainer.train()
    assert next(model.parameters()).device.type == "cuda"
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(np.isfinite(losses))
    changed = [k for k, v in model.named_parameters() if v.requires_grad and not torch.equal(v.detach().cpu(),
                                                                                            before[k])]
    assert "lm_head.weight" in changed and len(changed) > len(before) // 2


def _noise(w, h, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8))


def _mug():
    """An RGBA cut-out reference: a red disc on transparency."""
    a = np.zeros((24, 20, 4), np.uint8)
    yy, xx = np.mgrid[:24, :20]
    a[(yy - 13) ** 2 + (xx - 10) ** 2 <= 49] = (220, 30, 30, 255)
    return Image.fromarray(a, "RGBA")


@pytest.mark.parametrize("kind, dtype", [("sd", torch.float16), ("gligen", torch.float16), ("flux", torch.float16),
                                         ("flux", torch.bfloat16), ("paint_by_example", torch.float16),
                                         ("repaint", torch.float16)])
def test_tiny_inpainters_in_half_precision_paste_back_exactly(tmp_path, kind, dtype):
    import warnings

    from helpers_diffusers import tiny_flux_fill, tiny_gligen, tiny_paint_by_example, tiny_sd_inpaint
    from locinsert.inpainting import (DiffusersInpainter, GLIGENInpainter, PaintByExampleInpainter,
                                      ReferenceRePaintInpainter)

    build = {"sd": tiny_sd_inpaint, "gligen": tiny_gligen, "flux": tiny_flux_fill, "repaint": tiny_sd_inpaint,
             "paint_by_example": tiny_paint_by_example}[kind]
    loader = {"gligen": GLIGENInpainter, "paint_by_example": PaintByExampleInpainter,
              "repaint": ReferenceRePaintInpainter}.get(kind, DiffusersInpainter)
    extra = {"flux": {"resolution": 32}, "repaint": {"jump_length": 2, "jump_n_sample": 2, "guidance_scale": 1.0},
             }.get(kind, {})
    reference = _mug() if kind in ("paint_by_example", "repaint") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # deprecated pipelines (GLIGEN, Paint-by-Example) say so
        build().save_pretrained(tmp_path / kind)
        inp = loader.from_pretrained(str(tmp_path / kind), dtype=dtype, device="cuda",
                                     num_inference_steps=4 if kind == "repaint" else 2, **extra)
    assert inp.pipe.device.type == "cuda"
    for size, box in [((80, 50), (20.5, 10.2, 45.7, 38.9)), ((48, 72), (36, 40, 48, 72))]:
        img = _noise(*size)
        kwargs = {"reference": reference} if reference is not None else {}
        out = inp.inpaint(img, box, "a red cup", generator=torch.Generator("cuda").manual_seed(0), **kwargs)
        assert out.size == img.size and out.mode == "RGB"
        m = box_mask(box, *size)
        a, b = np.asarray(img), np.asarray(out)
        assert np.array_equal(a[~m], b[~m])          # byte-identical outside the box
        assert not np.array_equal(a[m], b[m])        # something was drawn inside it
