"""Deleting a group is set-based (issue 17), and key assignments keep their integrity without foreign keys
in the database: writers fail on a group or key that is gone, a bulk batch removes what it added for a key
deleted meanwhile, and check_access_sync reports and repairs any assignment left pointing at nothing."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from accessctl.errors import NotFound
from accessgroups import bulk_sql, services
from accessgroups.bulk import Selection, bulk_assign
from accessgroups.models import AccessGroup, KeyAccessGroup, TeamAccessGroup
from accessgroups.services import access_group_delete, sync_all
from keys.authz import NO_DEFAULT_MODELS
from keys.models import VirtualKey
from orgs.models import AuditEntry, Team
from tests.accessgroups.scale import insert_keys
from tests.factories import AccessGroupFactory, KeyFactory, TeamFactory

pytestmark = pytest.mark.django_db

IN_SYNC = {"teams": [], "keys": [], "groups": []}


def _delete_counting_queries(size: int) -> tuple[int, AccessGroup, AccessGroup, Team]:
    team = TeamFactory()
    group, other = AccessGroupFactory(), AccessGroupFactory()
    insert_keys(size, team=team, group=group)
    kept = KeyFactory(team=team, user=None)
    services.access_group_assign(actor=None, group=other, keys=[kept])
    services.access_group_assign(actor=None, group=group, keys=[kept], teams=[team])
    with CaptureQueriesContext(connection) as queries:
        access_group_delete(actor=None, group=group)
    return len(queries), group, other, team


def test_group_delete_query_count_does_not_grow_with_its_keys():
    small, *_ = _delete_counting_queries(3)
    large, *_ = _delete_counting_queries(300)
    assert small == large


def test_group_delete_takes_the_group_off_every_key_team_and_count():
    _, group, other, team = _delete_counting_queries(50)
    gid = str(group.pk)
    assert not AccessGroup.objects.filter(pk=gid).exists()
    assert not KeyAccessGroup.objects.filter(access_group_id=gid).exists()
    assert not TeamAccessGroup.objects.filter(access_group_id=gid).exists()
    assert not VirtualKey.objects.filter(access_group_ids__icontains=gid).exists()
    team.refresh_from_db()
    assert team.access_group_ids == []
    other.refresh_from_db()
    assert other.assigned_key_count == 1  # the other group keeps its key
    assert VirtualKey.objects.get(access_group_assignments__access_group=other).access_group_ids == [str(other.pk)]
    entries = AuditEntry.objects.filter(action="access_group_delete", object_id=gid)
    assert [e.before["assigned_key_count"] for e in entries] == [51]
    assert sync_all(repair=False) == IN_SYNC


def test_group_delete_leaves_a_key_it_alone_restricted_reaching_nothing():
    group, other = AccessGroupFactory(), AccessGroupFactory()
    alone, with_other, with_models = KeyFactory(), KeyFactory(), KeyFactory(models=["openai/gpt-4o"])
    services.access_group_assign(actor=None, group=group, keys=[alone, with_other, with_models])
    services.access_group_assign(actor=None, group=other, keys=[with_other])
    access_group_delete(actor=None, group=group)
    models = dict(VirtualKey.objects.values_list("pk", "models"))
    assert models[alone.pk] == [NO_DEFAULT_MODELS]
    assert models[with_other.pk] == [] and models[with_models.pk] == ["openai/gpt-4o"]


def test_group_delete_clears_a_drifted_list_naming_the_group():
    group = AccessGroupFactory()
    drifted = KeyFactory()
    VirtualKey.objects.filter(pk=drifted.pk).update(access_group_ids=["a-kept-id", str(group.pk)])
    access_group_delete(actor=None, group=group)
    drifted.refresh_from_db()
    assert drifted.access_group_ids == ["a-kept-id"]


def test_group_delete_invalidates_its_keys_snapshots_by_token(monkeypatch, django_capture_on_commit_callbacks):
    group = AccessGroupFactory()
    keys = [KeyFactory() for _ in range(2)]
    services.access_group_assign(actor=None, group=group, keys=keys)
    seen = []
    monkeypatch.setattr("keys.cache.invalidate", seen.append)
    with django_capture_on_commit_callbacks(execute=True):
        access_group_delete(actor=None, group=group)
    assert not seen[-1].everything and {k.token for k in keys} <= seen[-1].tokens


def test_group_delete_above_the_named_limit_drops_every_snapshot(monkeypatch, django_capture_on_commit_callbacks):
    group = AccessGroupFactory()
    insert_keys(3, team=TeamFactory(), group=group)
    monkeypatch.setattr(services.groups, "DELETE_NAMED_KEYS_LIMIT", 2)
    seen = []
    monkeypatch.setattr("keys.cache.invalidate", seen.append)
    with django_capture_on_commit_callbacks(execute=True):
        access_group_delete(actor=None, group=group)
    assert seen[-1].everything


def test_assigning_a_group_that_is_gone_fails_instead_of_leaving_a_row():
    key = KeyFactory()
    with pytest.raises(NotFound):
        KeyAccessGroup.objects.create(key=key, access_group_id="a-deleted-group")


def test_assigning_a_key_that_is_gone_fails_instead_of_leaving_a_row():
    group = AccessGroupFactory()
    with pytest.raises(NotFound):
        KeyAccessGroup.objects.create(key_id=uuid.uuid4(), access_group=group)


def test_check_access_sync_reports_and_repairs_an_assignment_whose_key_is_gone():
    group = AccessGroupFactory()
    keys = [KeyFactory() for _ in range(2)]
    services.access_group_assign(actor=None, group=group, keys=keys)
    VirtualKey.objects.filter(pk=keys[0].pk)._raw_delete(VirtualKey.objects.db)  # behind the services' back
    assert sync_all(repair=False) == {**IN_SYNC, "groups": [str(group.pk)]}
    sync_all(repair=True)
    group.refresh_from_db()
    assert list(KeyAccessGroup.objects.values_list("key_id", flat=True)) == [keys[1].pk]
    assert group.assigned_key_count == 1 and sync_all(repair=False) == IN_SYNC


def test_check_access_sync_reports_and_repairs_assignments_of_a_group_that_is_gone():
    group = AccessGroupFactory()
    key = KeyFactory()
    services.access_group_assign(actor=None, group=group, keys=[key])
    TeamAccessGroup.objects.filter(access_group=group)._raw_delete(TeamAccessGroup.objects.db)
    AccessGroup.objects.filter(pk=group.pk)._raw_delete(AccessGroup.objects.db)  # behind the services' back
    assert sync_all(repair=False)["groups"] == [str(group.pk)]
    sync_all(repair=True)
    key.refresh_from_db()
    assert not KeyAccessGroup.objects.exists() and key.access_group_ids == []
    assert sync_all(repair=False) == IN_SYNC


def _waiting_on_a_lock(backend_pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [backend_pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite runs one writer at a time: no key is "
                    "deleted while a batch's statement runs")
@pytest.mark.django_db(transaction=True)
def test_bulk_batch_removes_the_rows_it_added_for_a_key_deleted_meanwhile():
    team = TeamFactory()
    group = AccessGroupFactory()
    keys = [KeyFactory(team=team, user=None) for _ in range(3)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        bulk_pid = cursor.fetchone()[0]  # the connection bulk_assign runs on (this thread's)
    locked, deleted = threading.Event(), threading.Event()

    def delete_first_key_while_the_batch_waits_for_it() -> None:
        # As a key deleter: it locks the key first; the batch's statement reads the key (its snapshot
        # predates the delete), adds its row, then waits on the key's lock; the deleter commits.
        try:
            with transaction.atomic():
                VirtualKey.objects.select_for_update().get(pk=keys[0].pk)
                locked.set()
                deadline = time.monotonic() + 10
                while not _waiting_on_a_lock(bulk_pid):
                    if time.monotonic() > deadline:
                        return  # the assertion on `deleted` below fails
                    time.sleep(0.01)
                VirtualKey.objects.filter(pk=keys[0].pk)._raw_delete(VirtualKey.objects.db)
            deleted.set()
        finally:
            connections.close_all()

    deleter = threading.Thread(target=delete_first_key_while_the_batch_waits_for_it)
    deleter.start()
    assert locked.wait(timeout=10)
    result = bulk_assign(actor=None, target="keys", group_refs=[str(group.pk)],
                         selection=Selection(team_id=str(team.pk)))
    deleter.join(timeout=15)

    assert deleted.is_set()
    group.refresh_from_db()
    assert result.changed == 2 and result.rows == 2 and group.assigned_key_count == 2
    assert set(KeyAccessGroup.objects.values_list("key_id", flat=True)) == {keys[1].pk, keys[2].pk}
    assert sync_all(repair=False) == IN_SYNC


def test_group_delete_without_the_set_based_statements_syncs_row_by_row(monkeypatch):
    group = AccessGroupFactory()
    alone = KeyFactory()
    services.access_group_assign(actor=None, group=group, keys=[alone])
    monkeypatch.setattr(bulk_sql, "detach_group", lambda *args, **kwargs: None)
    access_group_delete(actor=None, group=group)
    alone.refresh_from_db()
    assert alone.access_group_ids == [] and alone.models == [NO_DEFAULT_MODELS]
    assert sync_all(repair=False) == IN_SYNC
