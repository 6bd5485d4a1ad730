"""Signal receivers: plumbing that calls one service each."""
from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from accessctl import events

from . import cache


@receiver(events.committed, dispatch_uid="keys.cache.invalidate")
def drop_changed_snapshots(sender: Any, affects: events.Affects, **kwargs: Any) -> None:
    """A write committed: drop the snapshots (and the catalog) it may have changed, on every server."""
    cache.invalidate(affects)  # looked up at each call, so a test can patch keys.cache.invalidate
