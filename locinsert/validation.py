"""Checks for the numbers and flags of public entry points: one message that names the parameter.

Every public function that takes a count, a temperature, a threshold or a flag checks it here, at
the top, before any work: ``temperature=inf`` or ``num_samples=2.7`` fail with
``ValueError: temperature must be a finite number > 0, got inf`` instead of deep in torch or
silently (2.7 -> 2). The rules:

- an integer parameter takes Python/numpy integers and integral floats (``3.0``), never ``bool``,
  strings or fractions;
- a real parameter takes any real number (not ``bool`` or strings) and must be finite unless
  said otherwise;
- a wrong *type* is a ``TypeError``, a value out of range a ``ValueError``.

The vocabulary (the CLI's argparse types in ``locinsert/cli/options.py`` are built on the same
functions, so a flag and its keyword say the same thing):

- ``check_positive_int``: an integer >= 1 (counts: samples, steps, batch sizes);
- ``check_non_negative_int``: an integer >= 0 (pixels to grow or feather; 0 = none);
- ``check_float``: a finite number, optionally within a range;
- ``check_probability``: a finite number in [0, 1] (or with an open end);
- ``check_port``: a TCP port, 1-65535;
- ``check_seed``: a random seed, 0 <= seed < 2**31;
- ``check_dtype_name``: float32 / float16 / bfloat16 (or fp32 / fp16 / bf16).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["check_int", "check_float", "check_bool", "check_choice", "check_box_count", "MAX_BOXES_PER_CALL",
           "check_positive_int", "check_non_negative_int", "check_probability", "check_port", "check_seed",
           "MAX_SEED", "check_dtype_name", "DTYPE_NAMES"]

#: Most boxes one sampling/scoring call may return (all images together): about 0.5 GB of results
#: (tokens, log-probabilities, pixel boxes). Decoding itself runs in chunks of bounded memory.
MAX_BOXES_PER_CALL = 10_000_000
#: Seeds are below 2**31: numpy, torch and Python's ``random`` all take them, and ``seed + k`` stays valid.
MAX_SEED = 2**31 - 1


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}" if isinstance(value, (str, bytes)) else repr(value)


def _range(minimum, maximum, low_open: bool = False, high_open: bool = False) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if low_open else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"{'<' if high_open else '<='} {maximum:g}")
    return " and ".join(parts)


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None,
              optional: bool = False) -> int | None:
    """``value`` as an ``int`` in [minimum, maximum]; None passes when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(float(value)) or not float(value).is_integer():
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise ValueError(f"{name} must be an integer {_range(minimum, maximum)}, got {value!r}")
    return out


def check_float(value, name: str, *, minimum: float | None = None, maximum: float | None = None,
                low_open: bool = False, high_open: bool = False, finite: bool = True,
                optional: bool = False) -> float | None:
    """``value`` as a ``float`` in the given range (``low_open``/``high_open``: strict bounds)."""
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    out = float(value)
    bad = math.isnan(out) or (finite and math.isinf(out))
    if minimum is not None:
        bad |= out <= minimum if low_open else out < minimum
    if maximum is not None:
        bad |= out >= maximum if high_open else out > maximum
    if bad:
        bounds = _range(minimum, maximum, low_open, high_open)
        what = ("a finite number" if finite else "a number") + (f" {bounds}" if bounds else "")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return out


def check_positive_int(value, name: str, *, maximum: int | None = None, optional: bool = False) -> int | None:
    """An integer >= 1 (and <= ``maximum``): a count of samples, steps, rows..."""
    return check_int(value, name, minimum=1, maximum=maximum, optional=optional)


def check_non_negative_int(value, name: str, *, maximum: int | None = None, optional: bool = False) -> int | None:
    """An integer >= 0 (and <= ``maximum``): pixels to grow or feather, where 0 means none."""
    return check_int(value, name, minimum=0, maximum=maximum, optional=optional)


def check_probability(value, name: str, *, low_open: bool = False, high_open: bool = False,
                      optional: bool = False) -> float | None:
    """A finite number in [0, 1]; ``low_open`` / ``high_open`` leave out 0 / 1."""
    return check_float(value, name, minimum=0, maximum=1, low_open=low_open, high_open=high_open,
                       optional=optional)


def check_port(value, name: str = "port") -> int:
    """A TCP port to listen on, 1-65535."""
    return check_int(value, name, minimum=1, maximum=65535)


def check_seed(value, name: str = "seed") -> int:
    """A random seed in [0, ``MAX_SEED``]."""
    return check_int(value, name, minimum=0, maximum=MAX_SEED)


#: weights dtypes by torch's names; the short names some tools use mean the same
DTYPE_NAMES = ("float32", "float16", "bfloat16")
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16", "float": "float32"}


def check_dtype_name(value, name: str = "dtype") -> str:
    """``value`` as one of ``DTYPE_NAMES`` (``"bf16"`` -> ``"bfloat16"``)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a dtype name, got {_describe(value)}")
    out = _DTYPE_ALIASES.get(value.lower(), value.lower())
    if out not in DTYPE_NAMES:
        raise ValueError(f"{name} must be one of {', '.join(DTYPE_NAMES)} (or fp32, fp16, bf16), got {value!r}")
    return out


def check_bool(value, name: str) -> bool:
    """A real ``bool`` (``"no"`` is truthy in Python, so strings are refused)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def check_choice(value, name: str, choices) -> str:
    """One of ``choices``."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_box_count(count: int, what: str) -> None:
    """Refuse a request for more than ``MAX_BOXES_PER_CALL`` boxes, naming the parameter(s) behind it."""
    if count > MAX_BOXES_PER_CALL:
        raise ValueError(f"{what}: {count:,} boxes in one call exceed the limit of {MAX_BOXES_PER_CALL:,} "
                         "(about 0.5 GB of results); split the request into several calls")
