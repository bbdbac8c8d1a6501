"""Lazy package exports are visible to tools: ``dir()`` lists them, and the ``TYPE_CHECKING`` block that
static tools read is the list they load from."""

import ast
import importlib
import inspect

import pytest

LAZY_PACKAGES = ["locinsert", "locinsert.app", "locinsert.data", "locinsert.segmentation", "locinsert.training"]


def _type_checking_names(module) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return {alias.asname or alias.name for stmt in node.body for alias in stmt.names}
    raise AssertionError(f"{module.__name__} has no TYPE_CHECKING block")


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_every_lazy_export_is_listed_seen_by_tools_and_resolves(name):
    package = importlib.import_module(name)
    public = set(package.__all__)
    assert public and public <= set(dir(package))
    assert _type_checking_names(package) == public  # the one list: what tools read is what loads
    for export in sorted(public):
        assert getattr(package, export) is not None, export
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        getattr(package, "nothing_here")
