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
