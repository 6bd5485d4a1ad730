"""Signal receivers: plumbing that calls one service each."""
from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from accessctl import events
from orgs import hooks

from . import cache, services, tasks


@receiver(events.committed, dispatch_uid="keys.cache.invalidate")
def drop_changed_snapshots(sender: Any, affects: events.Affects, **kwargs: Any) -> None:
    """A write committed: drop the snapshots (and the catalog) it may have changed, on every server."""
    cache.invalidate(affects)  # looked up at each call, so a test can patch keys.cache.invalidate


@receiver(hooks.user_leaving, dispatch_uid="keys.user_leaving")
def user_leaving(sender: Any, *, actor: Any, user: Any, team: Any = None, organization_id: Any = None, **kwargs: Any) -> None:
    services.member_keys_delete(actor=actor, user=user, team=team, organization_id=organization_id)


@receiver(hooks.team_moved, dispatch_uid="keys.team_moved")
def team_moved(sender: Any, *, team: Any, **kwargs: Any) -> None:
    services.team_keys_move(team=team)


@receiver(hooks.key_budget_scope, dispatch_uid="keys.key_budget_scope")
def key_budget_scope(sender: Any, **kwargs: Any) -> Any:
    return tasks.KEY_SCOPE
