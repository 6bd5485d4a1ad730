"""SPEC §1's caller-chosen string ids, as LiteLLM deployments have them (`litellm-dashboard`,
`test_team_1a2b3c4d`, `alice@corp`): on the LiteLLM routes, the REST API (`/api/v1/teams/{id}/`) and the
admin's change pages, including ids with `.`, `@` and `-`; unique, never reused, UUID strings by default."""
from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from django.contrib.admin.utils import quote as admin_quote

from orgs.models import Organization, Team, TeamMembership
from tests.factories import AdminFactory, OrganizationFactory, TeamFactory, UserFactory
from tests.litellm.conftest import assert_error, key_of

FREE_IDS = ["test_team_1a2b3c4d", "litellm-dashboard", "ops.team@eu-1", "Team With Spaces", "ünïcødé-团队"]


@pytest.mark.parametrize("team_id", FREE_IDS)
def test_team_new_keeps_a_caller_chosen_team_id(api, team_id):
    response = api.post("/team/new", {"team_id": team_id, "team_alias": "free"})
    assert response.status_code == 200, response.content
    assert response.json()["team_id"] == team_id
    assert api.get("/team/info", {"team_id": team_id}).json()["team_info"]["team_alias"] == "free"


def test_team_new_without_an_id_generates_a_uuid_string(api):
    team_id = api.post("/team/new", {"team_alias": "generated"}).json()["team_id"]
    assert str(uuid.UUID(team_id)) == team_id


@pytest.mark.parametrize("bad", ["x" * 129, "tab\there", "new\nline", " padded", ""])
def test_team_new_with_an_id_that_is_not_printable_or_too_long_is_400(api, bad):
    response = api.post("/team/new", {"team_id": bad, "team_alias": "bad"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "team_id"
    assert not Team.objects.filter(team_alias="bad").exists()


def test_team_id_of_128_characters_is_accepted(api):
    assert api.post("/team/new", {"team_id": "t" * 128}).json()["team_id"] == "t" * 128


def test_team_new_with_a_taken_id_is_400(api):
    TeamFactory(team_id="taken-team")
    error = assert_error(api.post("/team/new", {"team_id": "taken-team"}), 400, "bad_request_error", param="team_id")
    assert error["message"] == "Team id = taken-team already exists. Please use a different team id."


def test_a_deleted_teams_id_is_never_reused(api):
    api.post("/team/new", {"team_id": "short-lived"})
    assert api.post("/team/delete", {"team_ids": ["short-lived"]}).status_code == 200
    assert_error(api.post("/team/new", {"team_id": "short-lived"}), 400, param="team_id")


def test_user_new_joins_a_team_with_a_free_form_id_and_binds_its_key(api):
    api.post("/team/new", {"team_id": "litellm-dashboard"})
    response = api.post("/user/new", {"user_id": "alice@corp", "team_id": "litellm-dashboard"})
    assert response.status_code == 200, response.content
    assert TeamMembership.objects.filter(team_id="litellm-dashboard", user__user_id="alice@corp").exists()
    info = api.get("/key/info", {"key": response.json()["key"]}).json()["info"]
    assert info["team_id"] == "litellm-dashboard"


def test_key_generate_and_list_by_a_free_form_team_id(api):
    api.post("/team/new", {"team_id": "search.prod@eu"})
    key = api.post("/key/generate", {"team_id": "search.prod@eu"}).json()
    listed = api.get("/key/list", {"team_id": "search.prod@eu"}).json()["keys"]
    assert listed == [key["token"]]


def test_organization_new_keeps_a_caller_chosen_id_and_its_header_selects_it(api):
    response = api.post("/organization/new", {"organization_id": "acme-corp.eu", "organization_alias": "Acme"})
    assert response.json()["organization_id"] == "acme-corp.eu"
    api.post("/team/new", {"team_id": "acme-team", "organization_id": "acme-corp.eu"})
    teams = api.get("/team/list", headers={"X-Organization-Id": "acme-corp.eu"}).json()
    assert [t["team_id"] for t in teams] == ["acme-team"]
    assert Organization.objects.get(pk="acme-corp.eu").teams.get().pk == "acme-team"


def test_organization_header_with_a_free_form_id_is_403_for_a_non_member(api, outsider):
    OrganizationFactory(organization_id="acme-corp.eu")
    known = api.get("/team/list", key=key_of(outsider), headers={"X-Organization-Id": "acme-corp.eu"})
    unknown = api.get("/team/list", key=key_of(outsider), headers={"X-Organization-Id": "nobody.eu"})
    assert known.status_code == unknown.status_code == 403


def test_access_group_with_a_caller_chosen_id(api):
    api.post("/team/new", {"team_id": "beta-team"})
    response = api.post("/v1/access_group", {
        "access_group_id": "prod-search", "access_group_name": "Prod search", "assigned_team_ids": ["beta-team"],
    })
    assert response.status_code == 201, response.content
    assert response.json()["access_group_id"] == "prod-search"
    assert api.get("/v1/access_group/prod-search").json()["assigned_team_ids"] == ["beta-team"]
    assert api.get("/team/info", {"team_id": "beta-team"}).json()["team_info"]["access_group_ids"] == ["prod-search"]
    assert api.post("/v1/access_group", {"access_group_id": "prod-search", "access_group_name": "x"}).status_code == 409


# --- the REST API and the admin ---------------------------------------------------------------


@pytest.mark.parametrize("team_id", ["ops.team@eu-1", "litellm-dashboard", "a.b-c@d"])
def test_rest_team_detail_and_members_with_a_free_form_id(api, team_id):
    team = TeamFactory(team_id=team_id)
    member = UserFactory(user_id="bob@corp.example")
    TeamMembership.objects.create(team=team, user=member, role="user")
    detail = api.get(f"/api/v1/teams/{quote(team_id, safe='@')}/")
    assert detail.status_code == 200, detail.content
    assert detail.json()["team_id"] == team_id
    members = api.get(f"/api/v1/teams/{quote(team_id, safe='@')}/members/").json()
    assert [m["user_id"] for m in members["results"]] == ["bob@corp.example"]


def test_rest_organization_detail_with_a_free_form_id(api):
    OrganizationFactory(organization_id="acme.corp@eu-1", organization_alias="Acme")
    response = api.get("/api/v1/organizations/acme.corp@eu-1/")
    assert response.status_code == 200 and response.json()["organization_alias"] == "Acme"


def test_rest_unknown_free_form_team_is_404(api):
    assert api.get("/api/v1/teams/no.such@team/").status_code == 404


@pytest.mark.parametrize("team_id", ["ops.team@eu-1", "under_score-team", "litellm-dashboard"])
def test_admin_change_page_of_a_team_with_a_free_form_id(client, db, team_id):
    admin = AdminFactory(password="pw-for-the-admin-test")
    client.force_login(admin)
    TeamFactory(team_id=team_id, team_alias="Free-form team")
    response = client.get(f"/admin/orgs/team/{admin_quote(team_id)}/change/")
    assert response.status_code == 200
    assert b"Free-form team" in response.content
