"""What the options of every subcommand accept: one vocabulary, checked while the command line is read.

Each checked number is an argparse ``type`` built on the library's own checks
(``locinsert.validation``), so ``--steps 0`` and ``steps=0`` are refused by the same rule, and a bad
value never reaches a model load: ``locinsert insert: error: argument --steps: must be an integer
>= 1, got 0``. :class:`Parser` prints that one line (without argparse's usage block) and exits with
code 2, as every other user error of the CLI does.

Sections: numbers; dtypes; the parser.
"""

from __future__ import annotations

import argparse
from typing import Callable

from ..validation import (DTYPE_NAMES, check_dtype_name, check_float, check_int, check_non_negative_int,
                          check_port, check_positive_int, check_probability, check_seed)

__all__ = ["Parser", "positive_int", "non_negative_int", "seed", "port", "probability", "open_probability",
           "positive_float", "non_negative_float", "int_in", "float_in", "int_list", "dtype_name", "DTYPE_NAMES"]


# == numbers =========================================================================================

def _number(text: str) -> int | float:
    s = str(text).strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _argtype(check: Callable, label: str, **bounds) -> Callable[[str], int | float]:
    """An argparse type: parse a number, then ``check(value, name, **bounds)``; its message without the name."""
    def parse(text: str):
        try:
            return check(_number(text), "", **bounds)
        except (TypeError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e).strip()) from None

    parse.__name__ = label
    return parse


def int_in(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An integer in [minimum, maximum]."""
    return _argtype(check_int, "integer", minimum=minimum, maximum=maximum)


def float_in(minimum: float | None = None, maximum: float | None = None, *, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """A finite number in the range (``low_open`` / ``high_open``: the bound itself is out)."""
    return _argtype(check_float, "number", minimum=minimum, maximum=maximum, low_open=low_open,
                    high_open=high_open)


#: counts: samples, steps, batch sizes, scenes (>= 1)
positive_int = _argtype(check_positive_int, "positive integer")
#: pixels to grow or feather, samples where 0 turns a feature off (>= 0)
non_negative_int = _argtype(check_non_negative_int, "non-negative integer")
#: a random seed, 0 <= seed < 2**31
seed = _argtype(check_seed, "seed")
#: a TCP port, 1-65535
port = _argtype(check_port, "port")
#: a finite number in [0, 1]
probability = _argtype(check_probability, "probability")
#: a finite number in (0, 1): mask thresholds
open_probability = _argtype(check_probability, "probability", low_open=True, high_open=True)
#: a finite number > 0: temperatures
positive_float = float_in(0, low_open=True)
#: a finite number >= 0: guidance scales, sizes in pixels
non_negative_float = float_in(0)


def int_list(minimum: int = 1) -> Callable[[str], list[int]]:
    """A comma- or space-separated list of integers >= ``minimum`` ("10,20,50")."""
    item = int_in(minimum)

    def parse(text: str) -> list[int]:
        parts = str(text).replace(",", " ").split()
        if not parts:
            raise argparse.ArgumentTypeError(f"expected integers such as '10,20,50', got {text!r}")
        try:
            return [item(p) for p in parts]
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"every value {e} (in {text!r})") from None

    parse.__name__ = "integer list"
    return parse


# == dtypes ==========================================================================================

def dtype_name(text: str) -> str:
    """A weights dtype: float32 / float16 / bfloat16 (fp32 / fp16 / bf16 are the same)."""
    try:
        return check_dtype_name(text.strip(), "")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None


# == the parser ======================================================================================

class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line, ``locinsert X: error: ...``, exit code 2.

    argparse would print the whole usage block first; the commands' usage is long, and the error
    policy of the CLI (``cli/main.py``) is one line per mistake. ``--help`` still shows the usage.
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

