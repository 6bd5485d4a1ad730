"""The usage applier: claims pending reports, adds them up per key, team, organization and user, writes each
row once per batch and retires the reports in the same transaction (keys/usage.py's docstring tells the
whole design); and when it runs: queued after reports arrive, inline in eager mode, purged after the
idempotency window."""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accessctl.amounts import FLOAT_MAX, stored_amount
from orgs.audit import Affects, record

from .models import UsageBatch, UsageReport, VirtualKey
from .usage_sql import (
    _APPLY_PATH_FIELDS,
    _SCOPES,
    APPLY_QUEUED_FLAG,
    _chunks,
    _locked_rows,
    _scope_pk,
)

logger = logging.getLogger(__name__)

def _exact(value: float) -> Decimal:
    """A float as the decimal it was written as (0.01 → Decimal('0.01')), so sums do not drift."""
    return Decimal(repr(float(value)))


def _crossed(new: float, added: float, cap: Any) -> bool:
    """This batch moved spend from below the cap to at or above it (exactly one batch does)."""
    return cap is not None and new >= float(cap) > new - added




@dataclass
class _Claimed:
    """A batch's claimed reports, summed per key and model: (key id, model) → (decimal total, reports)."""

    groups: dict[tuple[Any, str], tuple[Decimal, int]]
    reports: int
    oldest: datetime.datetime | None  # the earliest `received_at`
    mean_received: float  # the mean `received_at`, in seconds since the epoch


def _claim_postgresql(claim: Any, now: datetime.datetime) -> _Claimed:
    """Claim, retire and sum the batch in one statement: the claimed reports (FOR UPDATE SKIP LOCKED)
    without an idempotency key are deleted, the others marked applied, and both are summed per key and
    model by PostgreSQL — as decimals of their shortest text form, which is Python's `repr`, so the sums
    are the ones `_exact` gives — whatever the number of reports: no row travels to Python."""
    table = connection.ops.quote_name(UsageReport._meta.db_table)
    claim_sql, claim_params = claim.query.get_compiler(using=claim.db).as_sql()
    sql = f"""
        WITH claimed AS ({claim_sql}),
        retired AS (
            DELETE FROM {table} AS r USING claimed WHERE r.id = claimed.id AND r.idempotency_key IS NULL
            RETURNING r.key_id, r.model, r.spend, r.received_at
        ),
        kept AS (
            UPDATE {table} AS r SET applied_at = %s FROM claimed
            WHERE r.id = claimed.id AND r.idempotency_key IS NOT NULL
            RETURNING r.key_id, r.model, r.spend, r.received_at
        )
        SELECT key_id, model, SUM(spend::text::numeric), COUNT(*), MIN(received_at),
               AVG(EXTRACT(EPOCH FROM received_at))
        FROM (SELECT * FROM retired UNION ALL SELECT * FROM kept) AS applied
        GROUP BY key_id, model
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL extra_float_digits = 1")  # shortest exact text, whatever the role's setting
        cursor.execute(sql, [*claim_params, now])
        rows = cursor.fetchall()
    groups = {(key_id, model): (total, count) for key_id, model, total, count, _oldest, _mean in rows}
    reports = sum(count for _k, _m, _t, count, _o, _a in rows)
    return _Claimed(
        groups=groups,
        reports=reports,
        oldest=min((oldest for *_, oldest, _mean in rows), default=None),
        mean_received=sum(float(mean) * count for *_, count, _oldest, mean in rows) / reports if reports else 0.0,
    )


def _claim_portable(claim: Any, now: datetime.datetime) -> _Claimed:
    """The same on SQLite (its one writer lock is the claim): read the batch, sum it here, retire it."""
    claimed = list(claim.values_list("id", "key_id", "model", "spend", "idempotency_key", "received_at"))
    totals: dict[tuple[Any, str], list[Any]] = {}
    for _id, key_id, model, spend, _idem, _received in claimed:
        entry = totals.setdefault((key_id, model), [Decimal(0), 0])
        entry[0] += _exact(spend)
        entry[1] += 1
    for ids in _chunks([row[0] for row in claimed if row[4] is None]):
        UsageReport.objects.filter(id__in=ids).delete()
    for ids in _chunks([row[0] for row in claimed if row[4] is not None]):
        UsageReport.objects.filter(id__in=ids).update(applied_at=now)  # kept to recognise retries
    received = [row[5] for row in claimed]
    return _Claimed(
        groups={pair: (total, count) for pair, (total, count) in totals.items()},
        reports=len(claimed),
        oldest=min(received, default=None),
        mean_received=sum(r.timestamp() for r in received) / len(received) if received else 0.0,
    )


def usage_apply_batch(*, limit: int | None = None, only: Q | None = None) -> int:
    """Apply up to `limit` pending reports in one transaction; returns how many it applied.

    Each key, team, organization and user row on the reports' paths is locked and written once, with
    the batch's sum; a budget the batch uses up is audited and its snapshots dropped after commit.
    """
    limit = limit or settings.USAGE_BATCH_SIZE
    postgresql = connection.vendor == "postgresql"
    with transaction.atomic():
        # A write first on SQLite: the transaction takes the writer lock before it reads the queue.
        batch = None if postgresql else UsageBatch.objects.create()
        pending = UsageReport.objects.filter(applied_at__isnull=True)
        if only is not None:
            pending = pending.filter(only)
        claim = pending.order_by("id").select_for_update(skip_locked=True, of=("self",)).values("id")[:limit]
        now = timezone.now()
        claimed = (_claim_postgresql if postgresql else _claim_portable)(claim, now)
        if not claimed.reports:
            transaction.set_rollback(True)
            return 0
        rows_updated = _apply(claimed.groups)
        outcome = {
            "applied_at": now, "reports": claimed.reports, "rows_updated": rows_updated,
            "spend": float(sum((total for total, _count in claimed.groups.values()), Decimal(0))),
            "max_lag_ms": (now - claimed.oldest).total_seconds() * 1000,
            "mean_lag_ms": (now.timestamp() - claimed.mean_received) * 1000,
        }
        if batch is None:
            UsageBatch.objects.create(**outcome)
        else:
            UsageBatch.objects.filter(pk=batch.pk).update(**outcome)
    return claimed.reports


def _apply(groups: Mapping[tuple[Any, str], tuple[Decimal, int]]) -> int:
    """Add the claimed reports' sums to their paths' rows (inside the batch's transaction); returns the
    rows written."""
    key_ids = sorted({key_id for key_id, _model in groups})
    keys = {k["id"]: k for k in VirtualKey.objects.filter(id__in=key_ids).values(*_APPLY_PATH_FIELDS)}
    # (scope, pk) → [total, {model: total}, path]
    totals: dict[tuple[str, Any], list[Any]] = {}
    for (key_id, model), (amount, count) in groups.items():
        path = keys.get(key_id)
        if path is None:
            logger.warning("usage for a deleted key is dropped (%s USD on %s, %d reports)", amount, model, count)
            continue
        for scope, *_ in _SCOPES:
            pk = _scope_pk(path, scope)
            if pk is None:
                continue
            entry = totals.setdefault((scope, pk), [Decimal(0), defaultdict(Decimal), path])
            entry[0] += amount
            entry[1][model] += amount
    rows_updated = 0
    # One table after the other in a fixed order, each in primary-key order: appliers never deadlock.
    for scope, model_class, *_caps_fields in _SCOPES:
        pks = sorted(pk for (s, pk) in totals if s == scope)
        if not pks:
            continue
        locked = _locked_rows(scope, model_class, pks)
        changed = []
        for pk, spend, model_spend, cap, model_caps in locked:
            added, per_model, path = totals[(scope, pk)]
            # min(): a sum that leaves the float range would make the JSON unstorable (Infinity).
            new_spend = min(float(_exact(stored_amount(spend)) + added), FLOAT_MAX)
            new_models = dict(model_spend or {})
            crossed_models = []
            for model, amount in per_model.items():
                new_models[model] = min(float(_exact(stored_amount(new_models.get(model))) + amount), FLOAT_MAX)
                model_cap = (model_caps or {}).get(model)
                if _crossed(new_models[model], float(amount), model_cap):
                    crossed_models.append(model)
            changed.append((pk, new_spend, new_models))
            if _crossed(new_spend, float(added), cap) or crossed_models:
                _audit_exceeded(scope, pk, path, new_spend, cap, crossed_models, new_models)
        _write_spend(model_class, changed)
        rows_updated += len(changed)
    return rows_updated


def _write_spend(model_class: type, changed: Sequence[tuple[Any, float, dict[str, float]]]) -> None:
    """Set `spend` and `model_spend` of these rows: one UPDATE … FROM (VALUES …) per 1,000 rows on
    PostgreSQL, `bulk_update` elsewhere."""
    if not changed:
        return
    if connection.vendor != "postgresql":
        rows = [model_class(pk=pk, spend=spend, model_spend=models) for pk, spend, models in changed]
        model_class.objects.bulk_update(rows, ["spend", "model_spend"], batch_size=500)
        return
    ops, meta = connection.ops, model_class._meta
    pk_type = meta.pk.rel_db_type(connection)  # the column type without serial/identity
    one = f"(%s::{pk_type}, %s::double precision, %s::jsonb)"
    with connection.cursor() as cursor:
        for start in range(0, len(changed), 1000):
            chunk = changed[start:start + 1000]
            cursor.execute(
                f"UPDATE {ops.quote_name(meta.db_table)} AS t SET {ops.quote_name(meta.get_field('spend').column)} = "
                f"v.spend, {ops.quote_name(meta.get_field('model_spend').column)} = v.model_spend "
                f"FROM (VALUES {', '.join([one] * len(chunk))}) AS v(pk, spend, model_spend) "
                f"WHERE t.{ops.quote_name(meta.pk.column)} = v.pk",
                [value for pk, spend, models in chunk for value in (pk, spend, json.dumps(models))],
            )


def _audit_exceeded(
    scope: str, pk: Any, path: Mapping[str, Any], spend: float, cap: Any, models: list[str],
    model_spend: Mapping[str, float],
) -> None:
    affects = {
        "key": Affects(tokens={path["token"]}),
        "team": Affects(team_ids={pk}),
        "organization": Affects(organization_ids={pk}),
        "user": Affects(user_pks={pk}),
    }[scope]
    record(
        actor=None,
        action="budget_exceeded",
        object_type=scope,
        object_id={"key": path["token"], "user": path["user__user_id"]}.get(scope, pk),
        organization_id=path["organization_id"] or path["team__organization_id"],
        after={
            "spend": spend, "max_budget": cap,
            "model": models[0] if len(models) == 1 else (models or None),
            "model_spend": model_spend.get(models[0]) if len(models) == 1 else None,
        },
        affects=affects,
    )


def usage_drain(*, only: Q | None = None, max_seconds: float | None = None) -> tuple[int, bool]:
    """Apply batches until nothing is pending (or `max_seconds` passed); returns (applied, more left)."""
    limit = settings.USAGE_BATCH_SIZE
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    total = 0
    while True:
        applied = usage_apply_batch(limit=limit, only=only)
        total += applied
        if applied < limit:
            return total, False
        if deadline is not None and time.monotonic() >= deadline:
            return total, True


# Until when (monotonic) this process leaves the trigger alone: set after each trigger with a broker.
_quiet_until = 0.0
# With no broker: drains run in the requests, one at a time per process (`_apply_inline`).
_inline_lock = threading.Lock()
_inline_started = 0  # inline drains begun in this process
_inline_finished = 0  # the latest of them that completed


def usage_apply_soon() -> None:
    """Make sure an applier runs soon after reports were stored.

    With a broker: queue one `keys.apply_usage` unless one is already queued (a flag in the shared
    cache), at most once per half USAGE_APPLY_DELAY_SECONDS per process — no shared-cache round trip
    for the reports in between: the run it queued starts after the delay, so it sees them. A report
    that only a run queued by another process could have covered, and that run started first, waits
    for the next trigger or for beat: later, never lost.

    With no broker (eager: `make run`, the tests): apply now, in this request (`_apply_inline`).

    Never raises: the reports are stored, and the beat schedule (or the next request) applies them.
    """
    global _quiet_until
    if settings.CELERY_TASK_ALWAYS_EAGER:
        _apply_inline()
        return
    from .tasks import apply_usage  # the tasks module imports this one

    now = time.monotonic()
    if now < _quiet_until:
        return
    _quiet_until = now + settings.USAGE_APPLY_DELAY_SECONDS / 2
    try:
        queue = cache.add(APPLY_QUEUED_FLAG, 1, settings.USAGE_APPLY_FLAG_SECONDS)
    except Exception:  # noqa: BLE001 - the shared cache is down: the flag cannot be read or set
        return  # beat applies them
    if not queue:
        return
    try:
        apply_usage.apply_async(countdown=settings.USAGE_APPLY_DELAY_SECONDS)
    except Exception:  # noqa: BLE001 - broker down: beat applies them later
        logger.exception("could not queue the usage applier; beat will apply the reports")
        with contextlib.suppress(Exception):
            cache.delete(APPLY_QUEUED_FLAG)


def _apply_inline() -> None:
    """Apply the pending reports in this request, so that its spend has landed when it answers.

    Concurrent requests of a process share drains, as a database shares a commit: each waits for the
    drain in progress, then returns at once if a drain that began after its reports were committed has
    completed (that drain claimed them), and drains itself otherwise. So a process runs one drain at a
    time, covering every request that arrived meanwhile, instead of one per request queueing on the
    key's, team's, organization's and user's row locks.
    """
    global _inline_started, _inline_finished
    ticket = _inline_started  # read after this request's reports committed
    with _inline_lock:
        if _inline_finished > ticket:
            return
        _inline_started += 1
        generation = _inline_started
        try:
            applied, more = usage_drain(max_seconds=settings.USAGE_APPLY_SLICE_SECONDS)
        except DatabaseError:
            # Stored all the same: the next request's drain applies them.
            logger.exception("could not apply the pending usage reports")
            return
        if not more:
            _inline_finished = generation


def usage_apply_queued() -> int:
    """The `keys.apply_usage` task's body: clear the flag (so a report from now on queues the next run),
    then drain for at most one slice, then queue a follow-up if reports are left."""
    with contextlib.suppress(Exception):  # a lost flag only delays the next run until beat
        cache.delete(APPLY_QUEUED_FLAG)
    applied, more = usage_drain(max_seconds=settings.USAGE_APPLY_SLICE_SECONDS)
    if more:
        usage_apply_soon()
    return applied


def usage_purge(*, now: datetime.datetime | None = None, batch_size: int = 10_000) -> int:
    """Forget applied reports older than the idempotency retention; returns how many were deleted."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.USAGE_IDEMPOTENCY_RETENTION_SECONDS)
    total = 0
    while True:
        ids = list(
            UsageReport.objects.filter(applied_at__isnull=False, applied_at__lt=cutoff)
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return total
        for chunk in _chunks(ids):
            UsageReport.objects.filter(id__in=chunk).delete()
        total += len(ids)
        UsageBatch.objects.filter(applied_at__lt=cutoff).delete()
