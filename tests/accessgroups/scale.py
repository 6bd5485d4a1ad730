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


def insert_keys(count: int, *, team, start: int | None = None) -> None:
    """`count` keys of `team` in one executemany INSERT (no services: fixtures, not behaviour), in creation
    order, with fixed-width tokens and aliases so that pages of them are all the same size."""
    if start is None:  # each call its own range of tokens and aliases (they are unique)
        start = next(_numbers) * 10_000_000
    base = timezone.now() - datetime.timedelta(days=1)
    fields = VirtualKey._meta.concrete_fields
    varying = {
        "id": lambda i: uuid.uuid4(),
        "token": lambda i: f"{i:064x}",
        "key_name": lambda i: f"sk-...{i % 10_000:04d}",
        "key_alias": lambda i: f"k-{i:011d}",
        "team": lambda i: team.pk,
        "organization": lambda i: team.organization_id,
        "created_at": lambda i: base + datetime.timedelta(milliseconds=i),
        "updated_at": lambda i: base,
    }
    fixed = {f.name: f.get_db_prep_save(f.get_default(), connection) for f in fields if f.name not in varying}
    rows = [
        [fixed[f.name] if f.name in fixed else f.get_db_prep_save(varying[f.name](i), connection) for f in fields]
        for i in range(start, start + count)
    ]
    qn = connection.ops.quote_name
    sql = (f"INSERT INTO {qn(VirtualKey._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def assign_all(group: AccessGroup, team) -> None:
    """Assign the group to every key of the team with one INSERT … SELECT, then bring the lists and the
    count up to date (what a bulk assignment leaves behind, without measuring it here)."""
    qn = connection.ops.quote_name
    relation, keys = qn(KeyAccessGroup._meta.db_table), qn(VirtualKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {relation} (key_id, access_group_id, created_at) SELECT id, %s, %s FROM {keys} "
            f"WHERE team_id = %s",
            [AccessGroup._meta.pk.get_db_prep_value(group.pk, connection),
             KeyAccessGroup._meta.get_field("created_at").get_db_prep_value(timezone.now(), connection),
             VirtualKey._meta.get_field("team").get_db_prep_value(team.pk, connection)],
        )
    VirtualKey.objects.filter(team=team).update(access_group_ids=[str(group.pk)])
    sync_groups([group.pk])
