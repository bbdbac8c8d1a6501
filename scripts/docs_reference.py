"""The API reference of the documentation site, generated from the packages' ``__all__``.

A MkDocs hook (``hooks:`` in mkdocs.yml). At build time it writes one reference page per package
of ``locinsert`` (and per top-level module), and puts them under the nav entry "API reference",
so a name added to an ``__all__``, or a new subpackage, appears in the site without editing a
page. mkdocstrings renders each name from its docstring.

A name exported by several packages (``mask_box`` lives in ``locinsert.boxes`` and is exported by
``locinsert.segmentation`` too) is rendered once, on its home page: the documented package or
module closest to where it is defined. The other pages link there. ``tests/test_docs.py`` builds
the site and checks that every exported name has its entry.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Document the checkout the site is built from, whatever else is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE_TITLE = "API reference"
ROOT = "locinsert"
# Packages that export nothing for Python users: the command line is documented by `--help`.
SKIP = {"locinsert.cli"}


@dataclass
class Entry:
    """One exported name: where the reader finds it, and which object it is."""

    name: str  # as exported: locinsert.training.BoxDPOTrainer -> "BoxDPOTrainer"
    path: str  # the dotted path mkdocstrings renders and autorefs links to
    kind: str  # "class", "function" or "attribute"


@dataclass
class ReferencePage:
    """The reference page of one package or module."""

    module: str
    entries: list[Entry] = field(default_factory=list)
    home: set[str] = field(default_factory=set)  # paths rendered on this page (the others link)

    @property
    def src_uri(self) -> str:
        return f"reference/{self.module}.md"


def documented_modules() -> list[str]:
    """Every package of ``locinsert`` and every public top-level module, in reading order."""
    root = importlib.import_module(ROOT)
    names = [ROOT]
    for info in pkgutil.walk_packages(root.__path__, ROOT + "."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or any(info.name == s or info.name.startswith(s + ".") for s in SKIP):
            continue
        if info.ispkg or len(parts) == 2:
            names.append(info.name)
    return names


def _defining_module(package, name: str, obj) -> str:
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return obj.__module__
    lazy = getattr(package, "_EXPORTS", {})  # packages that import their names on first use
    if name in lazy:
        return lazy[name]
    for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
        sub = importlib.import_module(f"{package.__name__}.{info.name}")
        if name in vars(sub) and vars(sub)[name] is obj and name not in _imported_names(sub):
            return sub.__name__
    return package.__name__


def _imported_names(module) -> set[str]:
    import ast

    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return set()
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return out


def exported_entries(module_name: str) -> list[Entry]:
    """The public names of one package or module: its ``__all__``, or its own classes and functions."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, o in vars(module).items()
                 if not n.startswith("_") and (inspect.isclass(o) or inspect.isfunction(o))
                 and o.__module__ == module_name]
    entries = []
    for name in names:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue  # a submodule has its own page
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and "<locals>" not in obj.__qualname__:
            path, kind = f"{obj.__module__}.{obj.__qualname__}", "class" if inspect.isclass(obj) else "function"
        else:
            path, kind = f"{_defining_module(module, name, obj)}.{name}", "attribute"
        entries.append(Entry(name, path, kind))
    return entries


def reference_pages() -> list[ReferencePage]:
    """One page per documented module, each name given exactly one home page."""
    pages = [ReferencePage(m, exported_entries(m)) for m in documented_modules()]
    exporters: dict[str, list[ReferencePage]] = {}
    for page in pages:
        for entry in page.entries:
            exporters.setdefault(entry.path, []).append(page)
    for path, owners in exporters.items():
        # the deepest documented module the object lives in; else the first page that exports it
        inside = [p for p in owners if path.startswith(p.module + ".")]
        home = max(inside, key=lambda p: len(p.module)) if inside else owners[0]
        home.home.add(path)
    return pages


def resolve(path: str):
    """The object a dotted path names (``locinsert.io.save_figure``): the longest importable module
    prefix, then attributes. Raises ``ImportError`` / ``AttributeError`` when nothing matches."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def _summary(path: str) -> str:
    """The first line of an object's docstring, for the tables that link to it."""
    try:
        obj = resolve(path)
    except (ImportError, AttributeError):
        return ""
    own = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not isinstance(own, str) or (not inspect.isclass(obj) and not inspect.isfunction(obj)
                                    and not inspect.ismodule(obj)):
        return ""
    lines = inspect.cleandoc(own).strip().splitlines()
    return lines[0].replace("|", "\\|") if lines else ""


def page_markdown(page: ReferencePage, pages: list[ReferencePage] = ()) -> str:
    """The Markdown of one reference page: the module's docstring, then each name."""
    lines = [f"# `{page.module}`", "", f"::: {page.module}", "    options:", "      members: false",
             "      show_root_heading: false", "      show_root_toc_entry: false", ""]
    if page.module == ROOT:
        lines += ["## Packages and modules", "", "| reference page | what it holds |", "|---|---|"]
        lines += [f"| [`{p.module}`]({p.module}.md) | {_summary(p.module)} |" for p in pages if p is not page]
        lines.append("")
    elsewhere = [e for e in page.entries if e.path not in page.home]
    for entry in page.entries:
        if entry.path in page.home:
            lines += [f"::: {entry.path}", "    options:", "      heading_level: 2", ""]
    if elsewhere:
        title = "Public names" if page.module == ROOT else "Also exported here"
        lines += [f"## {title}", "", "| name | documented as | summary |", "|---|---|---|"]
        lines += [f"| `{e.name}` | [`{e.path}`][{e.path}] | {_summary(e.path)} |" for e in elsewhere]
        lines.append("")
    return "\n".join(lines)


# ---- MkDocs hook events -------------------------------------------------------------------------

_PAGES: list[ReferencePage] = []


def on_config(config):
    """Fill the nav's "API reference" entry with one page per module."""
    _PAGES[:] = reference_pages()
    entries = [{p.module: p.src_uri} for p in _PAGES]
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and REFERENCE_TITLE in item:
            config.nav[i] = {REFERENCE_TITLE: entries}
            break
    else:
        raise ValueError(f"mkdocs.yml's nav needs an entry {REFERENCE_TITLE!r} for the generated reference")
    return config


def on_files(files, config):
    """Add the generated pages to the site (they exist only in memory)."""
    from mkdocs.structure.files import File

    for page in _PAGES:
        files.append(File.generated(config, page.src_uri, content=page_markdown(page, _PAGES)))
    return files
