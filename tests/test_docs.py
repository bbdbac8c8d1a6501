"""The documentation site: it builds strictly and offline, its nav matches its pages, every public
name has a reference entry, and its snippets run."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_docs import DOCS, README, ROOT, links, nav_config, nav_paths, pages, snippets

sys.path.insert(0, str(ROOT / "scripts"))
import docs_reference  # noqa: E402  (the hook that writes the reference pages)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` into a temporary folder: any warning (a broken link or anchor, a page
    missing from the nav, a docstring griffe cannot parse) fails it."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(
        line for line in log.splitlines() if "WARNING" in line or "ERROR" in line or "Error" in line)[-6000:]
    return out


@pytest.mark.slow
def test_site_builds_strictly(site):
    assert (site / "index.html").is_file()
    assert (site / "reference" / "locinsert.html").is_file()


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    on_disk = {str(p.relative_to(DOCS)) for p in pages()}
    in_nav = nav_paths(nav_config())
    assert len(in_nav) == len(set(in_nav)), "a page is listed twice in the nav"
    assert not on_disk - set(in_nav), f"pages under docs/ missing from mkdocs.yml's nav: {sorted(on_disk - set(in_nav))}"
    assert not set(in_nav) - on_disk, f"nav entries with no page: {sorted(set(in_nav) - on_disk)}"
    assert any("API reference" in item for item in nav_config() if isinstance(item, dict))


def test_every_page_has_one_title():
    for page in pages():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        titles = re.findall(r"^# .+", text, re.M)
        assert len(titles) == 1 and text.lstrip().startswith("# "), f"{page.relative_to(DOCS)}: {titles}"




@pytest.mark.slow
def test_every_public_name_has_a_reference_entry(site):
    reference = docs_reference.reference_pages()
    documented = {p.module for p in reference}
    for package in docs_reference.documented_modules():
        assert package in documented
    # every package that exports names is documented, including ones added after this test
    root = importlib.import_module("locinsert")
    import pkgutil
    for info in pkgutil.walk_packages(root.__path__, "locinsert."):
        if info.ispkg and hasattr(importlib.import_module(info.name), "__all__"):
            assert info.name in documented, f"{info.name} exports names but has no reference page"
    homes = {}
    for page in reference:
        html = (site / "reference" / f"{page.module}.html").read_text()
        for path in page.home:
            assert f'id="{path}"' in html, f"{path} has no entry on the {page.module} reference page"
            homes[path] = page.module
    missing = []
    for page in reference:
        html = (site / "reference" / f"{page.module}.html").read_text()
        for entry in page.entries:
            if entry.path not in homes:
                missing.append(f"{page.module}.{entry.name}")
            elif homes[entry.path] != page.module:
                assert f"{homes[entry.path]}.html#{entry.path}" in html, f"{page.module} does not link {entry.name}"
    assert not missing, f"exported names without a reference entry: {missing}"
    assert len(homes) > 150  # the reference really covers the library


def test_exported_classes_and_functions_have_a_one_line_summary():
    missing = []
    for page in docs_reference.reference_pages():
        for entry in page.entries:
            if entry.kind == "attribute" or entry.path not in page.home:
                continue
            obj = docs_reference.resolve(entry.path)
            own = obj.__doc__ if not inspect.isclass(obj) else vars(obj).get("__doc__")
            if not own or not own.strip().splitlines()[0].strip():
                missing.append(entry.path)
            if inspect.isclass(obj):  # and the public methods and properties the class defines itself
                for name, member in vars(obj).items():
                    fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                    if not name.startswith("_") and inspect.isfunction(fn) and not (fn.__doc__ or "").strip():
                        missing.append(f"{entry.path}.{name}")
    assert not missing, f"public names whose docstring has no summary line: {missing}"


@pytest.mark.slow
def test_site_fetches_nothing(site):
    """No web fonts, scripts or styles from elsewhere: the site builds and reads offline."""
    remote = re.compile(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//', re.I)
    offenders = [str(p.relative_to(site)) for p in site.rglob("*.html") if remote.search(p.read_text())]
    assert not offenders, f"pages that load resources from the network: {offenders[:5]}"
    assert "fonts.googleapis" not in (site / "index.html").read_text()


@pytest.mark.parametrize("path", [README, *pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_links_pictures_and_named_files_exist(path):
    generated = {DOCS / "reference" / f"{m}.md" for m in docs_reference.documented_modules()}
    bad = []
    for target in links(path):
        file = target.split("#", 1)[0]
        if file and not (path.parent / file).exists() and (path.parent / file).resolve() not in generated:
            bad.append(target)
    assert not bad, f"{path.name} links to files that do not exist: {bad}"
    named = set(re.findall(r"\b((?:training|notebooks|scripts|tests)/[\w/.-]+\.(?:py|yaml|ipynb|sh|txt))", path.read_text()))
    assert not sorted(n for n in named if not (ROOT / n).is_file()), "names files that do not exist"


@pytest.mark.parametrize("path", [README, *pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_snippets_run(path, tmp_path, monkeypatch):
    """Every named snippet (``<!-- snippet:NAME -->``) runs as written, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    for name, code in snippets(path).items():
        exec(compile(code, f"{path.name} snippet {name}", "exec"), {})


def test_no_references_to_files_outside_the_repository():
    # spelled in pieces so that this file does not match itself
    patterns = re.compile("|".join([r"DESIGN" + r"\.md", r"(?<![\w-])" + "research" + "/", r"\.\./" + "shared"]))
    hits = []
    for folder in ("locinsert", "docs", "scripts", "training", "tests", "notebooks", ".ci"):
        for p in (ROOT / folder).rglob("*"):
            if p.is_file() and p.suffix in {".py", ".md", ".yaml", ".yml", ".sh", ".ipynb", ".txt", ""}:
                if patterns.search(p.read_text(errors="ignore")):
                    hits.append(str(p.relative_to(ROOT)))
    for p in (README, ROOT / "mkdocs.yml", ROOT / "pyproject.toml"):
        if patterns.search(p.read_text()):
            hits.append(p.name)
    assert not hits, f"files that cite material outside the repository: {hits}"
