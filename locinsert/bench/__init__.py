"""Speed benchmarks behind `locinsert bench`: sampling, training and evaluation, on a CPU or a GPU."""

from __future__ import annotations

def write_json(obj, path: str) -> None:
    """Write ``obj`` as JSON atomically (one writer for every benchmark: :func:`locinsert.io.write_json_atomic`)."""
    from ..io import write_json_atomic

    write_json_atomic(path, obj)
