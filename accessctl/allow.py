"""What one level (key, team, organization, user) lets through: everything, or names and `*` patterns.

Pure data, below the policy (which compares model ceilings) and the gateway (which builds snapshots of it).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

ALL_PROXY_MODELS = "all-proxy-models"
EVERYTHING_ENTRIES = frozenset({ALL_PROXY_MODELS, "*"})


@dataclass(frozen=True)
class Allow:
    """What one level lets through: everything, or explicit names and `*` patterns."""

    everything: bool = False
    names: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()

    def matches(self, name: str) -> bool:
        if self.everything or name in self.names:
            return True
        return any(fnmatchcase(name, pattern) for pattern in self.patterns)

    @classmethod
    def of(cls, entries: Iterable[str]) -> Allow:
        names: set[str] = set()
        patterns: list[str] = []
        for entry in entries:
            if entry in EVERYTHING_ENTRIES:
                return EVERYONE
            if "*" in entry:
                patterns.append(entry)
            else:
                names.add(entry)
        return cls(False, frozenset(names), tuple(sorted(patterns)))


EVERYONE = Allow(everything=True)
NOTHING = Allow()
