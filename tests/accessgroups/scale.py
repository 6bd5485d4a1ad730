"""Fixtures of the access-group scale tests: keys and assignments inserted with a few statements."""
from __future__ import annotations

import datetime
import itertools
import uuid

from django.db import connection
from django.utils import timezone

from accessgroups.models import AccessGroup, KeyAccessGroup
from accessgroups.services import sync_groups
from keys.models import VirtualKey

_numbers = itertools.count(1)


def insert_keys(count: int, *, team, group: AccessGroup | None = None, start: int | None = None) -> None:
    """`count` keys of `team` (assigned to `group`, lists and count in step) in a few statements — COPY on
    PostgreSQL, executemany elsewhere; fixtures, not behaviour, so no services. In creation order, with
    fixed-width tokens and aliases so that pages of them are all the same size."""
    if start is None:  # each call its own range of tokens and aliases (they are unique)
        start = next(_numbers) * 10_000_000
    base = timezone.now() - datetime.timedelta(days=1)
    ids = [uuid.uuid4() for _ in range(count)]
    varying = {
        "id": lambda n, i: ids[n],
        "token": lambda n, i: f"{i:064x}",
        "key_name": lambda n, i: f"sk-...{i % 10_000:04d}",
        "key_alias": lambda n, i: f"k-{i:011d}",
        "team": lambda n, i: team.pk,
        "organization": lambda n, i: team.organization_id,
        "created_at": lambda n, i: base + datetime.timedelta(milliseconds=i),
        "updated_at": lambda n, i: base,
    }
    lists = [str(group.pk)] if group is not None else []
    fields = VirtualKey._meta.concrete_fields
    fixed = {f.name: f.get_db_prep_save(f.get_default(), connection) for f in fields if f.name not in varying}
    fixed["access_group_ids"] = VirtualKey._meta.get_field("access_group_ids").get_db_prep_save(lists, connection)
    _insert(VirtualKey, fields, (
        [fixed[f.name] if f.name in fixed else f.get_db_prep_save(varying[f.name](n, i), connection) for f in fields]
        for n, i in enumerate(range(start, start + count))
    ))
    if group is not None:
        relation = [KeyAccessGroup._meta.get_field(name) for name in ("key", "access_group", "created_at")]
        group_id = relation[1].get_db_prep_save(group.pk, connection)
        now = relation[2].get_db_prep_save(timezone.now(), connection)
        _insert(KeyAccessGroup, relation, ([relation[0].get_db_prep_save(pk, connection), group_id, now] for pk in ids))
        sync_groups([group.pk])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Check the deferred foreign keys now, once, not at the end of every test that follows.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _insert(model, fields, rows) -> None:
    qn = connection.ops.quote_name
    table, columns = qn(model._meta.db_table), ", ".join(qn(f.column) for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})", list(rows))
