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
- No object ("add on the left", "", "add a") -> ``ValueError``. An object is any text with a letter,
  digit or pictograph of any script ("add a 狗 on the left" -> "狗", "add a 🐶 on the left" -> "🐶").
- Remove and move name an object that is already in the image, so a location phrase there must be
  understood: "remove the cup on the moon" is a ``ValueError``, as "move the cup to the moon" is.
- ``parse_step`` reads exactly one step: a sequence ("remove the cup, then remove the plant") is a
  ``ValueError`` that says so, and a sentence without a verb takes the expected one ("the cup").
- ``parse_instructions`` splits a sequence on "then", ";", ", and", and on "and" before a new
  article or verb ("a cup and a lamp", not "salt and pepper shaker"), and parses each part.

Other verbs (the type of the result says which; each has ``.verb``):

- ``"remove / erase / delete / take out / get rid of the cup on the left"`` ->
  ``RemoveInstruction("cup", Region("on the left"))``: the location phrase says where the object
  *is* (which cup); the object and phrase are read by the same rules as above.
- ``"move / shift / relocate the chair (on the left) to the right"`` ->
  ``MoveInstruction("chair", Region("on the left") or None, target=Region("to the right"))``: the
  final location phrase is where it should *go*; ``"... next to / near / beside the window"``
  gives ``target=Near("window")``, a place the editor finds in the image. A move without a
  destination is a ``ValueError``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from ..regions import LOCATION_PATTERN, Region, phrase_to_box

__all__ = ["Instruction", "RemoveInstruction", "MoveInstruction", "Near", "parse_instruction", "parse_instructions",
           "parse_step", "has_verb"]

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
                    r"\band\b(?=\s+(?:add|insert|put|place|draw|remove|erase|delete|move|a|an|another|the|some)\b))\s*",
                    re.IGNORECASE)
_REMOVE = re.compile(r"^(?:please\s+)?(?:remove|erase|delete|eliminate|take\s+(?:out|away)|get\s+rid\s+of)\b\s*",
                     re.IGNORECASE)
_MOVE = re.compile(r"^(?:please\s+)?(?:move|shift|relocate|drag|slide)\b\s*", re.IGNORECASE)
_NEAR = re.compile(r"\s*\b(?:to\s+)?(?:next\s+to|near(?:\s+to)?|beside|close\s+to|by)\s+(?:the\s+|a\s+|an\s+)?"
                   r"(?P<anchor>[^,;]+?)\s*$", re.IGNORECASE)


def _names_something(text: str) -> bool:
    """A letter or digit of any script, or a pictograph (emoji are Unicode symbols, category So)."""
    return any(ch.isalnum() or unicodedata.category(ch) == "So" for ch in text)


def _typed_eq(a, b) -> bool:
    # Instructions are tuples: without this, RemoveInstruction("cup", None) == Instruction("cup", None).
    # A plain tuple still compares by value (``parse_instruction("add a dog") == ("dog", None)``).
    if hasattr(b, "_fields") and type(a) is not type(b):
        return False
    return tuple.__eq__(a, b) is True


class Instruction(NamedTuple):
    """A parsed "add" instruction; unpacks as ``object, region = parse_instruction(...)``."""

    object: str
    region: Region | None
    verb = "add"

    def __eq__(self, other):
        return _typed_eq(self, other)

    def __ne__(self, other):
        return not _typed_eq(self, other)

    __hash__ = tuple.__hash__


class RemoveInstruction(NamedTuple):
    """Remove ``object``; ``region`` says where it is (``None``: anywhere)."""

    object: str
    region: Region | None
    verb = "remove"

    def __eq__(self, other):
        return _typed_eq(self, other)

    def __ne__(self, other):
        return not _typed_eq(self, other)

    __hash__ = tuple.__hash__


class Near(NamedTuple):
    """A destination next to another thing in the image ("next to the window"), found by the editor."""

    object: str


class MoveInstruction(NamedTuple):
    """Move ``object`` (found under ``region``, ``None``: anywhere) to ``target`` (a ``Region`` or ``Near``)."""

    object: str
    region: Region | None
    target: Region | Near
    verb = "move"

    def __eq__(self, other):
        return _typed_eq(self, other)

    def __ne__(self, other):
        return not _typed_eq(self, other)

    __hash__ = tuple.__hash__


def parse_instruction(text: str, *, strict: bool = False) -> Instruction | RemoveInstruction | MoveInstruction:
    """Split one instruction into the object to add and where (a ``Region`` or ``None``).

    ``parse_instruction("add a red mug on the left side")`` -> ``Instruction("red mug", Region('on the left side'))``.
    Raises ``ValueError`` if there is no object; with ``strict=True`` also if a location phrase
    remains that is not understood.
    """
    if not isinstance(text, str):
        raise TypeError(f"instruction must be a str, got {type(text).__name__}")
    s = " ".join(text.strip().rstrip(".!?,;:").split())
    for verb, parse in ((_REMOVE, _parse_remove), (_MOVE, _parse_move)):
        m = verb.match(s)
        if m:
            return parse(text, s[m.end():])
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
    if not _names_something(s):  # "狗", "Hund", "chien", "🐶"
        raise ValueError(f"no object in instruction {text!r}: say what to add, e.g. 'add a red mug on the left'")
    if strict and region is None and _SPATIAL.search(s):
        raise ValueError(f"location in {text!r} is not understood; use left/right/top/bottom, a corner, "
                         "'center' or 'near the top'")
    return Instruction(s, region)


def parse_instructions(text: str, *, strict: bool = False) -> list[Instruction | RemoveInstruction | MoveInstruction]:
    """Several objects in sequence: ``"add a cup on the left, then a lamp on the right"`` -> 2 instructions.

    A part without a verb after a removal is a removal too: ``"remove the cup and the plate"``.
    """
    if not isinstance(text, str):
        raise TypeError(f"instruction must be a str, got {type(text).__name__}")
    parts = [p for p in _SPLIT.split(text) if p and p.strip(" ,.;")]
    if not parts:
        raise ValueError(f"no object in instruction {text!r}: say what to add, e.g. 'add a red mug on the left'")
    out: list[Instruction | RemoveInstruction | MoveInstruction] = []
    for p in parts:
        bare = p.strip()
        if out and out[-1].verb == "remove" and not has_verb(bare):
            p = f"remove {bare}"
        out.append(parse_instruction(p, strict=strict))
    return out


def parse_step(text: str, *, verb: str | None = None, strict: bool = False, hint: str = ""
               ) -> Instruction | RemoveInstruction | MoveInstruction:
    """Exactly one step, read by the rules of ``parse_instructions``.

    Args:
        text: the instruction.
        verb: "add", "remove" or "move": the step must be this one; a sentence without a verb
            ("the cup") is read as this verb ("remove the cup").
        strict: as in ``parse_instruction``.
        hint: appended to the error for a sequence (say what takes several steps).

    Raises:
        ValueError: a sequence of steps, another verb, or an instruction ``parse_instructions`` refuses.
    """
    if not isinstance(text, str):
        raise TypeError(f"instruction must be a str, got {type(text).__name__}")
    if verb is not None and not text.strip(" ,.;"):
        raise ValueError(f"no object in instruction {text!r}: say what to {verb}, e.g. '{verb} the cup'")
    if verb is not None and not has_verb(text):
        steps = parse_instructions(f"{verb} {text.strip()}", strict=strict)
    else:
        steps = parse_instructions(text, strict=strict)
    if len(steps) > 1:
        listing = ", then ".join(f"{s.verb} {s.object!r}" for s in steps)
        raise ValueError(f"{text!r} is a sequence of {len(steps)} steps ({listing}), but one step is expected"
                         + (f"; {hint}" if hint else ""))
    if verb is not None and steps[0].verb != verb:
        raise ValueError(f"{text!r} asks to {steps[0].verb} {steps[0].object!r}, but only {verb} is possible here"
                         + (f"; {hint}" if hint else ""))
    return steps[0]


def has_verb(text: str) -> bool:
    """True when ``text`` starts with an editing verb: ``"add a cup"``, ``"move the cup"``, ``"remove it"``
    (but not ``"the cup"``, which a caller may read as a continuation of the previous verb)."""
    s = text.strip()
    return any((m := v.match(s)) and m.group(0) for v in (_VERB, _REMOVE, _MOVE))


def _what_and_where(text: str, rest: str, verb: str, example: str) -> Instruction:
    """The object and where it is in ``rest``, read by the add rules, with errors that name ``verb``.

    The object is already in the image, so a location phrase must be understood (``strict``): the
    words would otherwise become part of the name the segmenter looks for ("cup on the moon").
    """
    if not rest.strip():
        raise ValueError(f"no object in instruction {text!r}: say what to {verb}, e.g. {example!r}")
    try:
        return parse_instruction(rest, strict=True)
    except ValueError as e:
        if str(e).startswith("location"):
            raise ValueError(f"location in {text!r} is not understood: say where the object is with left/right/"
                             "top/bottom, a corner, 'center' or 'near the top', or leave the location out") from e
        if not str(e).startswith("no object"):
            raise
        raise ValueError(f"no object in instruction {text!r}: say what to {verb}, e.g. {example!r}") from e


def _parse_remove(text: str, rest: str) -> RemoveInstruction:
    obj, region = _what_and_where(text, rest, "remove", "remove the cup on the left")
    return RemoveInstruction(obj, region)


def _parse_move(text: str, rest: str) -> MoveInstruction:
    example = "move the chair to the right"
    target, m = None, LOCATION_PATTERN.search(rest)
    if m and m.group(0).strip() and phrase_to_box(m.group(0)) is not None:
        target, rest = Region.parse(m.group(0).strip()), rest[:m.start()]
    else:
        near = _NEAR.search(rest)
        if near:
            anchor = _ARTICLE.sub("", near.group("anchor").strip()).strip()
            if anchor:
                target, rest = Near(anchor), rest[:near.start()]
    if target is None:
        raise ValueError(f"no destination in instruction {text!r}: say where to move it, e.g. {example!r} "
                         "or 'move the chair next to the window'")
    rest = re.sub(r"\s+(?:to|towards?|into|onto)$", "", rest.rstrip(" ,"), flags=re.IGNORECASE)
    obj, region = _what_and_where(text, rest, "move", example)
    return MoveInstruction(obj, region, target)
