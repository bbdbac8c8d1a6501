"""Positional instructions: ``"add a red mug on the left side"`` -> ``("red mug", Region("on the left side"))``.

Rules (and what they decide):

- A leading verb (add, insert, put, place, draw, paint, ...) and article (a, an, the, some, one)
  are dropped, as are "please" and trailing punctuation. What remains before the location phrase
  is the object, verbatim ("red mug").
- The location phrase is found at the *end* of the instruction with ``regions.LOCATION_PATTERN``
  and turned into a ``Region`` with ``Region.parse`` (centre mode: the object's centre must be in
  that part of the image). See ``regions.phrase_to_box`` for the phrases.
- No location phrase -> ``region`` is ``None`` (anywhere).
- A location the library does not understand ("behind the sofa", "on the left of the sofa") is
  **not** an error: ``region`` is ``None`` and the phrase stays in the object text
  ("cup behind the sofa"), so a text-guided inpainter still sees it. ``strict=True`` raises instead
  when the object text still holds a spatial preposition.
- No object ("add on the left", "", "add a") -> ``ValueError``. An object is any text with a letter
  or digit of any script ("add a 狗 on the left" -> "狗").
- ``parse_instructions`` splits a sequence on "then", ";", ", and", and on "and" before a new
  article or verb ("a cup and a lamp", not "salt and pepper shaker"), and parses each part.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .regions import LOCATION_PATTERN, Region, phrase_to_box

__all__ = ["Instruction", "parse_instruction", "parse_instructions"]

_VERB = re.compile(r"^(?:please\s+)?(?:(?:add|insert|put|place|draw|paint|generate|create|make|include|"
                   r"show|render|drop|position|there\s+should\s+be)\b\s*)?", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:(?:a|an|the|some|one|another)\b\s*)", re.IGNORECASE)
_TAIL = re.compile(r"(?:\s+(?:please|here|there))+$", re.IGNORECASE)
# Words a removed location phrase can leave dangling at the end of the object ("cup to the far").
_DANGLING = re.compile(r"(?:\s+(?:on|in|at|to|the|far|of|near|towards?|into|onto|over|very|and))+$", re.IGNORECASE)
_SPATIAL = re.compile(r"\b(?:behind|under|underneath|beneath|below|above|beside|next\s+to|in\s+front\s+of|"
                      r"on\s+top\s+of|between|inside|near|left\s+of|right\s+of|on|in|at)\b", re.IGNORECASE)
# "then", ";", ", and", newlines, and "and" when a new object starts ("a cup and a lamp", but not
# "salt and pepper shaker").
_SPLIT = re.compile(r"\s*(?:[,;]\s*(?:and\s+)?then\b|\band\s+then\b|\bthen\b|;|,\s*and\b|\n|"
                    r"\band\b(?=\s+(?:add|insert|put|place|draw|a|an|another|the|some)\b))\s*", re.IGNORECASE)


class Instruction(NamedTuple):
    """A parsed instruction; unpacks as ``object, region = parse_instruction(...)``."""

    object: str
    region: Region | None


def parse_instruction(text: str, *, strict: bool = False) -> Instruction:
    """Split one instruction into the object to add and where (a ``Region`` or ``None``).

    ``parse_instruction("add a red mug on the left side")`` -> ``Instruction("red mug", Region('on the left side'))``.
    Raises ``ValueError`` if there is no object; with ``strict=True`` also if a location phrase
    remains that is not understood.
    """
    if not isinstance(text, str):
        raise TypeError(f"instruction must be a str, got {type(text).__name__}")
    s = " ".join(text.strip().rstrip(".!?,;:").split())
    s = _VERB.sub("", s, count=1)
    s = _TAIL.sub("", s).rstrip(".!?,;: ")
    region = None
    m = LOCATION_PATTERN.search(s)
    if m and m.group(0).strip():
        phrase = m.group(0).strip()
        if phrase_to_box(phrase) is not None:
            region = Region.parse(phrase)
            s = _DANGLING.sub("", s[:m.start()].rstrip(" ,"))
    s = _ARTICLE.sub("", s.strip()).strip(" ,")
    if not s or not re.search(r"[^\W_]", s):  # any letter or digit of any script: "狗", "Hund", "chien"
        raise ValueError(f"no object in instruction {text!r}: say what to add, e.g. 'add a red mug on the left'")
    if strict and region is None and _SPATIAL.search(s):
        raise ValueError(f"location in {text!r} is not understood; use left/right/top/bottom, a corner, "
                         "'center' or 'near the top'")
    return Instruction(s, region)


def parse_instructions(text: str, *, strict: bool = False) -> list[Instruction]:
    """Several objects in sequence: ``"add a cup on the left, then a lamp on the right"`` -> 2 instructions."""
    if not isinstance(text, str):
        raise TypeError(f"instruction must be a str, got {type(text).__name__}")
    parts = [p for p in _SPLIT.split(text) if p and p.strip(" ,.;")]
    if not parts:
        raise ValueError(f"no object in instruction {text!r}: say what to add, e.g. 'add a red mug on the left'")
    return [parse_instruction(p, strict=strict) for p in parts]
