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
import datetime
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
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

# What the applier needs of a key's path: whose rows to add to, and how to name them in an audit entry.
_APPLY_PATH_FIELDS = ("id", "token", "team_id", "organization_id", "team__organization_id", "user_id",
                      "user__user_id")


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


def _path_capped(path: Mapping[str, Any], model: str) -> bool:
    """Whether any budget on the key's path limits spend on `model` (else ingestion reads no spend)."""
    any_cap, model_capped = path["_caps"]
    return any_cap or model in model_capped


def _with_caps(row: dict[str, Any]) -> dict[str, Any]:
    """The path row, with what `_path_capped` reads worked out once."""
    caps = _caps(row).values()
    row["_caps"] = (
        any(cap is not None for cap, _ in caps),
        frozenset(model for _, model_caps in caps for model, cap in (model_caps or {}).items() if cap is not None),
    )
    return row


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


def _insert(rows: Sequence[tuple], *, idempotent: bool) -> set[str]:
    """Append the reports in one statement (autocommit: committed when it returns, and no transaction or
    savepoint round trips around it). With idempotency keys, a key this caller already used is skipped by
    the unique index (ON CONFLICT DO NOTHING, also against a concurrent insert of the same key), and the
    keys actually stored are returned."""
    ops = connection.ops
    table = ops.quote_name(UsageReport._meta.db_table)
    columns = ", ".join(ops.quote_name(column) for column in _COLUMNS)
    one = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    # SQLite takes at most 999 parameters per statement: there, a long list is several statements in one
    # transaction (still all or nothing).
    per_statement = (connection.features.max_query_params or 10**9) // len(_COLUMNS)
    stored: set[str] = set()
    with contextlib.ExitStack() as stack:
        if len(rows) > per_statement:
            stack.enter_context(transaction.atomic())
        with connection.cursor() as cursor:
            for start in range(0, len(rows), per_statement):
                chunk = rows[start:start + per_statement]
                sql = f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([one] * len(chunk))
                if idempotent:
                    sql += " ON CONFLICT DO NOTHING RETURNING idempotency_key"
                cursor.execute(sql, [value for row in chunk for value in row])
                if idempotent:
                    stored.update(key for (key,) in cursor.fetchall())
    return stored


# --- hand-written statements of the hot path (names from the models; both backends) ------------


def _table(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _column(model: Any, field: str) -> str:
    meta = model._meta
    return connection.ops.quote_name(meta.pk.column if field == "pk" else meta.get_field(field).column)


def _in(values: Sequence[Any]) -> str:
    return "(" + ", ".join(["%s"] * len(values)) + ")"


def _key_ids(ids: Iterable[Any]) -> list[Any]:
    """Key ids as the database takes them (a UUID is 32 hex digits on SQLite)."""
    return [VirtualKey._meta.pk.get_db_prep_value(key_id, connection) for key_id in ids]


def _decoded(value: Any) -> dict[str, Any]:
    """A JSON column as a raw cursor returns it (text on both backends, as Django reads it)."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _key_paths(tokens: Sequence[str], now: datetime.datetime) -> list[dict[str, Any]]:
    """The path rows (`_KEY_PATH_FIELDS`, and the previous token with its end) of the keys these tokens
    name — a gateway may report for the old secret of a rotation until its grace period ends."""
    key, team, org, user = VirtualKey, Team, Organization, User
    budget = org._meta.get_field("budget").related_model
    caps = ", ".join(f"{alias}.{_column(model, 'max_budget')}, {alias}.{_column(model, 'model_max_budget')}"
                     for alias, model in (("k", key), ("t", team), ("b", budget), ("u", user)))
    select = (
        f"SELECT k.{_column(key, 'pk')}, k.{_column(key, 'token')}, k.{_column(key, 'previous_token')}, "
        f"k.{_column(key, 'previous_token_expires')}, k.{_column(key, 'team')}, k.{_column(key, 'organization')}, "
        f"t.{_column(team, 'organization')}, k.{_column(key, 'user')}, u.{_column(user, 'user_id')}, {caps} "
        f"FROM {_table(key)} k "
        f"LEFT JOIN {_table(team)} t ON t.{_column(team, 'pk')} = k.{_column(key, 'team')} "
        f"LEFT JOIN {_table(org)} o ON o.{_column(org, 'pk')} = "
        f"COALESCE(k.{_column(key, 'organization')}, t.{_column(team, 'organization')}) "
        f"LEFT JOIN {_table(budget)} b ON b.{_column(budget, 'pk')} = o.{_column(org, 'budget')} "
        f"LEFT JOIN {_table(user)} u ON u.{_column(user, 'pk')} = k.{_column(key, 'user')} "
    )
    to_key = key._meta.pk.to_python
    to_datetime = getattr(connection.ops, "convert_datetimefield_value", None)  # SQLite answers text
    rows = []
    with connection.cursor() as cursor:
        for start in range(0, len(tokens), 400):  # two lists of 400 stay under SQLite's 999 parameters
            chunk = list(tokens[start:start + 400])
            cursor.execute(
                select + f"WHERE k.{_column(key, 'token')} IN {_in(chunk)} OR (k.{_column(key, 'previous_token')} "
                f"IN {_in(chunk)} AND k.{_column(key, 'previous_token_expires')} > %s)",
                [*chunk, *chunk, connection.ops.adapt_datetimefield_value(now)],
            )
            for (pk, token, previous, previous_until, team_id, org_id, team_org_id, user_pk, user_id,
                 key_cap, key_caps, team_cap, team_caps, org_cap, org_caps, user_cap, user_caps) in cursor.fetchall():
                if previous_until is not None and to_datetime is not None:
                    previous_until = to_datetime(previous_until, None, connection)
                own_org = org_id is not None
                rows.append({
                    "id": to_key(pk), "token": token, "previous_token": previous,
                    "previous_token_expires": previous_until, "team_id": team_id, "organization_id": org_id,
                    "team__organization_id": team_org_id, "user_id": user_pk, "user__user_id": user_id,
                    "max_budget": key_cap, "model_max_budget": _decoded(key_caps),
                    "team__max_budget": team_cap, "team__model_max_budget": _decoded(team_caps),
                    "organization__budget__max_budget": org_cap if own_org else None,
                    "organization__budget__model_max_budget": _decoded(org_caps) if own_org else {},
                    "team__organization__budget__max_budget": None if own_org else org_cap,
                    "team__organization__budget__model_max_budget": {} if own_org else _decoded(org_caps),
                    "user__max_budget": user_cap, "user__model_max_budget": _decoded(user_caps),
                })
    return rows


def _pending_spend(scoped: Mapping[str, set[Any]]) -> list[tuple[Any, Any, Any, Any, str, float]]:
    """(key, its team, its organization, its user, model, pending spend) of the pending reports on the
    given keys, teams, organizations and users: one grouped statement."""
    report, key, team = UsageReport, VirtualKey, Team
    organization = f"COALESCE(k.{_column(key, 'organization')}, t.{_column(team, 'organization')})"
    columns = {"key": f"r.{_column(report, 'key')}", "team": f"k.{_column(key, 'team')}",
               "organization": organization, "user": f"k.{_column(key, 'user')}"}
    conditions, params = [], []
    for scope, pks in scoped.items():
        values = _key_ids(pks) if scope == "key" else list(pks)
        conditions.append(f"{columns[scope]} IN {_in(values)}")
        params += values
    if not conditions:
        return []
    sql = (
        f"SELECT r.{_column(report, 'key')}, k.{_column(key, 'team')}, {organization}, k.{_column(key, 'user')}, "
        f"r.{_column(report, 'model')}, SUM(r.{_column(report, 'spend')}) "
        f"FROM {_table(report)} r JOIN {_table(key)} k ON k.{_column(key, 'pk')} = r.{_column(report, 'key')} "
        f"LEFT JOIN {_table(team)} t ON t.{_column(team, 'pk')} = k.{_column(key, 'team')} "
        f"WHERE r.{_column(report, 'applied_at')} IS NULL AND ({' OR '.join(conditions)}) "
        "GROUP BY 1, 2, 3, 4, 5"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        to_key = VirtualKey._meta.pk.to_python
        return [(to_key(row[0]), *row[1:]) for row in cursor.fetchall()]


def _applied_spend(key_ids: Iterable[Any]) -> dict[Any, dict[str, tuple[Any, dict[str, Any]]]]:
    """key id → scope → (spend, model spend) as applied on its path's rows: one statement."""
    key, team, org, user = VirtualKey, Team, Organization, User
    ids = _key_ids(key_ids)
    spends = ", ".join(
        f"{alias}.{_column(model, 'spend')}, {alias}.{_column(model, 'model_spend')}"
        for alias, model in (("k", key), ("t", team), ("o", org), ("u", user))
    )
    sql = (
        f"SELECT k.{_column(key, 'pk')}, {spends} FROM {_table(key)} k "
        f"LEFT JOIN {_table(team)} t ON t.{_column(team, 'pk')} = k.{_column(key, 'team')} "
        f"LEFT JOIN {_table(org)} o ON o.{_column(org, 'pk')} = "
        f"COALESCE(k.{_column(key, 'organization')}, t.{_column(team, 'organization')}) "
        f"LEFT JOIN {_table(user)} u ON u.{_column(user, 'pk')} = k.{_column(key, 'user')} "
        f"WHERE k.{_column(key, 'pk')} IN {_in(ids)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, ids)
        rows = cursor.fetchall()
    to_key = VirtualKey._meta.pk.to_python
    return {
        to_key(row[0]): {
            scope: (row[1 + 2 * i], _decoded(row[2 + 2 * i]))
            for i, scope in enumerate(("key", "team", "organization", "user"))
        }
        for row in rows
    }


def _locked_rows(scope: str, model: Any, pks: Sequence[Any]) -> list[tuple[Any, Any, dict, Any, dict]]:
    """(pk, spend, model spend, cap, model caps) of these rows, locked in primary-key order (PostgreSQL:
    FOR UPDATE), so that appliers never deadlock."""
    if scope == "organization":  # an organization's caps are on its budget row
        budget = model._meta.get_field("budget").related_model
        caps = f"b.{_column(budget, 'max_budget')}, b.{_column(budget, 'model_max_budget')}"
        join = (f"LEFT JOIN {_table(budget)} b ON b.{_column(budget, 'pk')} = t.{_column(model, 'budget')}")
    else:
        caps, join = f"t.{_column(model, 'max_budget')}, t.{_column(model, 'model_max_budget')}", ""
    pk = f"t.{_column(model, 'pk')}"
    lock = " FOR UPDATE OF t" if connection.features.has_select_for_update_of else ""
    to_python, rows = model._meta.pk.to_python, []
    with connection.cursor() as cursor:
        for chunk in _chunks([model._meta.pk.get_db_prep_value(value, connection) for value in pks]):
            cursor.execute(
                f"SELECT {pk}, t.{_column(model, 'spend')}, t.{_column(model, 'model_spend')}, {caps} "
                f"FROM {_table(model)} t {join} WHERE {pk} IN {_in(chunk)} ORDER BY {pk}{lock}",
                list(chunk),
            )
            rows += [(to_python(row[0]), row[1], _decoded(row[2]), row[3], _decoded(row[4]))
                     for row in cursor.fetchall()]
    return rows


def _exhausted_counting_pending(
    wanted: Sequence[tuple[dict[str, Any], str]],
) -> dict[tuple[Any, str], tuple[list[str], list[str]]]:
    """For each (path, model): (scopes whose budget applied + pending spend has used up, those of them
    the applied spend alone has not), in two queries whatever the number of paths.

    The pending sums are read before the applied spend, so a batch committing in between is counted
    twice rather than not at all: the error is an early apply, never a missed budget.
    """
    scoped: dict[str, set[Any]] = defaultdict(set)  # scope → the pks whose pending spend counts
    for path, model in wanted:
        for scope, (cap, model_caps) in _caps(path).items():
            if _capped(cap, model_caps, model):
                scoped[scope].add(_scope_pk(path, scope))
    pending: dict[tuple[str, Any], list[Any]] = defaultdict(lambda: [0.0, defaultdict(float)])
    for key_id, team_id, org_id, user_id, model, total in _pending_spend(scoped):
        for scope, pk in (("key", key_id), ("team", team_id), ("organization", org_id), ("user", user_id)):
            if pk is not None:
                entry = pending[(scope, pk)]
                entry[0] += total
                entry[1][model] += total
    applied = _applied_spend({path["id"] for path, _ in wanted})
    outcome: dict[tuple[Any, str], tuple[list[str], list[str]]] = {}
    for path, model in wanted:
        row = applied.get(path["id"])
        exhausted, crossing = [], []
        for scope, (cap, model_caps) in _caps(path).items() if row is not None else ():
            model_cap = (model_caps or {}).get(model)
            if cap is None and model_cap is None:
                continue
            spend, model_spend = row[scope]
            spend = float(spend or 0.0)
            applied_model = float(model_spend.get(model) or 0.0)
            waiting = pending.get((scope, _scope_pk(path, scope)), (0.0, {}))
            over = (cap is not None and spend + waiting[0] >= float(cap)) or (
                model_cap is not None and applied_model + waiting[1].get(model, 0.0) >= float(model_cap)
            )
            if not over:
                continue
            exhausted.append(scope)
            if not ((cap is not None and spend >= float(cap)) or (model_cap is not None and applied_model >= float(model_cap))):
                crossing.append(scope)
        outcome[(path["id"], model)] = (exhausted, crossing)
    return outcome


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
    stored = _insert(rows, idempotent=bool(seen))
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
