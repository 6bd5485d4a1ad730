"""The rotation schedule (Celery beat), and usage reports as a service call."""
from __future__ import annotations

import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from orgs.audit import Affects, record
from orgs.models import User

from ..models import VirtualKey
from ..usage import ReportOutcome, caller_label, usage_ingest

# --- the rotation schedule (Celery beat) -----------------------------------------------------

ROTATION_DUE_ACTION = "key_rotation_due"


def mark_rotation_due(*, now: datetime.datetime | None = None, batch_size: int = 1000) -> list[str]:
    """Tell the owners of auto-rotating keys that have come due: one audit entry per key, in the key's
    organization's log and naming its owner, once per due date (a rotation sets the next one). No secret
    is made or sent: the owner rotates through `/key/regenerate`. Returns the tokens marked."""
    now = now if now is not None else timezone.now()
    marked: list[str] = []
    with transaction.atomic():
        due = (
            VirtualKey.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(auto_rotate=True, rotation_due_at__lte=now, rotation_due_notified_at__isnull=True)
            .select_related("user")
            .order_by("rotation_due_at", "pk")[:batch_size]
        )
        for key in due:
            VirtualKey.objects.filter(pk=key.pk).update(rotation_due_notified_at=now)
            record(
                actor=None,
                action=ROTATION_DUE_ACTION,
                object_type="key",
                object_id=key.token,
                organization_id=key.organization_id,
                after={
                    "key_name": key.key_name,
                    "key_alias": key.key_alias,
                    "owner": key.user.user_id if key.user_id else None,
                    "team_id": str(key.team_id) if key.team_id else None,
                    "rotation_interval": key.rotation_interval,
                    "due_at": key.rotation_due_at.isoformat(),
                },
            )
            marked.append(key.token)
    return marked


def end_grace_periods(*, now: datetime.datetime | None = None) -> int:
    """Forget the old secrets whose grace period has ended (the check already refuses them; this drops
    the alias and its cached snapshot). Returns how many."""
    now = now if now is not None else timezone.now()
    with transaction.atomic():
        ended = list(
            VirtualKey.objects.select_for_update(skip_locked=True)
            .filter(previous_token__isnull=False, previous_token_expires__lte=now)
            .values_list("pk", "token", "previous_token", "organization_id")[:1000]
        )
        for pk, token, previous, organization_id in ended:
            VirtualKey.objects.filter(pk=pk).update(previous_token=None, previous_token_expires=None)
            record(
                actor=None,
                action="key_grace_period_ended",
                object_type="key",
                object_id=token,
                organization_id=organization_id,
                before={"previous_token": previous},
                affects=Affects(tokens={token, previous}),
            )
    return len(ended)



# --- usage (the gateway's spend reports: keys/usage.py) -------------------------------------


def usage_report(
    *,
    actor: User | None,
    key: str,
    model: str,
    spend: Any,
    prompt_tokens: Any = None,
    completion_tokens: Any = None,
    idempotency_key: str | None = None,
) -> ReportOutcome:
    """Report one request's spend as `actor` (None: the master key); see `keys.usage.usage_ingest`."""
    body = {"key": key, "model": model, "spend": spend, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "idempotency_key": idempotency_key}
    caller = caller_label(actor.user_id if actor is not None else None, is_master=actor is None)
    return usage_ingest(caller=caller, items=[body], as_list=False)[0]
