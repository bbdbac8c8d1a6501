"""Speed benchmarks behind `locinsert bench`: sampling, training and evaluation, on a CPU or a GPU."""

from __future__ import annotations

import json
import os


def write_json(obj, path: str) -> None:
    """Write ``obj`` as JSON atomically (a temporary file, then a rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)
