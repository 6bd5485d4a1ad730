"""The one place where a management write is recorded and what it changed announced (accessctl.events)."""
from __future__ import annotations

from typing import Any

from accessctl.events import Affects, publish

from .models import AuditEntry, User

__all__ = ("Affects", "actor_label", "record")  # Affects: the writers import it with `record`


def actor_label(actor: User | None) -> str:
    return actor.user_id if actor is not None else "system"


def record(
    *,
    actor: User | None,
    action: str,
    object_type: str,
    object_id: Any,
    organization_id: Any = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    affects: Affects | None = None,
) -> AuditEntry:
    """Write the audit entry and, once the transaction commits, announce what the write changed (the
    snapshot cache subscribes and drops those snapshots).

    Must run inside the write's transaction so the entry lands with the change or not at all.
    """
    entry = AuditEntry.objects.create(
        actor_id=actor_label(actor),
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        organization_id=organization_id,
        before=before or {},
        after=after or {},
    )
    if affects is not None:
        publish(affects)
    return entry
