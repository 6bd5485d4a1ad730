"""The rows of a report's path (key, team, organization, user) and their caps, and the hand-written statements
of the usage hot path and applier (table and column names from the models; both backends): the ORM's
compilation was most of their cost."""
from __future__ import annotations

import datetime
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import connection
from django.db.models import Q

from orgs.models import Organization, Team, User

from .models import UsageReport, VirtualKey

logger = logging.getLogger(__name__)

APPLY_QUEUED_FLAG = "usage:apply-queued"
_ID_CHUNK = 900  # ids per IN (...) list: under SQLite's old 999-variable limit

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


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    """The ids in lists a statement can take (PostgreSQL takes them all at once)."""
    size = _ID_CHUNK if connection.features.max_query_params else max(len(ids), 1)
    for start in range(0, len(ids), size):
        yield ids[start:start + size]
