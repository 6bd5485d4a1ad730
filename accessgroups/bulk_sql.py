"""The set-based statements of a bulk assignment batch: one statement each, whatever the batch size.

PostgreSQL gets arrays and one JSON document as parameters (a statement with a placeholder per value
costs more to build and parse than to run); SQLite gets `VALUES` lists, its batches being capped by its
999-parameter limit; other databases fall back to Django's bulk methods and the services' sync. None
of them sends the per-row `post_save`/`post_delete` signals: the batch keeps the lists in step itself.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from keys.models import VirtualKey
from orgs.models import Team

from .models import AccessGroup, KeyAccessGroup, TeamAccessGroup

KEYS, TEAMS = "keys", "teams"
_ARRAY_SAFE = re.compile(r"[0-9A-Fa-f,-]*")  # UUIDs and hex tokens: no quoting needed in an array literal


@dataclass(frozen=True)
class Kind:
    """How one target type (keys or teams) and its assignments are stored."""

    name: str
    model: type[Model]
    pk: str
    relation: type[Model]
    fk: str
    alias_field: str
    label_fields: tuple[str, ...]
    group_column: str


KINDS = {
    KEYS: Kind(KEYS, VirtualKey, "id", KeyAccessGroup, "key_id", "key_alias", ("token", "key_alias", "key_name"),
               "assigned_key_ids"),
    TEAMS: Kind(TEAMS, Team, "team_id", TeamAccessGroup, "team_id", "team_alias", ("team_alias",),
                "assigned_team_ids"),
}


def _native() -> bool:
    return connection.vendor in ("postgresql", "sqlite")


def pg_array(values: Iterable[Any]) -> str | list[str]:
    """A PostgreSQL array parameter: a literal `{a,b}` when every item is a UUID or hex token (one string
    to send instead of one adapted value per item), else the list for the driver to adapt."""
    items = [str(v) for v in values]
    joined = ",".join(items)
    return "{" + joined + "}" if _ARRAY_SAFE.fullmatch(joined) else items


def assignments_of(kind: Kind, target_ids: Sequence[Any]) -> list[tuple[Any, str]]:
    """(target primary key, group id as text) of every assignment row of these keys or teams."""
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {qn(kind.fk)}, access_group_id::text FROM {qn(kind.relation._meta.db_table)} "
                f"WHERE {qn(kind.fk)} = ANY(%s::uuid[])",
                [pg_array(target_ids)],
            )
            return cursor.fetchall()
    rows = kind.relation.objects.filter(**{f"{kind.fk}__in": target_ids}).values_list(kind.fk, "access_group_id")
    return [(target_id, str(group_id)) for target_id, group_id in rows]


def insert_assignments(kind: Kind, pairs: Sequence[tuple[Any, str]]) -> None:
    """Insert (target, group) assignment rows in one statement; rows that already exist are skipped
    (a concurrent writer may have added one): `bulk_create(ignore_conflicts=True)` without a model
    instance per row."""
    if not pairs:
        return
    meta = kind.relation._meta
    if not _native():
        now = timezone.now()
        kind.relation.objects.bulk_create(
            [kind.relation(**{kind.fk: t, "access_group_id": g, "created_at": now}) for t, g in pairs],
            ignore_conflicts=True,
        )
        return
    qn = connection.ops.quote_name
    now = meta.get_field("created_at").get_db_prep_value(timezone.now(), connection)
    table, columns = qn(meta.db_table), f"{qn(kind.fk)}, {qn('access_group_id')}, {qn('created_at')}"
    if connection.vendor == "postgresql":
        sql = (f"INSERT INTO {table} ({columns}) SELECT v.t, v.g, %s FROM unnest(%s::uuid[], %s::uuid[]) "
               f"AS v(t, g) ON CONFLICT DO NOTHING")
        params: list[Any] = [now, pg_array(t for t, _ in pairs), pg_array(g for _, g in pairs)]
    else:
        target_field, group_field = meta.get_field(kind.fk.removesuffix("_id")), meta.get_field("access_group")
        sql = f"INSERT OR IGNORE INTO {table} ({columns}) VALUES {', '.join(['(%s, %s, %s)'] * len(pairs))}"
        params = []
        for target_id, group_id in pairs:
            params += [target_field.get_db_prep_value(target_id, connection),
                       group_field.get_db_prep_value(group_id, connection), now]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def delete_assignments(kind: Kind, target_ids: Sequence[Any], group_ids: Sequence[str]) -> None:
    """Delete the assignments of these groups to these targets in one DELETE, without the per-row
    `post_delete` signals that `QuerySet.delete()` would fire."""
    rows = kind.relation.objects.filter(**{f"{kind.fk}__in": list(target_ids), "access_group_id__in": group_ids})
    rows._raw_delete(kind.relation.objects.db)


def write_target_lists(kind: Kind, lists: dict[Any, list[str]]) -> None:
    """Set the `access_group_ids` of these keys or teams (primary key → list) in one UPDATE: a join with
    the new values (not Django's `bulk_update`, whose CASE has a branch per row that Python builds and the
    database walks for every row), reaching the rows through the primary key."""
    if not lists:
        return
    if not _native():
        kind.model.objects.bulk_update(
            [kind.model(**{kind.pk: pk, "access_group_ids": value}) for pk, value in lists.items()],
            ["access_group_ids"],
        )
        return
    qn = connection.ops.quote_name
    table, pk_column = qn(kind.model._meta.db_table), qn(kind.model._meta.pk.column)
    if connection.vendor == "postgresql":
        sql = (f"UPDATE {table} AS t SET access_group_ids = v.value FROM jsonb_each(%s::jsonb) AS v(key, value) "
               f"WHERE t.{pk_column} = v.key::uuid AND t.{pk_column} = ANY(%s::uuid[])")
        params: list[Any] = [json.dumps({str(pk): value for pk, value in lists.items()}), pg_array(lists)]
    else:
        pk_field = kind.model._meta.pk
        pks = [pk_field.get_db_prep_value(pk, connection) for pk in lists]
        rows = ", ".join(["(%s, %s)"] * len(lists))
        sql = (f"UPDATE {table} SET access_group_ids = v.column2 FROM (VALUES {rows}) AS v "
               f"WHERE {table}.{pk_column} = v.column1 AND {table}.{pk_column} IN ({', '.join(['%s'] * len(pks))})")
        params = [x for pk, value in zip(pks, lists.values(), strict=True) for x in (pk, json.dumps(value))] + pks
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def write_group_lists(kind: Kind, batch_ids: Sequence[str], members: dict[str, list[str]]) -> None:
    """Bring the groups' `assigned_key_ids` (or `assigned_team_ids`) up to date for one batch, in one UPDATE.

    For every group in `members` (group id → the batch's public ids now assigned to it), the list becomes
    (its entries not in the batch) + (the batch's members), sorted: exact for every key or team of the
    batch — drift included — whatever the list said before. It runs inside the database without a join
    back to the relation, so a group listing 100,000 keys is never read into Python. The caller holds the
    groups' row locks. Other databases fall back to `services.sync_groups`.
    """
    if not members:
        return
    if not _native():
        from .services import sync_groups

        sync_groups(list(members))
        return
    qn = connection.ops.quote_name
    table, column = qn(AccessGroup._meta.db_table), qn(kind.group_column)
    group_pk = AccessGroup._meta.pk
    if connection.vendor == "postgresql":
        # COLLATE "C": the byte order of Python's sorted(), whatever the database's collation. UNION ALL:
        # the two sides are disjoint, every batch id having just been taken out of the first.
        sql = (
            f"UPDATE {table} AS g SET {column} = COALESCE(("
            f"SELECT jsonb_agg(s.t ORDER BY s.t COLLATE \"C\") FROM ("
            f"SELECT e.t FROM jsonb_array_elements_text(g.{column}) AS e(t) "
            f"WHERE e.t NOT IN (SELECT unnest(%s::text[])) "
            f"UNION ALL SELECT jsonb_array_elements_text(v.value)) AS s), '[]'::jsonb) "
            f"FROM jsonb_each(%s::jsonb) AS v(key, value) "
            f"WHERE g.access_group_id = v.key::uuid AND g.access_group_id = ANY(%s::uuid[])"
        )
        params: list[Any] = [pg_array(batch_ids), json.dumps(members), pg_array(members)]
    else:
        rows = ", ".join(["(%s, %s)"] * len(members))
        sql = (
            f"UPDATE {table} SET {column} = (SELECT json_group_array(t) FROM ("
            f"SELECT e.value AS t FROM json_each({table}.{column}) AS e "
            f"WHERE e.value NOT IN (SELECT value FROM json_each(%s)) "
            f"UNION ALL SELECT m.value FROM json_each(v.column2) AS m ORDER BY t)) "
            f"FROM (VALUES {rows}) AS v WHERE {table}.access_group_id = v.column1"
        )
        params = [json.dumps(list(batch_ids))]
        for group_id, ids in members.items():
            params += [group_pk.get_db_prep_value(group_id, connection), json.dumps(ids)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
