"""Admin actions inside a tenant: block/unblock, regenerate (secret shown once), CSV export (masked), and
bulk access-group assignment — at once for small selections, as a background job for large ones."""
from __future__ import annotations

import csv
import io
import re

import pytest
from django.contrib.admin import helpers

from accessgroups.admin import assignment as access_admin
from accessgroups.models import BulkJob
from keys import crypto
from keys.models import VirtualKey
from orgs.models import AuditEntry
from tests.admin.conftest import admin_url, logged_in
from tests.factories import AccessGroupFactory, KeyFactory

pytestmark = pytest.mark.django_db

SECRET_IN_PAGE = re.compile(r'value="(sk-[A-Za-z0-9_\-]{20,})"')
KEYS = "keys.virtualkey"


def _action(client, label: str, action: str, rows, **extra):
    data = {"action": action, "index": "0", helpers.ACTION_CHECKBOX_NAME: [str(r.pk) for r in rows], **extra}
    return client.post(admin_url(label, "changelist"), data)


# --- block / unblock ----------------------------------------------------------------------------------


def test_admin_block_action_by_org_admin_blocks_own_keys_only(world):
    own, other = world.own.rows[KEYS], world.other.rows[KEYS]
    _action(logged_in(world.users["org_admin"]), KEYS, "block_keys", [own, other])
    assert VirtualKey.objects.get(pk=own.pk).blocked is True
    assert VirtualKey.objects.get(pk=other.pk).blocked is False


def test_admin_unblock_action_by_team_admin_unblocks_and_audits(world):
    key = world.own.rows[KEYS]
    client = logged_in(world.users["team_admin"])
    _action(client, KEYS, "block_keys", [key])
    _action(client, KEYS, "unblock_keys", [key])
    assert VirtualKey.objects.get(pk=key.pk).blocked is False
    assert AuditEntry.objects.get(action="key_unblock").actor_id == world.users["team_admin"].user_id


def test_admin_block_action_by_admin_viewer_changes_nothing(world):
    key = world.own.rows[KEYS]
    _action(logged_in(world.users["admin_viewer"]), KEYS, "block_keys", [key])
    assert VirtualKey.objects.get(pk=key.pk).blocked is False


# --- regenerate ---------------------------------------------------------------------------------------


def _regenerate(client, key):
    return client.post(admin_url(KEYS, "regenerate", key.pk))


def test_admin_regenerate_by_org_admin_shows_the_new_secret_once(world):
    key = world.own.rows[KEYS]
    response = _regenerate(logged_in(world.users["org_admin"]), key)
    raw = SECRET_IN_PAGE.search(response.content.decode()).group(1)
    assert VirtualKey.objects.get(pk=key.pk).token == crypto.hash_secret(raw) != key.token
    assert "no-store" in response["Cache-Control"]


def test_admin_regenerate_then_change_page_never_shows_the_secret(world):
    key = world.own.rows[KEYS]
    client = logged_in(world.users["org_admin"])
    raw = SECRET_IN_PAGE.search(_regenerate(client, key).content.decode()).group(1)
    assert raw not in client.get(admin_url(KEYS, "change", key.pk)).content.decode()


def test_admin_regenerate_is_audited_without_the_secret(world):
    key = world.own.rows[KEYS]
    response = _regenerate(logged_in(world.users["team_admin"]), key)
    raw = SECRET_IN_PAGE.search(response.content.decode()).group(1)
    entry = AuditEntry.objects.get(action="key_regenerate")
    assert raw not in str(entry.before) + str(entry.after)


def test_admin_regenerate_confirm_page_asks_before_changing(world):
    key = world.own.rows[KEYS]
    response = logged_in(world.users["org_admin"]).get(admin_url(KEYS, "regenerate", key.pk))
    assert response.status_code == 200 and "confirm-regenerate" in response.content.decode()
    assert VirtualKey.objects.get(pk=key.pk).token == key.token


def test_admin_regenerate_of_other_tenants_key_answers_404(world):
    key = world.other.rows[KEYS]
    assert _regenerate(logged_in(world.users["org_admin"]), key).status_code == 404
    assert VirtualKey.objects.get(pk=key.pk).token == key.token


def test_admin_regenerate_by_admin_viewer_is_refused(world):
    key = world.own.rows[KEYS]
    assert _regenerate(logged_in(world.users["admin_viewer"]), key).status_code == 403
    assert VirtualKey.objects.get(pk=key.pk).token == key.token


# --- CSV export ---------------------------------------------------------------------------------------


def _exported(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_admin_export_csv_lists_masked_names_and_never_a_secret(world):
    key = KeyFactory(team=world.own.rows["orgs.team"])
    response = _action(logged_in(world.users["org_admin"]), KEYS, "export_csv", [key])
    rows = _exported(response)
    assert response["Content-Type"].startswith("text/csv")
    assert [r["key_name"] for r in rows] == [crypto.mask(key.raw)]
    assert key.raw not in response.content.decode() and key.raw[3:] not in response.content.decode()


def test_admin_export_csv_by_org_admin_skips_other_tenants_keys(world):
    own, other = world.own.rows[KEYS], world.other.rows[KEYS]
    rows = _exported(_action(logged_in(world.users["org_admin"]), KEYS, "export_csv", [own, other]))
    assert [r["token"] for r in rows] == [own.token]


def test_admin_export_csv_for_admin_viewer_is_offered(world):
    rows = _exported(_action(logged_in(world.users["admin_viewer"]), KEYS, "export_csv", [world.own.rows[KEYS]]))
    assert len(rows) == 1


# --- bulk assignment ----------------------------------------------------------------------------------


def _assign(client, label: str, rows, groups, action: str = "assign_access_groups"):
    return _action(client, label, action, rows, apply="1", access_groups=[str(g.pk) for g in groups])


def test_admin_bulk_assign_page_offers_only_assignable_groups(world):
    response = _action(logged_in(world.users["org_admin"]), KEYS, "assign_access_groups", [world.own.rows[KEYS]])
    offered = set(response.context["form"].fields["access_groups"].queryset)
    assert offered == {world.own.rows["accessgroups.accessgroup"]}


def test_admin_bulk_assign_by_org_admin_adds_the_group_to_the_selected_keys(world):
    group = AccessGroupFactory(organization=world.own.organization)
    keys = [KeyFactory(team=world.own.rows["orgs.team"]) for _ in range(3)]
    _assign(logged_in(world.users["org_admin"]), KEYS, keys, [group])
    for key in keys:
        assert str(group.pk) in VirtualKey.objects.get(pk=key.pk).access_group_ids
    entry = AuditEntry.objects.get(action="access_group_bulk_assign")
    assert entry.actor_id == world.users["org_admin"].user_id


def test_admin_bulk_unassign_by_org_admin_removes_the_group(world):
    key, group = world.own.rows[KEYS], world.own.rows["accessgroups.accessgroup"]
    _assign(logged_in(world.users["org_admin"]), KEYS, [key], [group], action="unassign_access_groups")
    assert VirtualKey.objects.get(pk=key.pk).access_group_ids == []


def test_admin_bulk_assign_of_a_global_group_by_org_admin_is_refused(world):
    key, group = world.own.rows[KEYS], world.global_rows["accessgroups.accessgroup"]
    response = _assign(logged_in(world.users["org_admin"]), KEYS, [key], [group])
    assert "access_groups" in response.context["form"].errors
    assert str(group.pk) not in VirtualKey.objects.get(pk=key.pk).access_group_ids


def test_admin_bulk_assign_to_teams_by_org_admin_updates_the_team(world):
    team, group = world.own.rows["orgs.team"], AccessGroupFactory(organization=world.own.organization)
    _assign(logged_in(world.users["org_admin"]), "orgs.team", [team], [group])
    team.refresh_from_db()
    assert str(group.pk) in team.access_group_ids


def test_admin_bulk_assign_over_the_threshold_runs_a_job_and_shows_its_progress(
    world, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(access_admin, "BULK_JOB_THRESHOLD", 2)
    group = AccessGroupFactory(organization=world.own.organization)
    keys = [KeyFactory(team=world.own.rows["orgs.team"]) for _ in range(3)]
    client = logged_in(world.users["org_admin"])
    with django_capture_on_commit_callbacks(execute=True):
        response = _assign(client, KEYS, keys, [group])
    job = BulkJob.objects.exclude(pk=world.own.rows["accessgroups.bulkjob"].pk).get(organization=world.own.organization)
    assert response.status_code == 302 and response["Location"] == admin_url("accessgroups.bulkjob", "change", job.pk)
    assert (job.status, job.matched, job.changed) == (BulkJob.SUCCEEDED, 3, 3)
    page = client.get(response["Location"]).content.decode()
    assert '<progress max="100" value="100">' in page


def test_admin_bulk_job_page_while_queued_reloads_itself(world):
    job = world.own.rows["accessgroups.bulkjob"]
    page = logged_in(world.users["org_admin"]).get(admin_url("accessgroups.bulkjob", "change", job.pk))
    assert '<meta http-equiv="refresh"' in page.content.decode()
