"""The write-event hook: every write announces what it changed, once, after it commits.

The writers sit low (orgs, keys, accessgroups) and the caches that must forget what they changed sit high
(the gateway's snapshot and catalog caches, keys/cache.py), so a writer never calls a cache: it publishes
an `Affects` and the cache, subscribed in its app's `AppConfig.ready`, resolves it to what it must drop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.dispatch import Signal


@dataclass
class Affects:
    """What a write can change the authorization answer of; resolved to key snapshots after commit."""

    tokens: set[str] = field(default_factory=set)
    key_ids: set[Any] = field(default_factory=set)
    team_ids: set[Any] = field(default_factory=set)
    organization_ids: set[Any] = field(default_factory=set)
    user_pks: set[int] = field(default_factory=set)
    access_group_ids: set[Any] = field(default_factory=set)
    # The catalog of models ("everything" and model patterns expand to it), cached apart from the keys.
    catalog: bool = False
    # Every snapshot: for a write too wide to name its keys (an import of thousands of rows).
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or self.catalog or any(
            (self.tokens, self.key_ids, self.team_ids, self.organization_ids, self.user_pks, self.access_group_ids)
        )


# Sent with `affects=` once the write's transaction has committed; a receiver must not raise (the write
# has landed, and the caller's answer must not become a 500).
committed = Signal()


def publish(affects: Affects) -> None:
    """Announce `affects` once the current transaction commits (at once outside one); nothing if empty."""
    if affects:
        transaction.on_commit(lambda: committed.send(sender=Affects, affects=affects))
