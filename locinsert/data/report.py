"""What a dataset reader dropped, and why.

Readers never crash on a bad row: they skip it and record the reason here. A reason is a short
slug (``"bad_position"``, ``"box_outside_image"``, ``"missing_image"``, ...); the unit counted is
stated by the reader (a CSV row, a box, a PIPE example). Items that were kept but needed a repair or
a fallback (a mask rescaled onto its image, a class read from a second column) are counted apart, in
``notes``: they are not skips.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SkipReport:
    """Counts of skipped items per reason, with a few examples of each.

    ``seen`` is the number of items looked at, ``kept`` how many survived; ``counts[reason]`` how
    many were dropped for ``reason`` and ``examples[reason]`` the first ``max_examples`` of them
    (a short human-readable description: file, line and value). ``notes[kind]`` counts kept items
    that needed a repair or fallback of that kind (not skips).
    """

    name: str = ""
    seen: int = 0
    kept: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 5
    notes: Counter = field(default_factory=Counter)

    def skip(self, reason: str, example: str | None = None, n: int = 1) -> None:
        """Record ``n`` dropped items for ``reason``."""
        self.counts[reason] += n
        if example is not None:
            ex = self.examples.setdefault(reason, [])
            if len(ex) < self.max_examples:
                ex.append(example)

    def keep(self, n: int = 1) -> None:
        """Count ``n`` kept rows."""
        self.kept += n

    def note(self, kind: str, n: int = 1) -> None:
        """Record ``n`` kept items that needed a repair or fallback of ``kind``."""
        self.notes[kind] += n

    @property
    def skipped(self) -> int:
        """Total number of dropped items."""
        return sum(self.counts.values())

    def merge(self, other: "SkipReport") -> "SkipReport":
        """Add another report's numbers into this one (e.g. from several shards); returns self."""
        self.seen += other.seen
        self.kept += other.kept
        for reason, n in other.counts.items():
            self.counts[reason] += n
            for ex in other.examples.get(reason, []):
                lst = self.examples.setdefault(reason, [])
                if len(lst) < self.max_examples:
                    lst.append(ex)
        self.notes.update(other.notes)
        return self

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {"name": self.name, "seen": self.seen, "kept": self.kept, "skipped": self.skipped,
                "counts": dict(self.counts), "notes": dict(self.notes),
                "examples": {k: list(v) for k, v in self.examples.items()}}

    def summary(self) -> str:
        """One line per reason, most frequent first."""
        head = f"{self.name or 'data'}: kept {self.kept} of {self.seen}, skipped {self.skipped}"
        lines = [head]
        for reason, n in self.counts.most_common():
            ex = self.examples.get(reason)
            lines.append(f"  {reason}: {n}" + (f"  (e.g. {ex[0]})" if ex else ""))
        for kind, n in self.notes.most_common():
            lines.append(f"  kept with {kind}: {n}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
