"""`manage.py check_access_sync [--repair]`: exit 0 when the lists equal the relation, non-zero naming the
drifted rows otherwise, and `--repair` rewrites them from the relation."""
from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from accessgroups.models import AccessGroup
from accessgroups.services import sync_all
from keys.models import VirtualKey
from orgs.models import AuditEntry, Team
from tests.factories import AccessGroupFactory, KeyFactory, TeamFactory

pytestmark = pytest.mark.django_db

IN_SYNC = {"teams": [], "keys": [], "groups": []}


def _run(*args: str) -> int:
    """The exit status `manage.py check_access_sync` would end with: 0, or a CommandError's return code
    (what `BaseCommand.run_from_argv` passes to `sys.exit`)."""
    try:
        call_command("check_access_sync", *args)
    except CommandError as exc:
        return exc.returncode
    return 0


@pytest.fixture
def assigned():
    group = AccessGroupFactory()
    team = TeamFactory(access_group_ids=[group.pk])
    key = KeyFactory(access_group_ids=[group.pk])
    return group, team, key


@pytest.fixture
def drifted(assigned):
    """Lists that disagree with the relation on every side (as a bug or a manual SQL edit would leave them)."""
    group, team, key = assigned
    other = AccessGroupFactory()
    Team.objects.filter(pk=team.pk).update(access_group_ids=[])
    VirtualKey.objects.filter(pk=key.pk).update(access_group_ids=[str(group.pk), str(other.pk)])
    AccessGroup.objects.filter(pk=group.pk).update(assigned_key_count=0)
    return group, team, key


def test_check_access_sync_in_sync_exits_zero(assigned, capsys):
    assert _run() == 0
    assert "In sync" in capsys.readouterr().out


def test_check_access_sync_with_drift_exits_non_zero(drifted):
    assert _run() != 0


def test_check_access_sync_with_drift_names_the_drifted_rows(drifted, capsys):
    group, team, key = drifted
    _run()
    out = capsys.readouterr().out
    assert f"team {team.pk}" in out and f"key {key.pk}" in out and f"group {group.pk}" in out


def test_check_access_sync_with_drift_changes_nothing(drifted):
    _run()
    assert sync_all(repair=False) != IN_SYNC


def test_check_access_sync_repair_exits_zero(drifted):
    assert _run("--repair") == 0


def test_check_access_sync_repair_restores_the_invariant(drifted):
    group, team, key = drifted
    _run("--repair")
    team.refresh_from_db()
    key.refresh_from_db()
    group.refresh_from_db()
    assert sync_all(repair=False) == IN_SYNC
    assert team.access_group_ids == [str(group.pk)] and key.access_group_ids == [str(group.pk)]
    assert (group.assigned_team_count, group.assigned_key_count) == (1, 1)


def test_check_access_sync_repair_is_audited(drifted):
    _run("--repair")
    assert AuditEntry.objects.get(action="access_sync_repair").after == {"teams": 1, "keys": 1, "groups": 1}


def test_check_access_sync_after_repair_exits_zero(drifted):
    _run("--repair")
    assert _run() == 0
