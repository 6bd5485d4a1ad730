"""The migration to SPEC §1's string ids, on a database holding rows of the old UUID schema: every row,
every reference and every id a client has seen survive (SQLite stored UUIDs as 32 hex digits; they come
out hyphenated, as the API always showed them), on SQLite and on PostgreSQL alike."""
from __future__ import annotations

import hashlib
import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accessgroups.models import AccessGroup, KeyAccessGroup, TeamAccessGroup
from keys.models import VirtualKey
from orgs.models import (
    AuditEntry,
    Organization,
    OrganizationMembership,
    Team,
    TeamMembership,
    TeamUserObjectPermission,
)

BEFORE = [
    ("orgs", "0003_team_legacy_admins_members"),
    ("keys", "0005_keys_fillfactor"),
    ("accessgroups", "0005_drop_redundant_assignment_indexes"),
]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def _latest() -> None:
    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_string_id_migration_keeps_rows_references_and_ids():
    try:
        executor = _migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps
        org_id, team_id, group_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        budget = old.get_model("orgs", "Budget").objects.create()
        org = old.get_model("orgs", "Organization").objects.create(
            organization_id=org_id, organization_alias="Old Org", budget=budget
        )
        team = old.get_model("orgs", "Team").objects.create(team_id=team_id, team_alias="Old Team", organization=org,
                                                            access_group_ids=[str(group_id)])
        user = old.get_model("orgs", "User").objects.create(user_id="old@example.test", password="!")
        old.get_model("orgs", "OrganizationMembership").objects.create(organization=org, user=user)
        old.get_model("orgs", "TeamMembership").objects.create(team=team, user=user, role="admin")
        permission = old.get_model("auth", "Permission").objects.first()
        if permission is not None:
            old.get_model("orgs", "TeamUserObjectPermission").objects.create(
                content_object=team, user=user, permission=permission
            )
        token = hashlib.sha256(b"sk-old-key-000000000001").hexdigest()
        key = old.get_model("keys", "VirtualKey").objects.create(
            token=token, key_name="sk-...0001", user=user, team=team, organization=org, access_group_ids=[str(group_id)]
        )
        group = old.get_model("accessgroups", "AccessGroup").objects.create(
            access_group_id=group_id, access_group_name="old-group", organization=org,
            assigned_team_ids=[str(team_id)], assigned_key_ids=[token],
        )
        old.get_model("accessgroups", "TeamAccessGroup").objects.create(team=team, access_group=group)
        old.get_model("accessgroups", "KeyAccessGroup").objects.create(key=key, access_group=group)
        old.get_model("orgs", "AuditEntry").objects.create(
            actor_id="admin", action="team_create", object_type="team", object_id=str(team_id), organization_id=org_id
        )
    finally:
        _latest()

    org = Organization.objects.get(pk=str(org_id))
    team = Team.objects.get(pk=str(team_id))
    assert org.organization_alias == "Old Org" and team.organization_id == str(org_id)
    assert OrganizationMembership.objects.get(organization=org).user.user_id == "old@example.test"
    assert TeamMembership.objects.get(team=team).role == "admin"
    if permission is not None:
        assert TeamUserObjectPermission.objects.filter(content_object_id=str(team_id)).count() == 1
    key = VirtualKey.objects.get(token=token)
    assert (key.team_id, key.organization_id) == (str(team_id), str(org_id))
    group = AccessGroup.objects.get(pk=str(group_id))
    assert group.organization_id == str(org_id)
    assert TeamAccessGroup.objects.get(access_group=group).team_id == str(team_id)
    assert KeyAccessGroup.objects.get(access_group=group).key_id == key.id
    assert team.access_group_ids == [str(group_id)]
    assert (group.assigned_team_count, group.assigned_key_count) == (1, 1)  # counted from the relation
    assert AuditEntry.objects.get(object_id=str(team_id)).organization_id == str(org_id)
    # Joins through the converted columns agree (no id stayed in the old 32-hex form anywhere).
    assert Team.objects.filter(organization__organization_alias="Old Org").get() == team
    assert VirtualKey.objects.filter(team__team_alias="Old Team", organization=org).count() == 1
    # New rows take caller-chosen string ids next to the migrated ones.
    Team.objects.create(team_id="litellm-dashboard", organization=org)
    assert set(Team.objects.filter(organization=org).values_list("pk", flat=True)) == {
        str(team_id), "litellm-dashboard"
    }
