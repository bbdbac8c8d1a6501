"""Reading the documentation's sources: pages, nav, snippets, links and pictures."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def pages() -> list[Path]:
    """Every Markdown page under docs/."""
    return sorted(DOCS.rglob("*.md"))


def nav_config() -> list:
    """The nav of mkdocs.yml (no custom YAML tags are used, so safe_load reads it)."""
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]


def nav_paths(items, generated: str = "API reference") -> list[str]:
    """The page paths the nav names, skipping the section the reference hook fills."""
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
            continue
        for title, value in item.items():
            if title == generated:
                continue
            out += nav_paths(value) if isinstance(value, list) else [value]
    return out


def snippet(page: str, name: str) -> str:
    """The Python block between ``<!-- snippet:NAME -->`` and ``<!-- /snippet:NAME -->`` of a page
    (``page`` relative to docs/, or ``"README.md"``)."""
    text = (README if page == "README.md" else DOCS / page).read_text()
    start, end = f"<!-- snippet:{name} -->", f"<!-- /snippet:{name} -->"
    assert start in text and end in text, f"{page} has no snippet {name!r}"
    block = text.split(start, 1)[1].split(end, 1)[0]
    code = re.search(r"```python\n(.*?)```", block, re.S)
    assert code, f"snippet {name!r} of {page} holds no python block"
    return code.group(1)


def snippets(path: Path) -> dict[str, str]:
    """Every named snippet of one file."""
    names = re.findall(r"^<!-- snippet:([\w-]+) -->$", path.read_text(), re.M)
    page = "README.md" if path == README else str(path.relative_to(DOCS))
    return {name: snippet(page, name) for name in names}


def links(path: Path) -> list[str]:
    """Relative link and picture targets of a Markdown file (code blocks and spans skipped)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    found = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    return [t for t in found if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]
