"""CSV rows that never fail a whole file: one bad line is skipped and counted, every good line is kept.

The label files read here (OPA's CSVs, FOPA's pair labels, category maps) hold one record per line:
no field contains a line break. So each physical line is parsed on its own, which confines every
kind of damage to its line:

- bytes that are not UTF-8 -> ``bad_encoding`` (the file is decoded with ``surrogateescape``, so
  decoding itself never fails; a UTF-8, UTF-16 or UTF-32 byte-order mark is honoured);
- an unterminated quote or other broken quoting, a field over the ``csv`` module's limit, or a line
  over :data:`MAX_LINE_CHARS` -> ``malformed_row`` (the next line is read afresh, never swallowed);
- a wrong number of fields -> ``malformed_row`` (trailing empty fields, a spreadsheet habit, are
  ignored);
- a column name that appears twice in the header: a row is read only when every copy holds the same
  value, else ``conflicting_columns``;
- the header line repeated mid-file (concatenated files) -> ``repeated_header``.

Blank lines are ignored and not counted. Line endings may be ``\\n``, ``\\r\\n`` or ``\\r``. A problem
with the header itself (missing, unreadable, lacking a required column) is a problem of the whole
file and raises a ``ValueError`` naming the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

from .report import SkipReport

MAX_LINE_CHARS = 1 << 20
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


def _encoding(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: its LE mark starts alike
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig"


def _open_text(path: Path) -> io.TextIOWrapper:
    return open(path, encoding=_encoding(path), errors="surrogateescape", newline=None)


def _physical_lines(f) -> Iterator[tuple[int, str | None]]:
    """(line number, text without its line break); text is None for a line over MAX_LINE_CHARS."""
    lineno = 0
    while True:
        text = f.readline(MAX_LINE_CHARS + 1)
        if not text:
            return
        lineno += 1
        if len(text) > MAX_LINE_CHARS and not text.endswith("\n"):
            while True:  # drop the rest of the over-long line without holding it in memory
                rest = f.readline(MAX_LINE_CHARS)
                if not rest or rest.endswith("\n"):
                    break
            yield lineno, None
            continue
        yield lineno, text.rstrip("\n")


def parsed_lines(path: Path) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line number, fields, "") for each non-blank line, or (line number, None, "reason: detail")."""
    with _open_text(path) as f:
        for lineno, text in _physical_lines(f):
            if text is None:
                yield lineno, None, f"malformed_row: line over {MAX_LINE_CHARS} characters"
                continue
            if not text.strip():
                continue
            bad = _NOT_UTF8.search(text)
            if bad:
                raw = text.encode("utf-8", "surrogateescape")
                col = len(text[:bad.start()].encode("utf-8", "surrogateescape"))
                yield lineno, None, f"bad_encoding: bytes that are not UTF-8 at byte {col + 1}: {raw[:80]!r}"
                continue
            text = text.lstrip("\ufeff")  # the byte-order mark of a file appended to this one
            try:
                fields = next(csv.reader([text], strict=True))
            except csv.Error as e:
                yield lineno, None, f"malformed_row: {e}" + (
                    " (an unterminated quote?)" if "unexpected end of data" in str(e) else "")
                continue
            if fields and any(x.strip() for x in fields):
                yield lineno, fields, ""


def _header(path: Path, lines) -> list[str]:
    for lineno, fields, problem in lines:
        if problem:
            raise ValueError(f"{path}:{lineno}: the CSV header cannot be read ({problem.split(': ', 1)[1]})")
        return [c.strip() for c in fields]
    raise ValueError(f"{path} is empty (no CSV header)")


def read_header(path: Path) -> list[str]:
    """The header of a CSV file (first non-blank line); ValueError if there is none or it is unreadable."""
    return _header(path, parsed_lines(path))


def records(path: Path, required: tuple[str, ...], report: SkipReport) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, {column: value}) for the usable rows of ``path``, restricted to ``required``.

    Every non-blank line after the header counts as one item seen in ``report``; unusable lines are
    skipped there with the file and line. Raises ValueError if the header lacks a required column.
    """
    lines = parsed_lines(path)
    header = _header(path, lines)
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path}: CSV header {header} lacks the column(s) {missing}")
    where_of = {c: [i for i, h in enumerate(header) if h == c] for c in required}
    for lineno, fields, problem in lines:
        where = f"{path.name}:{lineno}"
        report.seen += 1
        if problem:
            reason, detail = problem.split(": ", 1)
            report.skip(reason, f"{where}: {detail}")
            continue
        if [x.strip() for x in fields] == header:
            report.skip("repeated_header", f"{where}: the header line again")
            continue
        while len(fields) > len(header) and not fields[-1].strip():
            fields = fields[:-1]
        if len(fields) != len(header):
            report.skip("malformed_row", f"{where}: {len(fields)} fields, header has {len(header)}")
            continue
        row, conflict = {}, ""
        for column, positions in where_of.items():
            values = [fields[i] for i in positions]
            if len({v.strip() for v in values}) > 1:
                conflict = f"{where}: column {column!r} appears {len(positions)} times, with {values}"
                break
            row[column] = values[0]
        if conflict:
            report.skip("conflicting_columns", conflict)
            continue
        yield lineno, row
