"""The decode step is one pure function, so torch.compile (and CUDA graphs on a GPU) can take it whole."""

import numpy as np
import pytest
import torch

from locinsert.modeling.sampling import compiled_decode_step, decode_boxes, decode_step

IMAGE = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)


@pytest.mark.slow
def test_decode_step_traces_as_one_graph(model):
    # fullgraph=True fails on any graph break: what CUDA graphs need to capture a whole step.
    traced = torch.compile(decode_step, backend="eager", fullgraph=True)
    tokens = torch.randint(0, model.num_bins, (2, 6, 4))
    with torch.no_grad():
        cache = model.encode_prefix(model.load_images([IMAGE, IMAGE[:, ::-1].copy()]), ["dog", "cup"])
        eager = decode_boxes(model.decoder, model.lm_head, cache, 6, forced=tokens)[1]
        ours = decode_boxes(model.decoder, model.lm_head, cache, 6, forced=tokens, step_fn=traced)[1]
    torch.testing.assert_close(ours, eager, atol=0, rtol=0)


def test_compile_switch(model):
    with pytest.raises(ValueError, match="compile mode"):
        compiled_decode_step("fastest")
    assert compiled_decode_step("none") is decode_step
    assert compiled_decode_step("default") is compiled_decode_step("default")  # one compiled function per mode
    s = model.sample(IMAGE, "dog", num_samples=5, generator=torch.Generator().manual_seed(0))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            model.compile_decoding("cudagraphs")
    assert model.compile_decoding("none") is model
    torch.testing.assert_close(model.score(IMAGE, "dog", s.boxes), s.logprobs)


@pytest.mark.slow
def test_inductor_decode_step_on_cpu_equals_eager(model):
    """Inductor compiles for about a minute per shape on a small CPU, hence slow."""
    s = model.sample(IMAGE, "dog", num_samples=6, region="left", generator=torch.Generator().manual_seed(1))
    try:
        model.compile_decoding("default")
        torch.testing.assert_close(model.score(IMAGE, "dog", s.boxes, region="left"), s.logprobs,
                                   atol=1e-5, rtol=1e-5)
    finally:
        model.compile_decoding("none")
