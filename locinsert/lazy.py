"""Package exports imported on first use, and still visible to ``dir()``, editors and type checkers.

A package names its public API once, in an ``if TYPE_CHECKING:`` import block. That block never runs,
but static tools read it; :func:`lazy_exports` reads the same block from the package's source and
imports each name from its module the first time it is asked for::

    from typing import TYPE_CHECKING

    from ..lazy import lazy_exports

    if TYPE_CHECKING:
        from . import synthetic                 # a subpackage, reachable as an attribute
        from .runner import run_training        # a name

    __getattr__, __dir__, __all__ = lazy_exports(__name__)

So ``import locinsert`` stays cheap (the command line starts fast) and there is one list to keep.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from typing import Callable


def type_checking_imports(package: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """``(name -> defining module, submodules)`` from the ``if TYPE_CHECKING:`` block of ``package``."""
    module = sys.modules[package]
    with open(module.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    exports: dict[str, str] = {}
    submodules: list[str] = []
    for node in tree.body:
        if not (isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"):
            continue
        for stmt in node.body:
            if not isinstance(stmt, ast.ImportFrom):
                raise TypeError(f"{package}: the TYPE_CHECKING block may hold only 'from ... import' lines")
            source = importlib.util.resolve_name("." * stmt.level + (stmt.module or ""), package)
            for alias in stmt.names:
                if stmt.module is None and source == package:
                    submodules.append(alias.name)
                else:
                    exports[alias.asname or alias.name] = source
    return exports, tuple(submodules)


def lazy_exports(package: str) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of a package whose public names load on first use.

    Args:
        package: the package's ``__name__``; its ``__init__`` holds the ``TYPE_CHECKING`` block.

    Returns:
        ``(__getattr__, __dir__, __all__)`` to assign in the package's ``__init__``.
    """
    exports, submodules = type_checking_imports(package)

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports) | set(submodules))

    return __getattr__, __dir__, sorted(exports) + sorted(submodules)
