"""A key created without a user (SPEC §2): an operator's key for an application, or a team's service-account
key. It may call what its rules allow and read its own /key/info, and it manages nothing."""
from __future__ import annotations

import pytest

from accessgroups.models import AccessGroup
from keys.models import VirtualKey
from orgs.models import Organization, OrganizationMembership, Team, TeamMembership, User
from tests.authz.conftest import assert_error
from tests.factories import KeyFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def app_key(api) -> dict:
    """A key the master key generated without user or team: `{"key": raw, "token": hash}`."""
    body = api.post("/key/generate", {"models": ["openai/gpt-4o"], "key_alias": "billing-app"}).json()
    assert (body["user_id"], body["team_id"]) == (None, None)
    return body


@pytest.fixture
def team_key(team) -> VirtualKey:
    return KeyFactory(user=None, team=team)


def _state() -> tuple:
    """Every row a management write could touch, counted, and every key's stored fields."""
    counts = tuple(m.objects.count() for m in (User, Organization, OrganizationMembership, Team, TeamMembership,
                                                AccessGroup, VirtualKey))
    keys = sorted(VirtualKey.objects.values_list("token", "key_alias", "blocked", "models", "key_type"))
    return counts, keys


# --- what it may do --------------------------------------------------------------------------------------


def test_key_without_user_reads_its_own_key_info(api, app_key):
    info = api.get("/key/info", key=app_key["key"]).json()["info"]

    assert (info["user_id"], info["key_alias"]) == (None, "billing-app")


def test_key_without_user_reads_its_own_key_info_by_token(api, app_key):
    assert api.get("/key/info", {"key": app_key["token"]}, key=app_key["key"]).status_code == 200


def test_key_without_user_lists_only_itself(api, app_key):
    KeyFactory()
    body = api.get("/key/list", key=app_key["key"]).json()

    assert body["keys"] == [app_key["token"]]


def test_key_without_user_lists_only_itself_on_rest(api, app_key):
    KeyFactory()
    rows = api.get("/api/v1/keys/", key=app_key["key"]).json()["results"]

    assert [row["token"] for row in rows] == [app_key["token"]]


def test_key_without_user_calls_a_model_its_rules_allow(api, app_key):
    assert api.post("/api/v1/authz/check", {"model": "openai/gpt-4o"}, key=app_key["key"]).status_code == 200


def test_key_without_user_is_refused_a_model_outside_its_rules(api, app_key):
    response = api.post("/api/v1/authz/check", {"model": "anthropic/claude-3"}, key=app_key["key"])

    assert_error(response, 403, "key_model_access_denied")


def test_team_key_without_user_reads_its_teams_info(api, team, team_key):
    assert api.get("/team/info", {"team_id": str(team.pk)}, key=team_key.raw).status_code == 200


def test_key_without_user_does_not_read_another_keys_info(api, app_key):
    other = KeyFactory()

    response = api.get("/key/info", {"key": other.token}, key=app_key["key"])

    assert response.status_code in (403, 404)
    assert "info" not in response.json()


def test_key_without_user_obeys_its_key_type(api):
    raw = api.post("/key/generate", {"key_type": "llm_api"}).json()["key"]

    assert_error(api.get("/key/info", key=raw), 403, "key_route_access_denied")


# --- what it may not do: manage anything, itself included ----------------------------------------------------


def _writes(own_token: str, team: Team, org: Organization) -> list[tuple[str, str, dict]]:
    return [
        ("POST", "/key/generate", {}),
        ("POST", "/key/generate", {"team_id": str(team.pk)}),
        ("POST", "/key/update", {"key": own_token, "models": ["all-proxy-models"]}),
        ("POST", "/key/update", {"key": own_token, "key_alias": "renamed"}),
        ("POST", "/key/regenerate", {"key": own_token}),
        ("POST", "/key/block", {"key": own_token}),
        ("POST", "/key/delete", {"keys": [own_token]}),
        ("POST", "/team/new", {"team_alias": "mine", "organization_id": str(org.pk)}),
        ("POST", "/team/update", {"team_id": str(team.pk), "team_alias": "renamed"}),
        ("POST", "/team/member_add", {"team_id": str(team.pk), "member": {"user_id": "x@example.test",
                                                                           "role": "admin"}}),
        ("POST", "/user/new", {"user_id": "made-by-app@example.test"}),
        ("POST", "/organization/new", {"organization_alias": "app-org"}),
        ("POST", "/organization/member_add", {"organization_id": str(org.pk),
                                              "member": {"user_id": "x@example.test", "role": "org_admin"}}),
        ("POST", "/v1/access_group", {"access_group_name": "app-group", "access_model_names": ["*"]}),
        ("POST", "/api/v1/keys/", {}),
        ("PATCH", f"/api/v1/keys/{own_token}/", {"key_alias": "renamed"}),
        ("DELETE", f"/api/v1/keys/{own_token}/", None),
        ("POST", f"/api/v1/keys/{own_token}/block/", None),
        ("POST", "/api/v1/teams/", {"team_alias": "mine"}),
        ("POST", "/api/v1/users/", {"user_id": "made-by-app@example.test"}),
    ]


WRITE_IDS = ["key-generate", "key-generate-in-team", "key-update-widen", "key-update-alias", "key-regenerate",
             "key-block", "key-delete", "team-new", "team-update", "team-member-add", "user-new", "organization-new",
             "organization-member-add", "access-group-new", "rest-key-create", "rest-key-patch", "rest-key-delete",
             "rest-key-block", "rest-team-create", "rest-user-create"]


@pytest.mark.parametrize("which", range(len(WRITE_IDS)), ids=WRITE_IDS)
def test_app_key_without_user_manages_nothing(api, app_key, team, org, which):
    method, path, body = _writes(app_key["token"], team, org)[which]
    before = _state()

    response = api.call(method, path, key=app_key["key"], json_body=body)

    # 400: a team or organization named in the body is outside the key's reach (LiteLLM's "not found" 400).
    assert response.status_code in (400, 401, 403, 404), (path, response.content)
    assert _state() == before


@pytest.mark.parametrize("which", range(len(WRITE_IDS)), ids=WRITE_IDS)
def test_team_key_without_user_manages_nothing(api, team, team_key, org, which):
    method, path, body = _writes(team_key.token, team, org)[which]
    before = _state()

    response = api.call(method, path, key=team_key.raw, json_body=body)

    # 400: a team or organization named in the body is outside the key's reach (LiteLLM's "not found" 400).
    assert response.status_code in (400, 401, 403, 404), (path, response.content)
    assert _state() == before


def test_team_key_without_user_cannot_see_another_teams_keys(api, team, team_key):
    other = KeyFactory(user=None, team=TeamFactory(organization=team.organization))

    assert api.get("/key/info", {"key": other.token}, key=team_key.raw).status_code in (403, 404)


def test_key_generated_by_master_without_user_id_never_becomes_the_masters(api):
    body = api.post("/key/generate", {"team_id": str(TeamFactory().pk)}).json()

    assert body["user_id"] is None
    assert not VirtualKey.objects.filter(user__user_id="default_user_id").exists()


def test_user_of_the_master_key_owns_no_keys_after_generating_for_others(api):
    user = UserFactory()
    api.post("/key/generate", {"user_id": user.user_id})

    assert VirtualKey.objects.filter(user=user).count() == 1
