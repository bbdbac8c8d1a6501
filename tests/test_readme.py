"""The README promises only what the repository holds."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_picture_exists():
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert pictures, "the README shows no picture"
    missing = [p for p in pictures if not (ROOT / p).is_file()]
    assert not missing, f"README shows pictures that do not exist: {missing}"


def test_every_referenced_config_and_script_exists():
    paths = set(re.findall(r"\b((?:training|notebooks)/[\w/.-]+\.(?:py|yaml|ipynb))", README))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    assert not missing, f"README names files that do not exist: {missing}"


def test_sections_are_filled():
    empty = re.findall(r"<!-- section:(\w+) -->\s*<!-- /section:\1 -->", README)
    assert not empty, f"empty README sections: {empty}"
