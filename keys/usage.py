"""Usage reports at gateway rates (SPEC §6): accepted into a durable buffer, applied in batches.

Ingestion (`usage_ingest`) validates the reports, resolves their keys in one query and appends them to
`UsageReport` in one INSERT; the gateway's 2xx means the reports are committed. It takes no lock on the
key, team, organization or user rows, so a hot key no longer queues behind its own row locks.

The applier (`usage_apply_batch`, run by the `keys.apply_usage` task) claims pending reports
(`FOR UPDATE SKIP LOCKED`, so appliers never share a report), adds them up per key, team, organization
and user, writes each of those rows once per batch, and marks the reports applied in the same
transaction: a crash anywhere rolls the whole batch back, so a report is applied exactly once.

Budgets count applied *and* pending spend: a report on a path with a budget adds up the path's pending
spend; when applied + pending reaches a budget that the applied spend alone does not, the path's pending
reports are applied at once, in the request, and that batch crossing the budget invalidates the
snapshots as before. The warm check stays a cache read with no query, and a budget is overshot by no
more than the reports that were in flight together.

Where the applier runs: with a broker, the first report after a run queues one `keys.apply_usage` task
(a shared-cache flag keeps it to one queued run), which drains the buffer; beat runs it every
`USAGE_APPLY_INTERVAL_SECONDS` as well, in case a trigger was lost. With no broker (eager mode, `make
run`, the tests) that task runs in the request that queued it, so spend lands before the answer.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accessctl.errors import InvalidInput, NotFound
from orgs.audit import Affects, record
from orgs.models import Organization, Team, User

from . import crypto
from .amounts import FLOAT_MAX, MAX_AMOUNT, MAX_TOKENS, stored_amount
from .models import UsageBatch, UsageReport, VirtualKey

logger = logging.getLogger(__name__)

MAX_REPORTS_PER_REQUEST = 1000
IDEMPOTENCY_KEY_MAX_LENGTH = 128
APPLY_QUEUED_FLAG = "usage:apply-queued"
_ID_CHUNK = 900  # ids per IN (...) list: under SQLite's old 999-variable limit
MASTER_CALLER = "master"

# Each scope of a key's path: the model, the key row's column naming it, and the columns of its caps.
_SCOPES = (
    ("key", VirtualKey, "max_budget", "model_max_budget"),
    ("team", Team, "max_budget", "model_max_budget"),
    ("organization", Organization, "budget__max_budget", "budget__model_max_budget"),
    ("user", User, "max_budget", "model_max_budget"),
)
_KEY_PATH_FIELDS = (
    "id", "token", "team_id", "organization_id", "team__organization_id", "user_id", "user__user_id",
    "max_budget", "model_max_budget", "team__max_budget", "team__model_max_budget",
    "organization__budget__max_budget", "organization__budget__model_max_budget",
    "team__organization__budget__max_budget", "team__organization__budget__model_max_budget",
    "user__max_budget", "user__model_max_budget",
)


@dataclass(frozen=True)
class Report:
    """One validated report, before it is stored."""

    key: str  # the token
    model: str
    spend: float
    prompt_tokens: int
    completion_tokens: int
    idempotency_key: str | None


@dataclass(frozen=True)
class ReportOutcome:
    """What happened to one report: stored (or recognised as a retry), and the budgets now used up."""

    report: Report
    duplicate: bool
    budget_exceeded: tuple[str, ...] = ()


# --- validation -------------------------------------------------------------------------------


def _number(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{param} must be a number.", param=param)
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = float("inf")
    if not 0 <= number <= MAX_AMOUNT:  # also refuses NaN
        raise InvalidInput(f"{param} must be a number between 0 and {MAX_AMOUNT:g}.", param=param)
    return number


def _count(value: Any, param: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise InvalidInput(f"{param} must be a whole number between 0 and {MAX_TOKENS}.", param=param)
    return value


def validate_idempotency_key(value: Any, param: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidInput(
            f"{param} must be a non-empty string of at most {IDEMPOTENCY_KEY_MAX_LENGTH} characters.", param=param
        )
    if any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{param} may not contain control characters.", param=param)
    return value


def parse_report(data: Any, prefix: str = "") -> Report:
    """One report from a JSON object; a 400 names the field (prefixed by the item, e.g. `[3].spend`)."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{prefix or 'The report'} must be a JSON object.", param=prefix.rstrip(".") or "body")
    key, model = data.get("key"), data.get("model")
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput(f"{prefix}key must be a virtual key (sk-…) or its token.", param=f"{prefix}key")
    if not isinstance(model, str) or not model.strip() or len(model.strip()) > 255:
        raise InvalidInput(f"{prefix}model must be a non-empty string of at most 255 characters.",
                           param=f"{prefix}model")
    return Report(
        key=crypto.token_for(key),
        model=model.strip(),
        spend=_number(data.get("spend"), f"{prefix}spend"),
        prompt_tokens=_count(data.get("prompt_tokens"), f"{prefix}prompt_tokens"),
        completion_tokens=_count(data.get("completion_tokens"), f"{prefix}completion_tokens"),
        idempotency_key=validate_idempotency_key(data.get("idempotency_key"), f"{prefix}idempotency_key"),
    )


def caller_label(user_id: str | None, *, is_master: bool) -> str:
    """Whose idempotency keys these are: the master key, or one system user (by `user_id`)."""
    if is_master or user_id is None:
        return MASTER_CALLER
    return f"user:{user_id}"


# --- ingestion --------------------------------------------------------------------------------


def _caps(path: Mapping[str, Any]) -> dict[str, tuple[Any, Mapping[str, Any]]]:
    """scope → (max_budget, model_max_budget) of the scopes present on the key's path."""
    org_prefix = "organization__" if path["organization_id"] is not None else "team__organization__"
    caps = {"key": (path["max_budget"], path["model_max_budget"])}
    if path["team_id"] is not None:
        caps["team"] = (path["team__max_budget"], path["team__model_max_budget"])
    if path["organization_id"] is not None or path["team__organization_id"] is not None:
        caps["organization"] = (path[f"{org_prefix}budget__max_budget"], path[f"{org_prefix}budget__model_max_budget"])
    if path["user_id"] is not None:
        caps["user"] = (path["user__max_budget"], path["user__model_max_budget"])
    return caps


def _scope_pk(path: Mapping[str, Any], scope: str) -> Any:
    return {
        "key": path["id"],
        "team": path["team_id"],
        "organization": path["organization_id"] or path["team__organization_id"],
        "user": path["user_id"],
    }[scope]


def _pending_filter(scope: str, pk: Any) -> Q:
    """The pending reports that count against one scope's budget."""
    if scope == "key":
        return Q(key_id=pk)
    if scope == "team":
        return Q(key__team_id=pk)
    if scope == "organization":
        return Q(key__organization_id=pk) | Q(key__organization_id__isnull=True, key__team__organization_id=pk)
    return Q(key__user_id=pk)


def _capped(cap: Any, model_caps: Mapping[str, Any] | None, model: str) -> bool:
    return cap is not None or (model_caps or {}).get(model) is not None


def _exhausted_counting_pending(path: Mapping[str, Any], model: str) -> tuple[list[str], list[str]]:
    """(scopes whose budget applied + pending spend has used up, those of them the applied spend has not).

    The pending sums are read before the applied spend, so a batch committing in between is counted
    twice rather than not at all: the error is an early apply, never a missed budget.
    """
    capped = {
        scope: caps for scope, caps in _caps(path).items() if _capped(caps[0], caps[1], model)
    }
    if not capped:
        return [], []
    pks = {scope: _scope_pk(path, scope) for scope in capped}
    aggregates: dict[str, Any] = {}
    for scope in capped:
        where = _pending_filter(scope, pks[scope])
        aggregates[scope] = Sum("spend", filter=where)
        aggregates[f"{scope}_model"] = Sum("spend", filter=where & Q(model=model))
    either = Q()
    for scope in capped:
        either |= _pending_filter(scope, pks[scope])
    pending = UsageReport.objects.filter(either, applied_at__isnull=True).aggregate(**aggregates)
    exhausted, crossing = [], []
    for scope, (cap, model_caps) in capped.items():
        model_class = {s: m for s, m, _, _ in _SCOPES}[scope]
        applied = model_class.objects.filter(pk=pks[scope]).values_list("spend", "model_spend").first()
        if applied is None:
            continue
        spend, model_spend = float(applied[0] or 0.0), (applied[1] or {})
        applied_model = float(model_spend.get(model) or 0.0)
        with_pending = spend + float(pending[scope] or 0.0)
        model_with_pending = applied_model + float(pending[f"{scope}_model"] or 0.0)
        model_cap = (model_caps or {}).get(model)
        over = (cap is not None and with_pending >= float(cap)) or (
            model_cap is not None and model_with_pending >= float(model_cap)
        )
        if not over:
            continue
        exhausted.append(scope)
        over_applied = (cap is not None and spend >= float(cap)) or (
            model_cap is not None and applied_model >= float(model_cap)
        )
        if not over_applied:
            crossing.append(scope)
    return exhausted, crossing


def usage_ingest(
    *, caller: str, items: Sequence[Any], as_list: bool, header_key: str | None = None
) -> list[ReportOutcome]:
    """Store a request's reports (one, or a list) and return what happened to each.

    All or nothing: a malformed item or an unknown key is a 400/404 naming it (`[i].field` in a list)
    and stores nothing. A report whose idempotency key this caller has already used is not stored again
    (`duplicate`), also when the two arrive at once: the unique index decides. Stored reports are
    committed when this returns; their spend lands when the applier runs (at once in eager mode).
    """
    if not items:
        raise InvalidInput("The list of reports is empty.", param="body")
    if len(items) > MAX_REPORTS_PER_REQUEST:
        raise InvalidInput(f"At most {MAX_REPORTS_PER_REQUEST} reports per request.", param="body")
    if header_key is not None and as_list:
        raise InvalidInput("A list of reports takes an idempotency_key on each report, not the Idempotency-Key "
                           "header.", param="Idempotency-Key")
    reports = [parse_report(item, f"[{i}]." if as_list else "") for i, item in enumerate(items)]
    if header_key is not None:
        if reports[0].idempotency_key not in (None, header_key):
            raise InvalidInput("The Idempotency-Key header and idempotency_key differ.", param="idempotency_key")
        reports[0] = dataclasses.replace(reports[0], idempotency_key=header_key)
    tokens = {r.key for r in reports}
    paths: dict[str, dict[str, Any]] = {}
    # A gateway may report for the old secret of a rotation until its grace period ends.
    rows = VirtualKey.objects.filter(
        Q(token__in=tokens) | Q(previous_token__in=tokens, previous_token_expires__gt=timezone.now())
    ).values("previous_token", *_KEY_PATH_FIELDS)
    for row in rows:
        for token in (row["token"], row["previous_token"]):
            if token in tokens:
                paths[token] = row
    for i, report in enumerate(reports):
        if report.key not in paths:
            raise NotFound("Key not found.", param=f"[{i}].key" if as_list else "key")
    request_id = uuid.uuid4()
    now = timezone.now()
    seen: set[str] = set()
    rows, repeated = [], set()
    for i, report in enumerate(reports):
        if report.idempotency_key is not None:
            if report.idempotency_key in seen:
                repeated.add(i)  # the same key twice in one request: the first one counts
                continue
            seen.add(report.idempotency_key)
        rows.append(
            UsageReport(
                caller=caller, idempotency_key=report.idempotency_key, request_id=request_id,
                key_id=paths[report.key]["id"], model=report.model, spend=report.spend,
                prompt_tokens=report.prompt_tokens, completion_tokens=report.completion_tokens, received_at=now,
            )
        )
    if len(rows) == 1 and not seen:
        rows[0].save(force_insert=True)  # one statement, no transaction around it: one round trip
    else:
        UsageReport.objects.bulk_create(rows, ignore_conflicts=bool(seen))  # one transaction
    earlier: set[str] = set()
    if seen:
        stored = UsageReport.objects.filter(caller=caller, idempotency_key__in=seen).values_list(
            "idempotency_key", "request_id"
        )
        mine = {idem for idem, rid in stored if rid == request_id}
        earlier = seen - mine
    duplicate = [i in repeated or (r.idempotency_key in earlier) for i, r in enumerate(reports)]
    exceeded = _enforce_budgets(reports, duplicate, paths)
    if not all(duplicate):
        usage_apply_soon()
    return [
        ReportOutcome(report, duplicate[i], tuple(exceeded.get((report.key, report.model), ())))
        for i, report in enumerate(reports)
    ]


def _enforce_budgets(
    reports: Sequence[Report], duplicate: Sequence[bool], paths: Mapping[str, Mapping[str, Any]]
) -> dict[tuple[str, str], list[str]]:
    """For the reports on paths with a budget: which budgets applied + pending spend has used up. Where
    only the pending part does, apply that path's pending reports now, so the next check refuses."""
    exceeded: dict[tuple[str, str], list[str]] = {}
    crossing_filters = Q()
    for (token, model) in dict.fromkeys((r.key, r.model) for r, dup in zip(reports, duplicate, strict=True) if not dup):
        path = paths[token]
        if not any(_capped(cap, model_caps, model) for cap, model_caps in _caps(path).values()):
            continue
        scopes, crossing = _exhausted_counting_pending(path, model)
        exceeded[(token, model)] = scopes
        for scope in crossing:
            crossing_filters |= _pending_filter(scope, _scope_pk(path, scope))
    if crossing_filters:
        try:
            usage_drain(only=crossing_filters)
        except DatabaseError:
            # The reports are stored; the applier will apply them. The answer still says which budgets
            # are used up.
            logger.exception("could not apply the pending usage of a path that reached its budget")
    return exceeded


# --- the applier ------------------------------------------------------------------------------


def _exact(value: float) -> Decimal:
    """A float as the decimal it was written as (0.01 → Decimal('0.01')), so sums do not drift."""
    return Decimal(repr(float(value)))


def _crossed(new: float, added: float, cap: Any) -> bool:
    """This batch moved spend from below the cap to at or above it (exactly one batch does)."""
    return cap is not None and new >= float(cap) > new - added


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    """The ids in lists a statement can take (PostgreSQL takes them all at once)."""
    size = _ID_CHUNK if connection.features.max_query_params else max(len(ids), 1)
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def usage_apply_batch(*, limit: int | None = None, only: Q | None = None) -> int:
    """Apply up to `limit` pending reports in one transaction; returns how many it applied.

    Each key, team, organization and user row on the reports' paths is locked and written once, with
    the batch's sum; a budget the batch uses up is audited and its snapshots dropped after commit.
    """
    limit = limit or settings.USAGE_BATCH_SIZE
    with transaction.atomic():
        # A write first: on SQLite the transaction takes the writer lock before it reads the queue.
        batch = UsageBatch.objects.create()
        pending = UsageReport.objects.filter(applied_at__isnull=True)
        if only is not None:
            pending = pending.filter(only)
        claimed = list(
            pending.order_by("id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", "key_id", "model", "spend", "idempotency_key", "received_at")[:limit]
        )
        if not claimed:
            transaction.set_rollback(True)
            return 0
        rows_updated = _apply(claimed)
        now = timezone.now()
        lags = [(now - received).total_seconds() * 1000 for *_, received in claimed]
        kept = [row[0] for row in claimed if row[4] is not None]
        dropped = [row[0] for row in claimed if row[4] is None]
        for ids in _chunks(dropped):
            UsageReport.objects.filter(id__in=ids).delete()
        for ids in _chunks(kept):
            UsageReport.objects.filter(id__in=ids).update(applied_at=now)  # kept to recognise retries
        UsageBatch.objects.filter(pk=batch.pk).update(
            applied_at=now, reports=len(claimed), spend=float(sum(_exact(row[3]) for row in claimed)),
            max_lag_ms=max(lags), mean_lag_ms=sum(lags) / len(lags), rows_updated=rows_updated,
        )
    return len(claimed)


def _apply(claimed: Sequence[tuple]) -> int:
    """Add the claimed reports to their paths' rows (inside the batch's transaction); returns the rows
    written."""
    key_ids = sorted({row[1] for row in claimed})
    keys = {k["id"]: k for k in VirtualKey.objects.filter(id__in=key_ids).values(*_KEY_PATH_FIELDS)}
    # (scope, pk) → [total, {model: total}]
    totals: dict[tuple[str, Any], list[Any]] = {}
    for _id, key_id, model, spend, _idem, _received in claimed:
        path = keys.get(key_id)
        if path is None:
            logger.warning("usage for a deleted key is dropped (%s USD on %s)", spend, model)
            continue
        amount = _exact(spend)
        for scope, *_ in _SCOPES:
            pk = _scope_pk(path, scope)
            if pk is None:
                continue
            entry = totals.setdefault((scope, pk), [Decimal(0), defaultdict(Decimal), path])
            entry[0] += amount
            entry[1][model] += amount
    rows_updated = 0
    # One table after the other in a fixed order, each in primary-key order: appliers never deadlock.
    for scope, model_class, cap_field, model_cap_field in _SCOPES:
        pks = sorted(pk for (s, pk) in totals if s == scope)
        if not pks:
            continue
        locked = (
            model_class.objects.filter(pk__in=pks)
            .order_by("pk")
            .select_for_update(of=("self",))
            .values_list("pk", "spend", "model_spend", cap_field, model_cap_field)
        )
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
            changed.append(model_class(pk=pk, spend=new_spend, model_spend=new_models))
            if _crossed(new_spend, float(added), cap) or crossed_models:
                _audit_exceeded(scope, pk, path, new_spend, cap, crossed_models, new_models)
        model_class.objects.bulk_update(changed, ["spend", "model_spend"], batch_size=500)
        rows_updated += len(changed)
    return rows_updated


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


def usage_apply_soon() -> None:
    """Make sure an applier runs soon: queue one `keys.apply_usage` unless one is already queued.

    Never raises: the reports are stored, and the beat schedule runs the applier anyway.
    """
    from .tasks import apply_usage  # the tasks module imports this one

    try:
        queue = cache.add(APPLY_QUEUED_FLAG, 1, settings.USAGE_APPLY_FLAG_SECONDS)
    except Exception:  # noqa: BLE001 - the shared cache is down: the flag cannot be read or set
        queue = settings.CELERY_TASK_ALWAYS_EAGER  # inline (cheap to repeat); else leave it to beat
    if not queue:
        return
    try:
        apply_usage.apply_async(countdown=settings.USAGE_APPLY_DELAY_SECONDS)
    except Exception:  # noqa: BLE001 - broker down, or an eager run failed: beat applies them later
        logger.exception("could not run or queue the usage applier; beat will apply the reports")
        with contextlib.suppress(Exception):
            cache.delete(APPLY_QUEUED_FLAG)


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
