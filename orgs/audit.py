"""The one place where a management write is recorded and the authorization cache told about it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from .models import AuditEntry, User


@dataclass
class Affects:
    """What a write can change the authorization answer of; resolved to key snapshots after commit."""

    tokens: set[str] = field(default_factory=set)
    key_ids: set[Any] = field(default_factory=set)
    team_ids: set[Any] = field(default_factory=set)
    organization_ids: set[Any] = field(default_factory=set)
    user_pks: set[int] = field(default_factory=set)
    access_group_ids: set[Any] = field(default_factory=set)
    # Every snapshot: for a write too wide to name its keys (an import of thousands of rows).
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or any(
            (self.tokens, self.key_ids, self.team_ids, self.organization_ids, self.user_pks, self.access_group_ids)
        )


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
    """Write the audit entry and, once the transaction commits, invalidate the affected snapshots.

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
    if affects:
        from keys.cache import invalidate

        transaction.on_commit(lambda: invalidate(affects))
    return entry
