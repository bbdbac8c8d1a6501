"""Test-wide settings: never touch the network; keep torch to the machine's cores."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

# The library's thread policy (locinsert/threads.py), before any test imports torch: idle OpenMP
# threads sleep instead of spinning (torch: one thread per usable core, or OMP_NUM_THREADS).
from locinsert.threads import configure_threads  # noqa: E402

configure_threads()

import pytest  # noqa: E402 (after the environment above, so nothing imported later goes online)


@pytest.fixture(scope="module")
def model():
    """The tiny random ``LocationModel`` (seed 0, eval mode), one per test module."""
    import torch

    from locinsert.modeling import LocationModel, LocationModelConfig

    torch.manual_seed(0)
    return LocationModel(LocationModelConfig.preset("tiny")).eval()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    """The tiny random ``LocationModel`` (seed 0) saved to a folder, loaded the way a hub id is."""
    import torch

    from locinsert.modeling import LocationModel, LocationModelConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "tiny"
    LocationModel(LocationModelConfig.preset("tiny")).save_pretrained(path)
    return str(path)
