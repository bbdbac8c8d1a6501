"""The README is a short front page: it promises only what the repository holds, and its one
results table is the demo page's, not a second copy that could drift."""

import re

from helpers_docs import DOCS, README, links

TEXT = README.read_text()


def test_readme_is_a_front_page():
    assert len(TEXT.splitlines()) <= 300
    pictures = [t for t in links(README) if t.endswith(".png")]
    assert len(pictures) == 1, f"the README shows one picture, not {pictures}"
    assert "python3 -m pytest -q -m \"not slow\"" in TEXT and "mkdocs serve" in TEXT


def _rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 2 and not set(cells[1]) <= set("-"):
            rows.setdefault(cells[0], cells[1:])
    return rows


def test_results_table_is_the_demo_pages():
    table = TEXT.split("<!-- results:demo", 1)[1].split("<!-- /results:demo -->", 1)[0]
    readme_rows = _rows(table)
    demo_rows = _rows((DOCS / "experiments" / "demo.md").read_text())
    header = readme_rows.pop("method")
    assert demo_rows["method"][: len(header)] == header, "the README's columns are not the demo page's"
    assert len(readme_rows) >= 5
    for method, cells in readme_rows.items():
        assert method in demo_rows, f"README row {method!r} is not on docs/experiments/demo.md"
        assert demo_rows[method][: len(cells)] == cells, f"README row {method!r} differs from the demo page"
        assert all(re.fullmatch(r"\d+\.\d{3}", c) for c in cells)


def test_demo_time_is_stated_once():
    """The demo's run time lives on docs/experiments/demo.md only; other pages link there."""
    owner = DOCS / "experiments" / "demo.md"
    assert "<!-- figure:demo-time" in owner.read_text()
    claim = re.compile(r"(?:demo[^.\n]{0,80}\b(?:\d+(?:\.\d+)?|one|two|five|eight|ten) ?(?:min|minutes)\b)", re.I)
    for page in [README, *DOCS.rglob("*.md")]:
        if page != owner:
            assert not claim.search(page.read_text()), f"{page.name} states the demo's run time; link to {owner.name}"
