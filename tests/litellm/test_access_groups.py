"""`/v1/access_group` (and `/v1/unified_access_group`): FastAPI's `{"detail"}` errors, 201 on create, 204 on delete."""
from __future__ import annotations

import pytest

from accessgroups.models import AccessGroup
from tests.factories import (
    AccessGroupFactory,
    AgentFactory,
    KeyFactory,
    MCPServerFactory,
    OrganizationFactory,
    TeamFactory,
    UserFactory,
)
from tests.litellm.conftest import assert_detail, assert_error, key_of

pytestmark = pytest.mark.django_db

PREFIXES = [pytest.param("/v1/access_group", id="access_group"),
            pytest.param("/v1/unified_access_group", id="unified_access_group")]
MISSING_ID = "5e0f2d8b-1c3a-4a7e-9f00-000000000000"


# --- POST -------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_access_group_create_is_201_with_assignments_resolved(api, prefix):
    team = TeamFactory(team_alias="research")
    key = KeyFactory(key_alias="ci")
    server = MCPServerFactory(name="Docs")
    agent = AgentFactory(name="Helper")
    response = api.post(prefix, {
        "access_group_name": "beta", "description": "beta models", "access_model_names": ["openai/gpt-4o"],
        "access_mcp_server_ids": [server.server_id], "access_agent_ids": [agent.agent_id],
        "assigned_team_ids": [str(team.team_id)], "assigned_key_ids": [key.token],
    })
    assert response.status_code == 201
    body = response.json()
    assert body["access_group_name"] == "beta" and body["organization_id"] is None
    assert body["assigned_teams"] == [{"id": str(team.team_id), "name": "research"}]
    assert body["assigned_keys"] == [{"id": key.token, "name": "ci"}]
    assert body["access_mcp_servers"] == [{"id": server.server_id, "name": "Docs"}]
    assert body["access_agents"] == [{"id": agent.agent_id, "name": "Helper"}]
    team.refresh_from_db()
    key.refresh_from_db()
    assert team.access_group_ids == [body["access_group_id"]] == key.access_group_ids


def test_access_group_create_duplicate_name_is_409_ignoring_case(api):
    AccessGroupFactory(access_group_name="Beta")
    assert "already exists" in assert_detail(api.post("/v1/access_group", {"access_group_name": "beta"}), 409)


def test_access_group_create_unknown_team_is_400(api):
    response = api.post("/v1/access_group", {"access_group_name": "g", "assigned_team_ids": [MISSING_ID]})
    assert "Unknown team ids" in assert_detail(response, 400)


def test_access_group_create_without_name_is_400_naming_the_field(api):
    detail = assert_detail(api.post("/v1/access_group", {"description": "x"}), 400)
    assert detail[0]["loc"] == ["body", "access_group_name"]


def test_access_group_create_wrong_type_is_400_naming_the_field(api):
    detail = assert_detail(api.post("/v1/access_group", {"access_group_name": "g", "access_model_names": "gpt"}), 400)
    assert detail[0]["loc"] == ["body", "access_model_names"]


def test_access_group_create_by_internal_user_is_403(api, outsider):
    detail = assert_detail(api.post("/v1/access_group", {"access_group_name": "g"}, key=key_of(outsider)), 403)
    assert "error" in detail


def test_access_group_create_by_org_admin_in_their_org_context(api, org, org_admin):
    response = api.post("/v1/access_group", {"access_group_name": "org-group"}, key=key_of(org_admin),
                        headers={"X-Organization-Id": str(org.pk)})
    assert response.status_code == 201
    assert response.json()["organization_id"] == str(org.pk)


def test_access_group_create_global_by_org_admin_is_403(api, org_admin):
    assert_detail(api.post("/v1/access_group", {"access_group_name": "global"}, key=key_of(org_admin)), 403)
    assert not AccessGroup.objects.exists()


def test_access_group_create_by_org_admin_cannot_assign_another_orgs_team(api, org, org_admin):
    foreign = TeamFactory(organization=OrganizationFactory())
    response = api.post("/v1/access_group", {"access_group_name": "g", "assigned_team_ids": [str(foreign.team_id)]},
                        key=key_of(org_admin), headers={"X-Organization-Id": str(org.pk)})
    assert_detail(response, 400)


def test_access_group_without_a_key_is_401_in_the_error_shape(api):
    assert_error(api.post("/v1/access_group", {"access_group_name": "g"}, key=None), 401, "auth_error")


def test_access_group_malformed_json_is_400(api):
    assert_detail(api.call("POST", "/v1/access_group", raw_body="{oops"), 400)


# --- GET list and one -------------------------------------------------------------------------


def test_access_group_list_is_newest_first(api):
    older = AccessGroupFactory()
    newer = AccessGroupFactory()
    ids = [g["access_group_id"] for g in api.get("/v1/access_group").json()]
    assert ids == [str(newer.pk), str(older.pk)]


def test_access_group_list_by_admin_viewer_is_allowed(api):
    AccessGroupFactory()
    viewer = UserFactory(user_role="proxy_admin_viewer")
    assert len(api.get("/v1/access_group", key=key_of(viewer)).json()) == 1


def test_access_group_list_by_org_admin_shows_global_and_their_orgs_groups(api, org, org_admin):
    mine = AccessGroupFactory(organization=org)
    shared = AccessGroupFactory()
    AccessGroupFactory(organization=OrganizationFactory())
    ids = {g["access_group_id"] for g in api.get("/v1/access_group", key=key_of(org_admin)).json()}
    assert ids == {str(mine.pk), str(shared.pk)}


def test_access_group_list_by_internal_user_is_403(api, outsider):
    assert_detail(api.get("/v1/access_group", key=key_of(outsider)), 403)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_access_group_get_one(api, prefix):
    group = AccessGroupFactory(access_group_name="one")
    assert api.get(f"{prefix}/{group.pk}").json()["access_group_name"] == "one"


def test_access_group_get_unknown_is_404(api):
    assert assert_detail(api.get(f"/v1/access_group/{MISSING_ID}"), 404) == f"Access group '{MISSING_ID}' not found"


def test_access_group_get_malformed_id_is_404(api):
    assert_detail(api.get("/v1/access_group/not-a-uuid"), 404)


def test_access_group_get_another_orgs_group_by_org_admin_is_404(api, org_admin):
    foreign = AccessGroupFactory(organization=OrganizationFactory())
    assert_detail(api.get(f"/v1/access_group/{foreign.pk}", key=key_of(org_admin)), 404)


# --- PUT --------------------------------------------------------------------------------------


def test_access_group_update_sets_only_the_fields_sent(api):
    group = AccessGroupFactory(access_group_name="keep", access_model_names=["a/b"])
    response = api.put(f"/v1/access_group/{group.pk}", {"description": "new"})
    assert response.status_code == 200
    body = response.json()
    assert (body["access_group_name"], body["description"], body["access_model_names"]) == ("keep", "new", ["a/b"])


def test_access_group_update_assignment_from_the_group_side_updates_the_team(api):
    group = AccessGroupFactory()
    team = TeamFactory()
    api.put(f"/v1/access_group/{group.pk}", {"assigned_team_ids": [str(team.team_id)]})
    team.refresh_from_db()
    assert team.access_group_ids == [str(group.pk)]
    api.put(f"/v1/access_group/{group.pk}", {"assigned_team_ids": []})
    team.refresh_from_db()
    assert team.access_group_ids == []


def test_access_group_update_name_clash_is_409(api):
    AccessGroupFactory(access_group_name="taken")
    group = AccessGroupFactory()
    assert_detail(api.put(f"/v1/access_group/{group.pk}", {"access_group_name": "TAKEN"}), 409)


def test_access_group_update_unknown_is_404(api):
    assert_detail(api.put(f"/v1/access_group/{MISSING_ID}", {"description": "x"}), 404)


def test_access_group_update_by_admin_viewer_is_403(api):
    group = AccessGroupFactory()
    viewer = UserFactory(user_role="proxy_admin_viewer")
    assert_detail(api.put(f"/v1/access_group/{group.pk}", {"description": "x"}, key=key_of(viewer)), 403)


def test_access_group_update_wrong_type_is_400(api):
    group = AccessGroupFactory()
    detail = assert_detail(api.put(f"/v1/access_group/{group.pk}", {"access_agent_ids": [1]}), 400)
    assert detail[0]["loc"][:2] == ["body", "access_agent_ids"]


# --- DELETE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_access_group_delete_is_204_and_detaches_teams_and_keys(api, prefix):
    team = TeamFactory()
    key = KeyFactory()
    group = AccessGroupFactory(assigned_team_ids=[str(team.team_id)], assigned_key_ids=[key.token])
    response = api.delete(f"{prefix}/{group.pk}")
    assert response.status_code == 204 and response.content == b""
    team.refresh_from_db()
    key.refresh_from_db()
    assert team.access_group_ids == [] and key.access_group_ids == []


def test_access_group_delete_unknown_is_404(api):
    assert_detail(api.delete(f"/v1/access_group/{MISSING_ID}"), 404)


def test_access_group_delete_global_by_org_admin_is_403(api, org_admin):
    group = AccessGroupFactory()
    assert_detail(api.delete(f"/v1/access_group/{group.pk}", key=key_of(org_admin)), 403)
    assert AccessGroup.objects.filter(pk=group.pk).exists()


def test_access_group_delete_own_orgs_group_by_org_admin(api, org, org_admin):
    group = AccessGroupFactory(organization=org)
    assert api.delete(f"/v1/access_group/{group.pk}", key=key_of(org_admin)).status_code == 204
