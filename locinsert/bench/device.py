"""Device and dtype for the benchmarks: choosing them, timing on them, and their measured ceilings.

GPU work is asynchronous: a host clock read right after a launch times the *queueing*, not the
work. Every timer here synchronises the device before it starts and before it stops, and the GEMM
rate uses CUDA events around many back-to-back products after a warm-up.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# the CLI's --dtype says float32 / bfloat16 / float16 (locinsert.validation.DTYPE_NAMES); the bench keys are short
_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}

#: Dense (no sparsity) tensor-core peaks from the vendors' datasheets, FLOP/s, by device-name
#: substring. A lead for MFU only: the measured GEMM rate is the ceiling this code can reach.
DATASHEET_PEAK = {
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
}


def resolve_device(name: str | None = "auto") -> torch.device:
    """"auto" (a GPU when there is one), "cpu", "cuda" or "cuda:N"; a clear error when it is absent."""
    name = "auto" if name is None else str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r}; use auto, cpu or cuda[:N]")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"fp32" | "bf16" | "fp16" (or float32 / bfloat16 / float16) -> torch dtype; fp16 needs a GPU, bf16 one
    that supports it."""
    name = _SHORT.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError("fp16 runs on a GPU only; use --dtype bf16 or fp32 on a CPU")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{torch.cuda.get_device_name(device)} does not support bf16; use fp16 or fp32")
    return DTYPES[name]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable, device: torch.device) -> float:
    """Seconds of one call of ``fn``, the device drained before and after (end-to-end latency)."""
    synchronize(device)
    t = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t


def time_best(fn: Callable, device: torch.device, repeats: int) -> float:
    return min(time_once(fn, device) for _ in range(max(1, repeats)))


def time_median(fn: Callable, device: torch.device, repeats: int) -> float:
    return statistics.median(time_once(fn, device) for _ in range(max(1, repeats)))


def gemm_rate(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, size: int | None = None,
              repeats: int | None = None) -> float:
    """Measured square-matmul rate in FLOP/s at ``dtype`` on ``device`` (random operands, never zeros).

    CPU: best of a few single products. GPU: CUDA events around ``repeats`` back-to-back products
    after three warm-ups, so that launch latency and clock ramp-up are out of the figure.
    """
    device = torch.device(device)
    if size is None:
        # A CPU without bf16/fp16 instructions runs those about 100x slower than fp32 (1.5 GFLOP/s
        # measured on an AVX2 core): a smaller product keeps the probe to a fraction of a second.
        size = 8192 if device.type == "cuda" else 2048 if dtype == torch.float32 else 512
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    flops = 2 * size ** 3
    if device.type != "cuda":
        a @ b
        return flops / time_best(lambda: a @ b, device, repeats or 3)
    repeats = repeats or 20
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    end.synchronize()
    return flops * repeats / (start.elapsed_time(end) / 1e3)


def copy_bandwidth(device: torch.device | str = "cpu", nbytes: int | None = None, repeats: int = 5) -> float:
    """Measured device-memory bandwidth in bytes/s: a large copy, counting bytes read plus written."""
    device = torch.device(device)
    nbytes = nbytes or (2 << 30 if device.type == "cuda" else 64 << 20)
    src = torch.rand(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    return 2 * src.numel() * 4 / time_best(lambda: dst.copy_(src), device, repeats)


def datasheet_peak(device: torch.device, dtype_name: str) -> float | None:
    """The vendor's dense peak for this GPU at this dtype, if it is in ``DATASHEET_PEAK``."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in DATASHEET_PEAK.items():
        if key in name:
            return peaks.get(_SHORT.get(dtype_name, dtype_name))
    return None


def describe(device: torch.device) -> dict:
    """What the figures were measured on: device name, memory, versions, threads."""
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpu": f"{platform.machine()}, {os.cpu_count()} cores", "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2 ** 30, 1),
                    compute_capability=f"{p.major}.{p.minor}", cuda=torch.version.cuda,
                    multiprocessors=p.multi_processor_count)
    return info


def machine_line(info: dict) -> str:
    if "gpu" in info:
        return f"{info['gpu']} ({info['gpu_memory_gib']} GiB), torch {info['torch']}, CUDA {info['cuda']}"
    return f"{info['cpu']} (no GPU), torch {info['torch']}, {info['torch_threads']} threads"
