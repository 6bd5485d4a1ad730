"""What an import run did to each source table's rows: counts, reasons with examples, notes."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

EXAMPLES_PER_REASON = 5


@dataclass
class TableReport:
    """What happened to one source table's rows."""

    table: str
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0
    skipped: int = 0
    batches: int = 0
    skip_reasons: Counter = field(default_factory=Counter)
    kept_reasons: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: Counter = field(default_factory=Counter)

    def skip(self, reason: str, example: str) -> None:
        self.skipped += 1
        self.skip_reasons[reason] += 1
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(example)

    def keep(self, reason: str, example: str) -> None:
        self.kept += 1
        self.kept_reasons[reason] += 1
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(example)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "kept": self.kept,
            "skipped": self.skipped,
            "batches": self.batches,
            "skip_reasons": [
                {"reason": r, "rows": n, "examples": self.examples[r]} for r, n in self.skip_reasons.most_common()
            ],
            "kept_reasons": [
                {"reason": r, "rows": n, "examples": self.examples[r]} for r, n in self.kept_reasons.most_common()
            ],
            "notes": [{"note": r, "rows": n} for r, n in self.notes.most_common()],
        }
