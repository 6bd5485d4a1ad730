"""The routes LiteLLM's management client and `lite` CLI call beyond the core ones (SPEC §7):
`/v2/team/list`, `/team/available`, `/model/info`, `/v1/model/info`, `/model_group/info`, and a clear
"unsupported" answer for LiteLLM's model and credential writes."""
from __future__ import annotations

import pytest

from accessgroups.models import CatalogModel
from tests.factories import CatalogModelFactory, KeyFactory, TeamFactory, TeamMembershipFactory, UserFactory
from tests.litellm.conftest import assert_error, key_of

# --- /v2/team/list ----------------------------------------------------------------------------


def test_team_list_v2_paginates_in_litellms_shape(api):
    for i in range(5):
        TeamFactory(team_alias=f"t{i}")
    body = api.get("/v2/team/list", {"page": 2, "page_size": 2}).json()
    assert (body["total"], body["page"], body["page_size"], body["total_pages"]) == (5, 2, 2, 3)
    assert [t["team_alias"] for t in body["teams"]] == ["t2", "t3"]
    assert "members_with_roles" in body["teams"][0]


def test_team_list_v2_filters_by_alias_part_and_team_id_and_sorts(api):
    a, b = TeamFactory(team_alias="Search Prod"), TeamFactory(team_alias="search-dev")
    TeamFactory(team_alias="billing")
    body = api.get("/v2/team/list", {"team_alias": "SEARCH", "sort_by": "team_alias", "sort_order": "desc"}).json()
    assert [t["team_id"] for t in body["teams"]] == [str(b.team_id), str(a.team_id)]
    assert api.get("/v2/team/list", {"team_id": str(a.team_id)}).json()["total"] == 1


def test_team_list_v2_of_a_member_shows_only_their_teams(api, team, member):
    TeamFactory(team_alias="someone else's")
    body = api.get("/v2/team/list", key=key_of(member)).json()
    assert [t["team_id"] for t in body["teams"]] == [str(team.team_id)] and body["total"] == 1


def test_team_list_v2_of_another_users_teams_by_a_member_is_refused(api, member, outsider):
    response = api.get("/v2/team/list", {"user_id": outsider.user_id}, key=key_of(member))
    assert response.status_code in (401, 403)


def test_team_list_v2_bad_page_size_is_400(api):
    assert_error(api.get("/v2/team/list", {"page_size": 0}), 400, "bad_request_error", param="page_size")


# --- /team/available --------------------------------------------------------------------------


def test_team_available_lists_offered_teams_the_caller_is_not_in(api, settings, outsider):
    offered, joined = TeamFactory(team_alias="open"), TeamFactory(team_alias="joined")
    TeamFactory(team_alias="private")
    TeamMembershipFactory(team=joined, user=outsider)
    settings.ACCESSCTL_AVAILABLE_TEAMS = [str(offered.team_id), str(joined.team_id)]
    body = api.get("/team/available", key=key_of(outsider)).json()
    assert [t["team_id"] for t in body] == [str(offered.team_id)]


def test_team_available_without_offered_teams_is_empty(api, outsider):
    TeamFactory()
    assert api.get("/team/available", key=key_of(outsider)).json() == []


def test_team_available_needs_a_key(api):
    assert_error(api.get("/team/available", key=None), 401, "auth_error")


# --- /v2/user/info -----------------------------------------------------------------------------


def test_user_info_v2_returns_the_user_row_only(api, member):
    body = api.get("/v2/user/info", key=key_of(member)).json()
    assert body["user_id"] == member.user_id and "keys" not in body and "password" not in body


def test_user_info_v2_of_another_user_is_403_before_existence(api, member, outsider):
    assert_error(api.get("/v2/user/info", {"user_id": outsider.user_id}, key=key_of(member)), 403, "auth_error")
    assert_error(api.get("/v2/user/info", {"user_id": "ghost@x"}, key=key_of(member)), 403, "auth_error")


# --- /model/info, /v1/model/info, /model_group/info --------------------------------------------


@pytest.fixture
def catalog(db):
    for name, provider in [("openai/gpt-4o", "openai"), ("openai/gpt-4o-mini", "openai"),
                           ("anthropic/claude-3", "anthropic"), ("mistral/large", "mistral")]:
        CatalogModelFactory(model_name=name, provider=provider)
    return CatalogModel.objects.all()


@pytest.mark.parametrize("path", ["/model/info", "/v1/model/info"])
def test_model_info_for_the_master_key_lists_the_whole_catalog(api, catalog, path):
    data = api.get(path).json()["data"]
    assert [m["model_name"] for m in data] == sorted(c.model_name for c in catalog)
    first = data[0]
    assert first["litellm_params"]["model"] == first["model_name"]
    assert first["model_info"]["id"] == first["model_name"] and first["model_info"]["access_groups"] == []


@pytest.mark.parametrize("path", ["/model/info", "/v1/model/info"])
def test_model_info_is_narrowed_to_what_the_key_may_reach(api, catalog, path):
    key = KeyFactory(user=UserFactory(), models=["openai/*"]).raw
    data = api.get(path, key=key).json()["data"]
    assert [m["model_name"] for m in data] == ["openai/gpt-4o", "openai/gpt-4o-mini"]


def test_model_info_of_a_team_key_intersects_key_and_team(api, catalog):
    team = TeamFactory(models=["openai/gpt-4o", "anthropic/claude-3"])
    key = KeyFactory(user=None, team=team, models=["openai/*"]).raw
    assert [m["model_name"] for m in api.get("/v1/model/info", key=key).json()["data"]] == ["openai/gpt-4o"]


def test_model_info_by_id_returns_one_and_an_unreachable_id_is_400(api, catalog):
    key = KeyFactory(user=UserFactory(), models=["openai/gpt-4o"]).raw
    one = api.get("/model/info", {"litellm_model_id": "openai/gpt-4o"}, key=key).json()["data"]
    assert [m["model_name"] for m in one] == ["openai/gpt-4o"]
    response = api.get("/model/info", {"litellm_model_id": "mistral/large"}, key=key)
    assert_error(response, 400, "bad_request_error", param="litellm_model_id")


def test_model_info_without_a_key_is_401(api, catalog):
    assert_error(api.get("/v1/model/info", key=None), 401, "auth_error")


def test_model_info_of_a_blocked_key_is_refused(api, catalog):
    key = KeyFactory(user=UserFactory(), blocked=True).raw
    assert api.get("/v1/model/info", key=key).status_code in (401, 403)


def test_model_group_info_lists_reachable_groups_in_litellms_shape(api, catalog):
    key = KeyFactory(user=UserFactory(), models=["anthropic/claude-3", "mistral/large"]).raw
    data = api.get("/model_group/info", key=key).json()["data"]
    assert [g["model_group"] for g in data] == ["anthropic/claude-3", "mistral/large"]
    assert data[0]["providers"] == ["anthropic"] and data[0]["mode"] == "chat"
    one = api.get("/model_group/info", {"model_group": "mistral/large"}, key=key).json()["data"]
    assert [g["model_group"] for g in one] == ["mistral/large"]


# --- unsupported LiteLLM routes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/model/new"),
        ("POST", "/model/update"),
        ("POST", "/model/delete"),
        ("PATCH", "/model/some-id/update"),
        ("GET", "/credentials"),
        ("POST", "/credentials"),
        ("DELETE", "/credentials/azure-prod"),
    ],
)
def test_model_and_credential_writes_answer_unsupported_naming_the_route(api, method, path):
    response = api.call(method, path, json_body={"model_name": "x"})
    error = assert_error(response, 400, "unsupported_route", param="route")
    assert path in error["message"] and "not support" in error["message"]
