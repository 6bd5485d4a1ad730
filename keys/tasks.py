"""Celery tasks of keys: budget resets, the sweep that audits keys as they expire, and the rotation
schedule (keys due for rotation told to their owners, grace periods ended)."""
from __future__ import annotations

import datetime

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from orgs.audit import Affects, record
from orgs.models import AuditEntry
from orgs.tasks import BudgetScope, reset_due_budgets

from .models import VirtualKey
from .services import end_grace_periods, mark_rotation_due
from .usage_apply import usage_apply_queued, usage_purge

KEY_SCOPE = BudgetScope("key", VirtualKey, "", "token", lambda rows: Affects(key_ids={r["pk"] for r in rows}))
EXPIRY_ACTION = "key_expired"
SWEEP_BATCH_SIZE = 1000


def key_budget_reset(*, now: datetime.datetime | None = None) -> int:
    """Reset the spend of every key whose budget window has ended; returns the keys handled."""
    return reset_due_budgets(KEY_SCOPE, now=now)


def key_expiry_sweep(*, now: datetime.datetime | None = None, batch_size: int = SWEEP_BATCH_SIZE) -> list[str]:
    """Audit the keys that expired since the last sweep and drop their snapshots; returns their tokens.

    Expired keys are already refused by the check (it compares `expires` with the time of each request);
    the sweep makes the moment visible in the audit log and evicts the cached snapshots. Each entry's
    `after.until` is the sweep's high-water mark, so every key is reported once; one transaction per run
    means an interrupted sweep reports nothing and the next run covers the same keys. (A key whose
    `expires` is set in the past by an update is audited by that update.)
    """
    now = now if now is not None else timezone.now()
    last = AuditEntry.objects.filter(action=EXPIRY_ACTION).order_by("-created_at", "-id").values("after").first()
    since = datetime.datetime.fromisoformat(last["after"]["until"]) if last else None
    expired = VirtualKey.objects.filter(expires__lte=now)
    if since is not None:
        expired = expired.filter(expires__gt=since)
    swept: list[str] = []
    with transaction.atomic():
        after = None
        while True:
            page = expired.filter(pk__gt=after) if after is not None else expired
            rows = list(page.order_by("pk").values_list("pk", "token", "organization_id", "expires")[:batch_size])
            if not rows:
                break
            after = rows[-1][0]
            tokens = sorted(token for _, token, _, _ in rows)
            record(
                actor=None,
                action=EXPIRY_ACTION,
                object_type="key",
                object_id=tokens[0] if len(tokens) == 1 else "*",
                organization_id=rows[0][2] if len({r[2] for r in rows}) == 1 else None,
                after={"until": now.isoformat(), "tokens": tokens,
                       "expires": {token: expires.isoformat() for _, token, _, expires in rows}},
                affects=Affects(tokens=set(tokens)),
            )
            swept += tokens
    return swept


@shared_task(name="keys.sweep_expired", ignore_result=True)
def sweep_expired_keys() -> int:
    """Beat task: audit and evict the keys that expired since the last sweep."""
    return len(key_expiry_sweep())


@shared_task(name="keys.apply_usage", ignore_result=True)
def apply_usage() -> int:
    """Apply the buffered usage reports (queued by the first report after a run, and by beat)."""
    return usage_apply_queued()


@shared_task(name="keys.purge_usage", ignore_result=True)
def purge_usage() -> int:
    """Beat task: forget applied reports past the idempotency retention."""
    return usage_purge()

@shared_task(name="keys.mark_rotation_due", ignore_result=True)
def mark_rotation_due_task() -> int:
    """Beat task: audit the auto-rotating keys that came due, and end the grace periods that are over."""
    return len(mark_rotation_due()) + end_grace_periods()
