"""Usage reports at gateway rates (SPEC §6): accepted into a durable buffer, applied in batches.

Ingestion (`usage_ingest`) validates the reports, resolves their keys (a per-process memo, else one
statement for all of them) and appends them to `UsageReport` in one INSERT, which the unique index makes
idempotent per caller; the gateway's 2xx means the reports are committed. It takes no lock on the key,
team, organization or user rows, so a hot key no longer queues behind its own row locks, and on a path
with no budget the INSERT is its only statement.

The applier (`usage_apply_batch`, run by the `keys.apply_usage` task) claims pending reports
(`FOR UPDATE SKIP LOCKED`, so appliers never share a report), adds them up per key, team, organization
and user, writes each of those rows once per batch, and retires the reports in the same transaction: a
crash anywhere rolls the whole batch back, so a report is applied exactly once.

Budgets count applied *and* pending spend: a report on a path with a budget adds up the path's pending
spend; when applied + pending reaches a budget that the applied spend alone does not, the path's pending
reports are applied at once, in the request, and that batch crossing the budget invalidates the
snapshots as before. The warm check stays a cache read with no query, and a budget is overshot by no
more than the reports that were in flight together (or one batch, for a budget set within the memo's
lifetime: the applier catches it).

Where the applier runs: with a broker, a report queues one `keys.apply_usage` task unless one is queued
(a shared-cache flag, touched at most once per half delay per process), which drains the buffer; beat
runs it every `USAGE_APPLY_INTERVAL_SECONDS` as well, in case a trigger was lost. With no broker (eager
mode, `make run`, the tests) the request applies what is pending before it answers, one drain at a time
per process, shared by the requests waiting for it.

The statements of the hot path are written by hand (table and column names from the models) for both
backends: the ORM's compilation was most of their cost.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accessctl.amounts import MAX_AMOUNT, MAX_TOKENS
from accessctl.errors import InvalidInput, NotFound

from . import crypto
from .models import UsageReport
from .usage_apply import (
    usage_apply_soon,
    usage_drain,
)
from .usage_commit import GroupCommit
from .usage_sql import (
    _exhausted_counting_pending,
    _key_paths,
    _path_capped,
    _pending_filter,
    _scope_pk,
    _with_caps,
)

logger = logging.getLogger(__name__)

MAX_REPORTS_PER_REQUEST = 1000
IDEMPOTENCY_KEY_MAX_LENGTH = 128
MASTER_CALLER = "master"

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


# --- ingestion ---------------------------------------------------------------------------------


# token → (path row, monotonic time until which it may be used). Which key a token names never changes (a
# rotation gives the key a new token; the old one names the same key until its grace period ends), so
# the only staleness is a key deleted, moved or given a budget within USAGE_KEY_CACHE_SECONDS: a report
# for a deleted key is dropped by the applier, and a budget crossed without ingestion counting pending
# spend is still caught by the applier's batch (audited, snapshots dropped), as SPEC §6 allows.
_paths: dict[str, tuple[dict[str, Any], float]] = {}
_PATHS_MAX_ENTRIES = 50_000


def _resolve(tokens: Iterable[str]) -> dict[str, dict[str, Any]]:
    """token → the key's path row (ids and caps), from this process's memo or one query for the rest."""
    now = time.monotonic()
    found: dict[str, dict[str, Any]] = {}
    missing = []
    for token in tokens:
        entry = _paths.get(token)
        if entry is not None and entry[1] > now:
            found[token] = entry[0]
        else:
            missing.append(token)
    if not missing:
        return found
    ttl = settings.USAGE_KEY_CACHE_SECONDS
    wall = timezone.now()
    rows = _key_paths(missing, wall)
    wanted = set(missing)
    if len(_paths) + len(wanted) > _PATHS_MAX_ENTRIES:
        _paths.clear()
    for row in rows:
        row = _with_caps(row)
        if row["token"] in wanted:
            found[row["token"]] = row
            _paths[row["token"]] = (row, now + ttl)
        if row["previous_token"] in wanted:
            found[row["previous_token"]] = row
            grace_left = (row["previous_token_expires"] - wall).total_seconds()
            _paths[row["previous_token"]] = (row, now + min(ttl, grace_left))
    return found


def forget_resolved_keys() -> None:
    """Drop this process's memo of resolved keys (tests, and a process that must see a change at once)."""
    _paths.clear()


_COLUMNS = ("caller", "idempotency_key", "key_id", "model", "spend", "prompt_tokens", "completion_tokens",
            "received_at")


def _insert(rows: Sequence[tuple], idempotent: bool) -> set[tuple[str, str]]:
    """Append the reports in one statement (autocommit: committed when it returns, and no transaction or
    savepoint round trips around it). With idempotency keys, a key its caller already used is skipped by
    the unique index (ON CONFLICT DO NOTHING, also against a concurrent insert of the same key), and the
    (caller, key) pairs actually stored are returned."""
    ops = connection.ops
    table = ops.quote_name(UsageReport._meta.db_table)
    columns = ", ".join(ops.quote_name(column) for column in _COLUMNS)
    one = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    # SQLite takes at most 999 parameters per statement: there, a long list is several statements in one
    # transaction (still all or nothing).
    per_statement = (connection.features.max_query_params or 10**9) // len(_COLUMNS)
    stored: set[tuple[str, str]] = set()
    with contextlib.ExitStack() as stack:
        if len(rows) > per_statement:
            stack.enter_context(transaction.atomic())
        with connection.cursor() as cursor:
            for start in range(0, len(rows), per_statement):
                chunk = rows[start:start + per_statement]
                sql = f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([one] * len(chunk))
                if idempotent:
                    sql += " ON CONFLICT DO NOTHING RETURNING caller, idempotency_key"
                cursor.execute(sql, [value for row in chunk for value in row])
                if idempotent:
                    stored.update((caller, key) for caller, key in cursor.fetchall() if key is not None)
    return stored


# Concurrent requests' reports in one statement and commit (keys/usage_commit.py).
_group_commit = GroupCommit(_insert)


def usage_ingest(
    *, caller: str, items: Sequence[Any], as_list: bool, header_key: str | None = None
) -> list[ReportOutcome]:
    """Store a request's reports (one, or a list) and return what happened to each.

    All or nothing: a malformed item or an unknown key is a 400/404 naming it (`[i].field` in a list)
    and stores nothing. A report whose idempotency key this caller has already used is not stored again
    (`duplicate`), also when the two arrive at once: the unique index decides. Stored reports are
    committed when this returns; their spend lands when the applier runs (at once in eager mode).

    The common case — keys this process resolved in the last USAGE_KEY_CACHE_SECONDS, on paths with no
    budget — is one INSERT and no other query.
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
    paths = _resolve(dict.fromkeys(r.key for r in reports))
    for i, report in enumerate(reports):
        if report.key not in paths:
            raise NotFound("Key not found.", param=f"[{i}].key" if as_list else "key")
    received_at = connection.ops.adapt_datetimefield_value(timezone.now())
    key_field = UsageReport._meta.get_field("key")
    seen: set[str] = set()
    rows, repeated = [], set()
    for i, report in enumerate(reports):
        if report.idempotency_key is not None:
            if report.idempotency_key in seen:
                repeated.add(i)  # the same key twice in one request: the first one counts
                continue
            seen.add(report.idempotency_key)
        rows.append((
            caller, report.idempotency_key, key_field.get_db_prep_save(paths[report.key]["id"], connection),
            report.model, report.spend, report.prompt_tokens, report.completion_tokens, received_at,
        ))
    stored = {key for _caller, key in _group_commit.insert(rows, idempotent=bool(seen))}
    duplicate = [
        i in repeated or (r.idempotency_key is not None and r.idempotency_key not in stored)
        for i, r in enumerate(reports)
    ]
    exceeded = _enforce_budgets(reports, duplicate, paths)
    if not all(duplicate):
        usage_apply_soon()
    return [
        ReportOutcome(report, duplicate[i], tuple(exceeded.get((paths[report.key]["id"], report.model), ())))
        for i, report in enumerate(reports)
    ]


def _enforce_budgets(
    reports: Sequence[Report], duplicate: Sequence[bool], paths: Mapping[str, dict[str, Any]]
) -> dict[tuple[Any, str], list[str]]:
    """For the reports on paths with a budget: which budgets applied + pending spend has used up. Where
    only the pending part does, apply that path's pending reports now, so the next check refuses.
    Reports on paths with no budget cost no query here."""
    wanted: dict[tuple[Any, str], tuple[dict[str, Any], str]] = {}
    for report, dup in zip(reports, duplicate, strict=True):
        path = paths[report.key]
        if not dup and _path_capped(path, report.model):
            wanted.setdefault((path["id"], report.model), (path, report.model))
    if not wanted:
        return {}
    outcome = _exhausted_counting_pending(list(wanted.values()))
    crossing_filters = Q()
    for (key_id, model), (_scopes, crossing) in outcome.items():
        path = wanted[(key_id, model)][0]
        for scope in crossing:
            crossing_filters |= _pending_filter(scope, _scope_pk(path, scope))
    if crossing_filters:
        try:
            usage_drain(only=crossing_filters)
        except DatabaseError:
            # The reports are stored; the applier will apply them. The answer still says which budgets
            # are used up.
            logger.exception("could not apply the pending usage of a path that reached its budget")
    return {pair: scopes for pair, (scopes, _crossing) in outcome.items()}
