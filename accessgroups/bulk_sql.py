"""The set-based statements of a bulk assignment batch: one statement each, whatever the batch size.

PostgreSQL gets arrays and one JSON document as parameters (a statement with a placeholder per value
costs more to build and parse than to run); SQLite gets `VALUES` lists, its batches being capped by its
999-parameter limit; other databases fall back to Django's bulk methods and the services' sync. None
of them sends the per-row `post_save`/`post_delete` signals: the batch keeps the lists in step itself.
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Model, TextField, UUIDField
from django.db.models.functions import Cast
from django.utils import timezone

from keys.models import VirtualKey
from orgs.models import Team

from .models import AccessGroup, KeyAccessGroup, TeamAccessGroup

KEYS, TEAMS = "keys", "teams"
# UUIDs and hex tokens, comma-separated: no quoting needed in an array literal.
_ARRAY_SAFE_LIST = re.compile(r"[0-9A-Fa-f-]+(?:,[0-9A-Fa-f-]+)*")


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

    @property
    def uuid_pk(self) -> bool:
        """Keys have UUIDs; teams have SPEC §1's string ids."""
        return isinstance(self.model._meta.pk, UUIDField)


KINDS = {
    KEYS: Kind(KEYS, VirtualKey, "id", KeyAccessGroup, "key_id", "key_alias", ("token", "key_alias", "key_name")),
    TEAMS: Kind(TEAMS, Team, "team_id", TeamAccessGroup, "team_id", "team_alias", ("team_alias",)),
}


def _array_of(model: type[Model], field: str = "") -> str:
    """The PostgreSQL array type of a primary key (or of a relation's column): `uuid[]` today, whatever
    the ids become (text ids of caller-chosen strings) without rewriting the statements."""
    column = model._meta.get_field(field) if field else model._meta.pk
    return f"{column.db_type(connection)}[]"


def _native() -> bool:
    return connection.vendor in ("postgresql", "sqlite")


def pg_array(values: Iterable[Any]) -> str | list[str]:
    """A PostgreSQL array parameter: a literal `{a,b}` when every item is a UUID or hex token (one string
    to send instead of one adapted value per item), else the list for the driver to adapt."""
    items = [str(v) for v in values]
    if not items:
        return "{}"
    joined = ",".join(items)
    # One match over the joined items (not one per item): no item is empty, and none holds a comma.
    if all(items) and _ARRAY_SAFE_LIST.fullmatch(joined):
        return "{" + joined + "}"
    return items


def assignments_of(kind: Kind, target_ids: Sequence[Any]) -> list[tuple[str, str]]:
    """(target id, group id), as text, of every assignment row of these keys or teams."""
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {qn(kind.fk)}::text, access_group_id::text FROM {qn(kind.relation._meta.db_table)} "
                f"WHERE {qn(kind.fk)} = ANY(%s::{_array_of(kind.model)})",
                [pg_array(target_ids)],
            )
            return cursor.fetchall()
    rows = kind.relation.objects.filter(**{f"{kind.fk}__in": target_ids}).values_list(kind.fk, "access_group_id")
    return [(str(target_id), str(group_id)) for target_id, group_id in rows]


def _text_id(value: Any, field: Any = None) -> str:
    """An id as text: a UUID hyphenated (SQLite's raw rows hold UUIDs as 32 hex digits); a string id
    (teams, access groups: SPEC §1) as it is."""
    if field is not None and not isinstance(field, UUIDField):
        return str(value)
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def insert_assignments(kind: Kind, target_ids: Sequence[Any], group_ids: Sequence[str]) -> list[tuple[Any, str]]:
    """Assign every group to every target in one INSERT; returns the (target, group) rows it added.

    Rows that exist are skipped (ON CONFLICT DO NOTHING / OR IGNORE, which also covers a concurrent writer's),
    so the returned rows are exactly what changed: `bulk_create(ignore_conflicts=True)` with an answer.
    """
    if not target_ids or not group_ids:
        return []
    meta = kind.relation._meta
    if not _native():
        existing = set(assignments_of(kind, target_ids))
        pairs = [(str(t), g) for t in target_ids for g in group_ids if (str(t), g) not in existing]
        now = timezone.now()
        kind.relation.objects.bulk_create(
            [kind.relation(**{kind.fk: t, "access_group_id": g, "created_at": now}) for t, g in pairs],
            ignore_conflicts=True,
        )
        return pairs
    qn = connection.ops.quote_name
    now = meta.get_field("created_at").get_db_prep_value(timezone.now(), connection)
    table, fk = qn(meta.db_table), qn(kind.fk)
    columns = f"{fk}, access_group_id, created_at"
    if connection.vendor == "postgresql":
        sql = (f"INSERT INTO {table} ({columns}) SELECT t.t, g.g, %s FROM unnest(%s::{_array_of(kind.model)}) AS t(t) "
               f"CROSS JOIN unnest(%s::{_array_of(AccessGroup)}) AS g(g) "
               f"ON CONFLICT DO NOTHING RETURNING {fk}::text, access_group_id::text")
        params: list[Any] = [now, pg_array(target_ids), pg_array(group_ids)]
    else:
        target_field, group_field = meta.get_field(kind.fk.removesuffix("_id")), meta.get_field("access_group")
        pairs = [(t, g) for t in target_ids for g in group_ids]
        sql = (f"INSERT OR IGNORE INTO {table} ({columns}) VALUES {', '.join(['(%s, %s, %s)'] * len(pairs))} "
               f"RETURNING {fk}, access_group_id")
        params = []
        for target_id, group_id in pairs:
            params += [target_field.get_db_prep_value(target_id, connection),
                       group_field.get_db_prep_value(group_id, connection), now]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            return cursor.fetchall()
        return [(_text_id(t, kind.model._meta.pk), str(g)) for t, g in cursor.fetchall()]


def delete_assignments(kind: Kind, target_ids: Sequence[Any], group_ids: Sequence[str]) -> list[tuple[Any, str]]:
    """Remove the groups from the targets in one DELETE; returns the (target, group) rows it removed.

    No per-row `post_delete` signal (which `QuerySet.delete()` would fire): the caller syncs the lists.
    """
    if not target_ids or not group_ids:
        return []
    rows = kind.relation.objects.filter(**{f"{kind.fk}__in": list(target_ids), "access_group_id__in": group_ids})
    if not _native():
        removed = [(str(t), str(g)) for t, g in rows.values_list(kind.fk, "access_group_id")]
        rows._raw_delete(kind.relation.objects.db)
        return removed
    qn = connection.ops.quote_name
    table, fk = qn(kind.relation._meta.db_table), qn(kind.fk)
    if connection.vendor == "postgresql":
        sql = (f"DELETE FROM {table} WHERE {fk} = ANY(%s::{_array_of(kind.model)}) "
               f"AND access_group_id = ANY(%s::{_array_of(AccessGroup)}) "
               f"RETURNING {fk}::text, access_group_id::text")
        params: list[Any] = [pg_array(target_ids), pg_array(group_ids)]
    else:
        pk_field, group_pk = kind.model._meta.pk, AccessGroup._meta.pk
        sql = (f"DELETE FROM {table} WHERE {fk} IN ({', '.join(['%s'] * len(target_ids))}) "
               f"AND access_group_id IN ({', '.join(['%s'] * len(group_ids))}) RETURNING {fk}, access_group_id")
        params = [pk_field.get_db_prep_value(t, connection) for t in target_ids]
        params += [group_pk.get_db_prep_value(g, connection) for g in group_ids]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            return cursor.fetchall()
        return [(_text_id(t, kind.model._meta.pk), str(g)) for t, g in cursor.fetchall()]


def write_target_lists(kind: Kind, updates: dict[Any, tuple[str, tuple[str, ...]]]) -> set[Any]:
    """Compare-and-set the `access_group_ids` of these keys or teams in one UPDATE; returns those written.

    `updates` maps a primary key to (the list as read, as JSON text; the new list, sorted). A row whose
    list changed since it was read — a concurrent writer synced it — is left alone and not returned, for
    the caller to read again: no row lock is needed between the read and the write. One join with the
    new values, reaching the rows through the primary key (not `bulk_update`'s CASE with a branch per row).
    """
    if not updates:
        return set()
    if not _native():
        kind.model.objects.bulk_update(
            [kind.model(**{kind.pk: pk, "access_group_ids": list(new)}) for pk, (_, new) in updates.items()],
            ["access_group_ids"],
        )
        return {str(pk) for pk in updates}
    # A batch holds few distinct (old list, new list) pairs — most of its rows go from [] to [group]:
    # each pair is encoded, sent and parsed once, and each row carries the number of its pair.
    variants: dict[tuple[str, tuple[str, ...]], int] = {}
    numbers = [variants.setdefault(change, len(variants) + 1) for change in updates.values()]
    olds = [old for old, _ in variants]
    news = [json.dumps(list(new)) for _, new in variants]
    qn = connection.ops.quote_name
    table, pk_column = qn(kind.model._meta.db_table), qn(kind.model._meta.pk.column)
    if connection.vendor == "postgresql":
        sql = (f"UPDATE {table} AS t SET access_group_ids = c.new "
               f"FROM unnest(%s::{_array_of(kind.model)}, %s::int[]) AS u(pk, n) "
               f"JOIN unnest(%s::jsonb[], %s::jsonb[]) WITH ORDINALITY AS c(old, new, n) ON c.n = u.n "
               f"WHERE t.{pk_column} = u.pk AND t.access_group_ids = c.old RETURNING t.{pk_column}::text")
        params: list[Any] = [pg_array(updates), pg_array(numbers), olds, news]
    else:
        pk_field = kind.model._meta.pk
        pks = [pk_field.get_db_prep_value(pk, connection) for pk in updates]
        rows = ", ".join(["(%s, %s, %s)"] * len(updates))
        sql = (f"UPDATE {table} SET access_group_ids = v.column2 FROM (VALUES {rows}) AS v "
               f"WHERE {table}.{pk_column} = v.column1 AND {table}.{pk_column} IN ({', '.join(['%s'] * len(pks))}) "
               f"AND {table}.access_group_ids = v.column3 RETURNING {table}.{pk_column}")
        params = []
        for pk, n in zip(pks, numbers, strict=True):
            params += [pk, news[n - 1], olds[n - 1]]
        params += pks
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        written = [row[0] for row in cursor.fetchall()]
    if connection.vendor == "postgresql":
        return set(written)
    return {_text_id(pk, kind.model._meta.pk) for pk in written}


def lists_of(kind: Kind, target_ids: Sequence[Any]) -> dict[Any, str]:
    """The current `access_group_ids` of these targets as JSON text (to compare, without decoding)."""
    rows = kind.model.objects.filter(pk__in=list(target_ids)).annotate(
        lists_text=Cast("access_group_ids", TextField())
    ).values_list("pk", "lists_text")
    return {str(pk): text for pk, text in rows}


def apply_batch(
    kind: Kind, target_ids: Sequence[Any], group_ids: Sequence[str], *, assign: bool,
    selection: tuple[str, Sequence[Any]] | None = None,
) -> list[tuple]:
    """PostgreSQL: add (or remove) the assignment rows and apply the same change to the targets' lists, in
    one statement; returns (public id, [groups added or removed]) of every target it changed — the groups
    as None when there is one group (the caller knows it: no array to send back and parse per row).

    The list is changed by a difference, not rewritten from a read: `new = list ∪ added` (or `list −
    removed`), computed by the UPDATE on the row it locks. A row another writer changed meanwhile is
    re-read by PostgreSQL under the row lock (READ COMMITTED's recheck), so the difference lands on the
    latest list and no concurrent assignment is lost — the compare-and-set done by the database, without a
    round trip per retry. The caller holds the groups' locks (taken first, as the per-row path does).

    Key assignments have no foreign keys in the database: a key deleted between the batch's read and this
    statement (its deleter holds the key's lock, then deletes the key's rows and the key) is not updated —
    the UPDATE skips a deleted row — and the rows added for it are removed again here, before the batch
    commits, so no assignment outlives its key.

    With `selection` (a query of the batch's targets: their primary key, then `created_us`), the statement
    reads the batch itself instead of taking `target_ids`, and its last row is the batch's summary:
    (None, ["batch", count, first id, last id, last created_us], as text; count "0" and no ids for an empty
    batch).
    No round trip brings 10,000 ids to Python and sends them back.
    """
    if (selection is None and not target_ids) or not group_ids:
        return []
    qn = connection.ops.quote_name
    relation, fk = qn(kind.relation._meta.db_table), qn(kind.fk)
    table, pk = qn(kind.model._meta.db_table), qn(kind.model._meta.pk.column)
    public = "t.token" if kind.name == KEYS else f"t.{pk}::text"
    targets, groups = f"%s::{_array_of(kind.model)}", f"%s::{_array_of(AccessGroup)}"
    params: list[Any] = []
    if selection is not None:
        # MATERIALIZED: the batch is read once, though the statement names it three times.
        head = f"WITH batch AS MATERIALIZED (SELECT q.id, q.created_us FROM ({selection[0]}) AS q(id, created_us)), "
        params += selection[1]
        target_rows, target_set = "(SELECT b.id FROM batch AS b) AS t(t)", "IN (SELECT b.id FROM batch AS b)"
    else:
        head = "WITH "
        target_rows, target_set = f"unnest({targets}) AS t(t)", f"= ANY({targets})"
    if assign:
        change = (f"INSERT INTO {relation} ({fk}, access_group_id, created_at) SELECT t.t, g.g, %s "
                  f"FROM {target_rows} CROSS JOIN unnest({groups}) AS g(g) "
                  f"ON CONFLICT DO NOTHING RETURNING {fk} AS target, access_group_id::text AS grp")
        params.append(KeyAccessGroup._meta.get_field("created_at").get_db_prep_value(timezone.now(), connection))
        combine = "SELECT e FROM current UNION SELECT unnest(d.groups)"
    else:
        change = (f"DELETE FROM {relation} WHERE {fk} {target_set} AND access_group_id = ANY({groups}) "
                  f"RETURNING {fk} AS target, access_group_id::text AS grp")
        combine = "SELECT e FROM current EXCEPT SELECT unnest(d.groups)"
    if selection is None:
        params.append(pg_array(target_ids))
    params.append(pg_array(group_ids))
    single = len(group_ids) == 1
    if single and assign:
        # Most targets of a bulk run had no group or one: their new list is built without a sort per row.
        fast = ("WHEN t.access_group_ids = '[]'::jsonb THEN %s::jsonb "
                "WHEN jsonb_array_length(CASE WHEN jsonb_typeof(t.access_group_ids) = 'array' "
                "THEN t.access_group_ids ELSE '[]'::jsonb END) = 1 "
                "THEN CASE WHEN t.access_group_ids ->> 0 = %s THEN t.access_group_ids "
                "WHEN (t.access_group_ids ->> 0) COLLATE \"C\" < %s THEN t.access_group_ids || %s::jsonb "
                "ELSE %s::jsonb || t.access_group_ids END ")
        fast_params = [json.dumps(list(group_ids))] + [str(group_ids[0])] * 2 + [json.dumps(list(group_ids))] * 2
    elif single:
        fast, fast_params = "WHEN t.access_group_ids = %s::jsonb THEN '[]'::jsonb ", [json.dumps(list(group_ids))]
    elif assign:
        fast, fast_params = ("WHEN t.access_group_ids = '[]'::jsonb AND cardinality(d.groups) = 1 "
                             "THEN jsonb_build_array(d.groups[1]) "), []
    else:
        fast, fast_params = "WHEN t.access_group_ids = to_jsonb(d.groups) THEN '[]'::jsonb ", []
    params += fast_params
    # One group (the usual bulk run): a target has at most one changed row, so no aggregation (a hash
    # of 10,000 targets the planner expects to be 200, which spilled to disk every batch).
    by_target = ("by_target AS (SELECT target, ARRAY[grp] AS groups FROM changed), " if single else
                 "by_target AS (SELECT target, array_agg(grp) AS groups FROM changed GROUP BY target), ")
    # COLLATE "C": the byte order of Python's sorted(), which the rest of the code writes lists in.
    sql = (
        f"{head}changed AS ({change}), "
        + by_target +
        f"updated AS (UPDATE {table} AS t SET access_group_ids = CASE "
        + fast
        + f"ELSE (WITH current AS (SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(t.access_group_ids) = "
        f"'array' THEN t.access_group_ids ELSE '[]'::jsonb END) AS e) "
        f"SELECT COALESCE(jsonb_agg(s.e ORDER BY s.e COLLATE \"C\"), '[]'::jsonb) FROM ({combine}) AS s(e)) END "
        f"FROM by_target AS d WHERE t.{pk} = d.target RETURNING t.{pk} AS target, {public} AS public, d.groups) "
        f"SELECT public, {'NULL' if single else 'groups'} FROM updated"
    )
    if assign:
        # Rows added for a target the UPDATE did not find (deleted meanwhile): the public id is NULL.
        sql += (" UNION ALL SELECT NULL, ARRAY[c.target::text, c.grp] FROM changed AS c "
                "WHERE NOT EXISTS (SELECT 1 FROM updated AS u WHERE u.target = c.target)")
    if selection is not None:
        # The batch's size and where it starts and ends, marked 'batch' (an orphan's array starts with an id).
        sql += (" UNION ALL (SELECT NULL, ARRAY['batch', count(*)::text, (array_agg(b.id::text ORDER BY b.created_us, b.id))[1], "
                "(array_agg(b.id::text ORDER BY b.created_us DESC, b.id DESC))[1], max(b.created_us)::text] "
                "FROM batch AS b)")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        summary = None
        if selection is not None:
            summary = next(row for row in rows if row[0] is None and row[1][0] == "batch")
            rows = [row for row in rows if row is not summary]
        orphans = [row[1] for row in rows if row[0] is None]
        if orphans:
            cursor.execute(
                f"DELETE FROM {relation} AS r USING unnest({targets}, {groups}) AS o(target, grp) "
                f"WHERE r.{fk} = o.target AND r.access_group_id = o.grp",
                [pg_array(target for target, _ in orphans), pg_array(grp for _, grp in orphans)],
            )
            rows = [row for row in rows if row[0] is not None]
    if summary is not None:
        rows.append(summary)
    return rows


def detach_group(kind: Kind, group_id: str, returning: Sequence[str] = (), *, stranded: str) -> list[tuple] | None:
    """Take one group out of the `access_group_ids` of every key or team (`kind`) and mark those it alone
    restricted, in two UPDATEs whatever their number; returns the `returning` columns of the rows changed.

    1. The targets assigned to the group, reached through the relation (its group index): the group leaves
       their list and, when the group was their only one and they have no `models` of their own, `models`
       becomes `[stranded]` — one write per row for both.
    2. Lists that still name it without an assignment (drift): the lists are searched, one scan.

    None on a database without these statements here: the caller falls back to the per-row sync.
    """
    if connection.vendor not in ("postgresql", "sqlite"):
        return None
    qn = connection.ops.quote_name
    table, pk = qn(kind.model._meta.db_table), qn(kind.model._meta.pk.column)
    relation, fk = qn(kind.relation._meta.db_table), qn(kind.fk)
    columns = ", ".join(f"{table}.{qn(kind.model._meta.get_field(name).column)}" for name in returning)
    marked = json.dumps([stranded])
    if connection.vendor == "postgresql":
        # jsonb `-` removes every element equal to the string and keeps the others' order.
        without = f"{table}.access_group_ids - %s"
        names_it = f"{table}.access_group_ids @> %s::jsonb"
        empty, marked_sql = "'[]'::jsonb", "%s::jsonb"
        without_params: list[Any] = [group_id]
        names_params: list[Any] = [json.dumps([group_id])]
    else:
        without = (f"(SELECT json_group_array(e.value) FROM json_each({table}.access_group_ids) AS e "
                   f"WHERE e.value <> %s)")
        names_it = f"EXISTS (SELECT 1 FROM json_each({table}.access_group_ids) AS e WHERE e.value = %s)"
        empty, marked_sql = "'[]'", "%s"
        without_params, names_params = [group_id], [group_id]
    tail = f" RETURNING {columns}" if columns else ""
    assigned = (
        f"UPDATE {table} SET access_group_ids = {without}, models = CASE WHEN {table}.models = {empty} "
        f"AND NOT EXISTS (SELECT 1 FROM {relation} AS o WHERE o.{fk} = {table}.{pk} AND o.access_group_id <> %s) "
        f"THEN {marked_sql} ELSE {table}.models END "
        f"FROM {relation} AS r WHERE r.access_group_id = %s AND r.{fk} = {table}.{pk}{tail}"
    )
    drifted = f"UPDATE {table} SET access_group_ids = {without} WHERE {names_it}{tail}"
    rows: list[tuple] = []
    with connection.cursor() as cursor:
        cursor.execute(assigned, [*without_params, group_id, marked, group_id])
        rows += cursor.fetchall() if columns else []
        cursor.execute(drifted, [*without_params, *names_params])
        rows += cursor.fetchall() if columns else []
    return rows
