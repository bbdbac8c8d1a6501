"""Package exports imported on first use, and still visible to ``dir()``, editors and type checkers.

A package lists its public names once, in a mapping name -> defining module, and hands it to
:func:`lazy_exports`; the same names stand in an ``if TYPE_CHECKING:`` import block, which runs
never but tells static tools where each name comes from (``tests/test_lazy_exports.py`` holds the
two lists equal)::

    from typing import TYPE_CHECKING
    from ..lazy import lazy_exports

    if TYPE_CHECKING:
        from .runner import run_training

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"run_training": "locinsert.training.runner"})
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Iterable


def lazy_exports(package: str, exports: dict[str, str], submodules: Iterable[str] = ()
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of a package whose names load on first use.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the module that defines it.
        submodules: subpackages or modules reachable as attributes (``locinsert.training``).

    Returns:
        ``(__getattr__, __dir__, __all__)`` to assign in the package's ``__init__``.
    """
    submodules = tuple(submodules)

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports) | set(submodules))

    return __getattr__, __dir__, sorted(exports) + sorted(submodules)
