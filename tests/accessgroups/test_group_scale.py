"""Access groups at scale (issue 17): LiteLLM's `assigned_key_ids` is listed whole up to a documented
bound and marked above it, a list above the bound is never replaced whole, the group keeps counts in step
with the relation, and its keys are paged by `/api/v1/access-groups/{id}/keys/`."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client, override_settings

from accessgroups.bulk import Selection, bulk_assign
from accessgroups.models import AccessGroup, KeyAccessGroup
from accessgroups.selectors import ASSIGNED_IDS_LIMIT
from accessgroups.services import access_group_update, sync_all
from keys.models import VirtualKey
from orgs.models import AuditEntry
from orgs.services import team_delete
from tests.accessgroups.scale import insert_keys
from tests.factories import AccessGroupFactory, KeyFactory, OrganizationFactory, TeamFactory

pytestmark = pytest.mark.django_db

MASTER_KEY = "sk-master-key-for-group-scale-0001"
IN_SYNC = {"teams": [], "keys": [], "groups": []}


# --- the LiteLLM shape below the bound ------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[Client]:
    with override_settings(ACCESSCTL_MASTER_KEY=MASTER_KEY):
        yield Client(HTTP_AUTHORIZATION=f"Bearer {MASTER_KEY}")


@pytest.mark.parametrize("prefix", ["/v1/access_group", "/v1/unified_access_group"])
def test_litellm_shape_lists_keys_and_teams_whole_below_the_bound(api, prefix):
    team = TeamFactory(team_alias="research")
    keys = [KeyFactory(key_alias=f"ci-{i}") for i in range(3)]
    group = AccessGroupFactory(assigned_team_ids=[str(team.pk)], assigned_key_ids=[k.token for k in keys])
    body = api.get(f"{prefix}/{group.pk}").json()
    assert body["assigned_key_ids"] == sorted(k.token for k in keys)
    assert body["assigned_keys"] == [{"id": k.token, "name": k.key_alias} for k in sorted(keys, key=lambda k: k.token)]
    assert body["assigned_team_ids"] == [str(team.pk)]
    assert body["assigned_teams"] == [{"id": str(team.pk), "name": "research"}]
    assert (body["assigned_key_count"], body["assigned_team_count"]) == (3, 1)
    assert body["assigned_key_ids_truncated"] is False and body["assigned_team_ids_truncated"] is False


def test_litellm_shape_lists_keys_whole_at_the_bound(api):
    team = TeamFactory()
    group = AccessGroupFactory()
    insert_keys(ASSIGNED_IDS_LIMIT, team=team, group=group)
    body = api.get(f"/v1/access_group/{group.pk}").json()
    assert len(body["assigned_key_ids"]) == ASSIGNED_IDS_LIMIT == body["assigned_key_count"]
    assert body["assigned_key_ids"] == sorted(VirtualKey.objects.filter(team=team).values_list("token", flat=True))
    assert body["assigned_key_ids_truncated"] is False


def test_litellm_shape_above_the_bound_lists_none_and_says_so(api):
    team = TeamFactory()
    group = AccessGroupFactory()
    insert_keys(ASSIGNED_IDS_LIMIT + 1, team=team, group=group)
    body = api.get(f"/v1/access_group/{group.pk}").json()
    assert body["assigned_key_ids"] == [] and body["assigned_key_ids_truncated"] is True
    assert body["assigned_key_count"] == ASSIGNED_IDS_LIMIT + 1


def test_litellm_list_reads_the_keys_of_every_small_group_in_one_query(api, django_assert_max_num_queries):
    groups = [AccessGroupFactory(assigned_key_ids=[KeyFactory().token]) for _ in range(3)]
    body = api.get("/v1/access_group").json()
    assert {g["access_group_id"]: len(g["assigned_key_ids"]) for g in body} == {str(g.pk): 1 for g in groups}


def test_group_whose_count_drifted_low_is_still_read_bounded(api):
    team = TeamFactory()
    group = AccessGroupFactory()
    insert_keys(ASSIGNED_IDS_LIMIT + 5, team=team, group=group)
    AccessGroup.objects.filter(pk=group.pk).update(assigned_key_count=1)  # drift on purpose
    body = api.get(f"/v1/access_group/{group.pk}").json()
    assert body["assigned_key_ids"] == [] and body["assigned_key_ids_truncated"] is True


# --- writes above the bound -----------------------------------------------------------------------


def test_replacing_the_key_list_of_a_group_above_the_bound_is_refused(api):
    team = TeamFactory()
    group = AccessGroupFactory()
    insert_keys(ASSIGNED_IDS_LIMIT + 1, team=team, group=group)
    # What a client that read the group (and saw no list) would send back.
    response = api.put(f"/v1/access_group/{group.pk}", {"assigned_key_ids": []}, content_type="application/json")
    assert response.status_code == 400
    assert "bulk-assign" in response.json()["detail"]
    assert KeyAccessGroup.objects.filter(access_group=group).count() == ASSIGNED_IDS_LIMIT + 1


def test_replacing_the_key_list_above_the_bound_over_rest_is_a_400_naming_the_field(api):
    team = TeamFactory()
    group = AccessGroupFactory()
    insert_keys(ASSIGNED_IDS_LIMIT + 1, team=team, group=group)
    response = api.patch(f"/api/v1/access-groups/{group.pk}/", {"assigned_key_ids": []}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "assigned_key_ids"
    group.refresh_from_db()
    assert group.assigned_key_count == ASSIGNED_IDS_LIMIT + 1


def test_other_fields_of_a_group_above_the_bound_can_still_be_changed(api):
    team = TeamFactory()
    group = AccessGroupFactory()
    insert_keys(ASSIGNED_IDS_LIMIT + 1, team=team, group=group)
    group = access_group_update(actor=None, group=group, data={"description": "bigger now"})
    assert group.description == "bigger now" and group.assigned_key_count == ASSIGNED_IDS_LIMIT + 1


# --- counts kept by the writers of the relation ---------------------------------------------------


def test_counts_follow_assignments_from_every_side():
    group = AccessGroupFactory()
    team = TeamFactory()
    key = KeyFactory(team=team, user=None, access_group_ids=[group.pk])
    team_key = KeyFactory(team=team, user=None)
    access_group_update(actor=None, group=group, data={"assigned_team_ids": [str(team.pk)]})
    bulk_assign(actor=None, target="keys", group_refs=[str(group.pk)], selection=Selection(ids=(team_key.token,)))
    group.refresh_from_db()
    assert (group.assigned_team_count, group.assigned_key_count) == (1, 2)
    key.delete()  # the relation's rows go with the key
    group.refresh_from_db()
    assert group.assigned_key_count == 1
    team_delete(actor=None, team=team)  # the team's keys leave the group in one statement
    group.refresh_from_db()
    assert (group.assigned_team_count, group.assigned_key_count) == (0, 0)
    assert sync_all(repair=False) == IN_SYNC


def test_check_access_sync_repairs_a_drifted_team_count():
    group = AccessGroupFactory(assigned_team_ids=[str(TeamFactory().pk)])
    AccessGroup.objects.filter(pk=group.pk).update(assigned_team_count=7)
    assert sync_all(repair=False)["groups"] == [str(group.pk)]
    sync_all(repair=True)
    group.refresh_from_db()
    assert group.assigned_team_count == 1 and sync_all(repair=False) == IN_SYNC


def test_bulk_assign_audit_entry_records_a_count_and_a_sample_not_every_token():
    from accessgroups.bulk import AUDIT_SAMPLE

    team = TeamFactory()
    insert_keys(AUDIT_SAMPLE + 10, team=team)
    group = AccessGroupFactory()
    bulk_assign(actor=None, target="keys", group_refs=[str(group.pk)], selection=Selection(team_id=str(team.pk)))
    entry = AuditEntry.objects.get(action="access_group_bulk_assign")
    assert entry.after["key_count"] == AUDIT_SAMPLE + 10
    assert len(entry.after["key_ids_sample"]) == AUDIT_SAMPLE
    group.refresh_from_db()
    assert group.assigned_key_count == AUDIT_SAMPLE + 10


# --- /api/v1/access-groups/{id}/keys/ -------------------------------------------------------------


def test_group_keys_endpoint_pages_through_every_key(api):
    team = TeamFactory()
    group = AccessGroupFactory()
    insert_keys(5, team=team, group=group)
    KeyFactory()  # not in the group
    seen, url = [], f"/api/v1/access-groups/{group.pk}/keys/?page_size=2"
    while url:
        page = api.get(url).json()
        seen += [k["token"] for k in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(VirtualKey.objects.filter(team=team).values_list("token", flat=True))


def test_group_keys_endpoint_shows_an_org_admin_only_their_organization_keys_of_a_global_group():
    from accessctl.roles import OrgRole
    from tests.factories import OrganizationMembershipFactory, UserFactory

    mine, theirs = OrganizationFactory(), OrganizationFactory()
    own_key = KeyFactory(team=TeamFactory(organization=mine), user=None)
    foreign_key = KeyFactory(team=TeamFactory(organization=theirs), user=None)
    group = AccessGroupFactory(assigned_key_ids=[own_key.token, foreign_key.token])
    admin = UserFactory()
    OrganizationMembershipFactory(user=admin, organization=mine, user_role=OrgRole.ORG_ADMIN)
    raw = KeyFactory(user=admin).raw
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    page = client.get(f"/api/v1/access-groups/{group.pk}/keys/", HTTP_X_ORGANIZATION_ID=str(mine.pk)).json()
    assert [k["token"] for k in page["results"]] == [own_key.token]


def test_group_keys_endpoint_for_another_organizations_group_is_404():
    from accessctl.roles import OrgRole
    from tests.factories import OrganizationMembershipFactory, UserFactory

    mine, theirs = OrganizationFactory(), OrganizationFactory()
    group = AccessGroupFactory(organization=theirs)
    admin = UserFactory()
    OrganizationMembershipFactory(user=admin, organization=mine, user_role=OrgRole.ORG_ADMIN)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {KeyFactory(user=admin).raw}")
    assert client.get(f"/api/v1/access-groups/{group.pk}/keys/").status_code == 404
