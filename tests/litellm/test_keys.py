"""`/key/*`: LiteLLM's fields, status codes and error types, with SPEC §2's permissions."""
from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from accessgroups.models import KeyAccessGroup
from keys import crypto
from keys.models import VirtualKey
from tests.factories import (
    AccessGroupFactory,
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)
from tests.litellm.conftest import assert_error, key_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_member(org):
    """An internal user of `org` who is in none of its teams."""
    user = UserFactory()
    OrganizationMembershipFactory(organization=org, user=user)
    return user


@pytest.fixture
def team_key(team, member):
    """A key of `team` owned by `member`."""
    return KeyFactory(user=member, team=team)


@pytest.fixture
def teammate(team):
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user)
    return user


# --- /key/generate ----------------------------------------------------------------------------


def test_key_generate_by_master_returns_secret_once_and_its_hash(api):
    response = api.post("/key/generate", {"models": ["openai/gpt-4o"], "metadata": {"env": "test"}})
    assert response.status_code == 200
    body = response.json()
    assert body["key"].startswith("sk-")
    assert body["token"] == body["token_id"] == crypto.hash_secret(body["key"]) != body["key"]
    assert body["key_name"] == crypto.mask(body["key"])
    assert body["user_id"] is None  # keys never inherit the master key's identity (SPEC §2)
    assert body["metadata"] == {"env": "test"}
    assert body["created_at"] and body["updated_at"]


def test_key_generate_by_internal_user_makes_a_personal_key_of_the_caller(api, outsider):
    response = api.post("/key/generate", {"key_alias": "mine"}, key=key_of(outsider))
    assert response.status_code == 200
    key = VirtualKey.objects.get(token=response.json()["token"])
    assert (key.user, key.team, key.key_alias) == (outsider, None, "mine")


def test_key_generate_for_another_user_by_internal_user_is_403(api, outsider):
    other = UserFactory()
    response = api.post("/key/generate", {"user_id": other.user_id}, key=key_of(outsider))
    assert_error(response, 403, "auth_error")
    assert VirtualKey.objects.filter(user=other).count() == 0


def test_key_generate_for_a_nonexistent_user_by_internal_user_answers_like_an_existing_one(api, outsider):
    response = api.post("/key/generate", {"user_id": "nobody@example.test"}, key=key_of(outsider))
    assert_error(response, 403, "auth_error")


def test_key_generate_for_unknown_user_by_admin_creates_the_user(api):
    response = api.post("/key/generate", {"user_id": "new-person@example.test"})
    assert response.status_code == 200
    assert response.json()["user_id"] == "new-person@example.test"


def test_key_generate_by_team_member_with_grant_makes_a_team_key_in_the_teams_org(api, team, member):
    response = api.post("/key/generate", {"team_id": str(team.team_id)}, key=key_of(member))
    assert response.status_code == 200
    body = response.json()
    assert (body["team_id"], body["organization_id"], body["user_id"]) == (
        str(team.team_id), str(team.organization_id), member.user_id
    )


def test_key_generate_by_team_member_without_grant_is_401_team_member_permission_error(api, org):
    team = TeamFactory(organization=org)  # default permissions: /key/info, /key/health
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user)
    response = api.post("/key/generate", {"team_id": str(team.team_id)}, key=key_of(user))
    error = assert_error(response, 401, "team_member_permission_error")
    assert "/key/generate" in error["message"]


def test_key_generate_by_team_admin_without_member_grant_succeeds(api, org):
    team = TeamFactory(organization=org)
    admin = UserFactory()
    TeamMembershipFactory(team=team, user=admin, role="admin")
    response = api.post("/key/generate", {"team_id": str(team.team_id)}, key=key_of(admin))
    assert response.status_code == 200


def test_key_generate_for_team_by_org_member_outside_team_is_400(api, team, org_member):
    response = api.post("/key/generate", {"team_id": str(team.team_id)}, key=key_of(org_member))
    error = assert_error(response, 400, "bad_request_error")
    assert "not assigned to team" in error["message"]


@pytest.mark.parametrize("which", [pytest.param("missing", id="missing"), pytest.param("foreign", id="foreign")])
def test_key_generate_for_unknown_or_foreign_team_is_the_same_400(api, outsider, which):
    team_id = "3f0c4a53-8d4e-4a5b-9c1f-000000000000" if which == "missing" else str(TeamFactory().team_id)
    response = api.post("/key/generate", {"team_id": team_id}, key=key_of(outsider))
    assert_error(response, 400, "bad_request_error", param="team_id")


def test_key_generate_team_key_for_a_user_outside_the_team_is_400(api, team, member, org_member):
    response = api.post(
        "/key/generate", {"team_id": str(team.team_id), "user_id": org_member.user_id}, key=key_of(member)
    )
    assert_error(response, 400, "bad_request_error")


def test_key_generate_with_models_outside_the_team_is_403_naming_models(api, team, member):
    response = api.post(
        "/key/generate", {"team_id": str(team.team_id), "models": ["openai/o1"]}, key=key_of(member)
    )
    assert_error(response, 403, "auth_error", param="models")


def test_key_generate_personal_key_beyond_the_owners_models_is_403(api):
    user = UserFactory(models=["openai/gpt-4o-mini"])
    response = api.post("/key/generate", {"models": ["openai/gpt-4o"]}, key=key_of(user))
    assert_error(response, 403, "auth_error", param="models")


def test_key_generate_with_access_groups_by_team_member_is_403(api, team, member):
    group = AccessGroupFactory()
    response = api.post(
        "/key/generate", {"team_id": str(team.team_id), "access_group_ids": [str(group.pk)]}, key=key_of(member)
    )
    assert_error(response, 403, "auth_error")


def test_key_generate_with_access_groups_by_team_admin_assigns_them(api, team, team_admin):
    group = AccessGroupFactory()
    response = api.post(
        "/key/generate", {"team_id": str(team.team_id), "access_group_ids": [str(group.pk)]}, key=key_of(team_admin)
    )
    assert response.status_code == 200
    assert response.json()["access_group_ids"] == [str(group.pk)]
    group.refresh_from_db()
    assert list(group.key_assignments.values_list("key__token", flat=True)) == [response.json()["token"]]
    assert group.assigned_key_count == 1


def test_key_generate_duplicate_alias_is_400_naming_key_alias(api, org):
    KeyFactory(key_alias="taken", organization=org)
    response = api.post("/key/generate", {"key_alias": "taken", "organization_id": str(org.pk)})
    assert_error(response, 400, "bad_request_error", param="key_alias")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"models": "openai/gpt-4o"}, "models", id="models-not-a-list"),
        pytest.param({"max_budget": "lots"}, "max_budget", id="budget-not-a-number"),
        pytest.param({"max_budget": -1}, "max_budget", id="budget-negative"),
        pytest.param({"tpm_limit": -5}, "tpm_limit", id="tpm-negative"),
        pytest.param({"key_alias": 123}, "key_alias", id="alias-not-a-string"),
        pytest.param({"metadata": ["a"]}, "metadata", id="metadata-not-an-object"),
        pytest.param({"duration": "forever"}, "duration", id="duration-unparseable"),
        pytest.param({"key": "sk-short"}, "key", id="custom-key-too-short"),
        pytest.param({"key_type": "admin"}, "key_type", id="unknown-key-type"),
        pytest.param({"key_type": 1}, "key_type", id="key-type-not-a-string"),
        pytest.param({"allowed_routes": "/key/info"}, "allowed_routes", id="allowed-routes-not-a-list"),
        pytest.param({"allowed_routes": ["key/info"]}, "allowed_routes", id="allowed-route-not-a-path"),
        pytest.param({"allowed_routes": ["all_routes"]}, "allowed_routes", id="allowed-route-unknown-group"),
        pytest.param({"allowed_routes": ["/key/*/info"]}, "allowed_routes", id="allowed-route-inner-wildcard"),
        pytest.param({"blocked": "maybe"}, "blocked", id="blocked-not-a-boolean"),
    ],
)
def test_key_generate_bad_input_is_400_naming_the_field(api, body, param):
    assert_error(api.post("/key/generate", body), 400, "bad_request_error", param=param)


def test_key_generate_by_service_account_key_is_401(api, team):
    service_key = KeyFactory(user=None, team=team).raw
    assert_error(api.post("/key/generate", {}, key=service_key), 401, "auth_error")


@pytest.mark.parametrize("role", [pytest.param("internal_user_viewer", id="viewer"),
                                  pytest.param("proxy_admin_viewer", id="admin-viewer")])
def test_key_generate_by_read_only_roles_is_403(api, role):
    user = UserFactory(user_role=role)
    assert_error(api.post("/key/generate", {}, key=key_of(user)), 403, "auth_error")


def test_key_generate_expiry_is_now_plus_duration(api):
    before = timezone.now()
    response = api.post("/key/generate", {"duration": "1h"})
    expires = datetime.datetime.fromisoformat(response.json()["expires"])
    assert before + datetime.timedelta(hours=1) <= expires <= timezone.now() + datetime.timedelta(hours=1)


# --- /key/update ------------------------------------------------------------------------------


def test_key_update_by_member_with_grant_applies_only_the_fields_sent(api, team_key, teammate):
    response = api.post(
        "/key/update", {"key": team_key.token, "key_alias": "renamed", "metadata": {"a": 1}}, key=key_of(teammate)
    )
    assert response.status_code == 200
    assert response.json() == {"key": team_key.token, "key_alias": "renamed", "metadata": {"a": 1}}
    team_key.refresh_from_db()
    assert (team_key.key_alias, team_key.metadata, team_key.models) == ("renamed", {"a": 1}, [])


def test_key_update_accepts_the_raw_key(api, team_key, member):
    response = api.post("/key/update", {"key": team_key.raw, "models": ["openai/gpt-4o"]}, key=key_of(member))
    assert response.status_code == 200
    team_key.refresh_from_db()
    assert team_key.models == ["openai/gpt-4o"]


def test_key_update_by_alias_finds_the_key(api, outsider):
    key = KeyFactory(user=outsider, key_alias="by-alias")
    response = api.post("/key/update", {"key_alias": "by-alias", "metadata": {"x": 1}}, key=key_of(outsider))
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.metadata == {"x": 1}


def test_key_update_duration_resets_expiry(api, outsider):
    key = KeyFactory(user=outsider)
    response = api.post("/key/update", {"key": key.token, "duration": "2h"}, key=key_of(outsider))
    assert response.json()["expires"] is not None
    key.refresh_from_db()
    assert key.expires > timezone.now() + datetime.timedelta(minutes=119)


def test_key_update_budget_by_team_member_is_403(api, team_key, member):
    response = api.post("/key/update", {"key": team_key.token, "max_budget": 100}, key=key_of(member))
    assert_error(response, 403, "auth_error")


def test_key_update_budget_of_own_personal_key_is_403(api, outsider):
    key = KeyFactory(user=outsider, max_budget=1.0)
    response = api.post("/key/update", {"key": key.token, "max_budget": 1000}, key=key_of(outsider))
    assert_error(response, 403, "auth_error")
    key.refresh_from_db()
    assert key.max_budget == 1.0


def test_key_update_budget_by_team_admin_succeeds(api, team_key, team_admin):
    response = api.post("/key/update", {"key": team_key.token, "max_budget": 100}, key=key_of(team_admin))
    assert response.status_code == 200
    assert response.json()["max_budget"] == 100


def test_key_update_by_member_without_grant_is_401_team_member_permission_error(api, org):
    team = TeamFactory(organization=org)
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user)
    key = KeyFactory(user=user, team=team)
    response = api.post("/key/update", {"key": key.token, "key_alias": "x"}, key=key_of(user))
    assert_error(response, 401, "team_member_permission_error")


def test_key_update_by_org_member_outside_the_team_is_401_team_member_permission_error(api, team_key, org_member):
    response = api.post("/key/update", {"key": team_key.token, "key_alias": "x"}, key=key_of(org_member))
    assert_error(response, 401, "team_member_permission_error")


def test_key_update_member_check_runs_before_the_body_team_id(api, org):
    team = TeamFactory(organization=org)
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user)
    attacker_team = TeamFactory(organization=org)
    TeamMembershipFactory(team=attacker_team, user=user, role="admin")
    key = KeyFactory(user=user, team=team)
    response = api.post("/key/update", {"key": key.token, "team_id": str(attacker_team.team_id)}, key=key_of(user))
    assert_error(response, 401, "team_member_permission_error")
    key.refresh_from_db()
    assert key.team == team


def test_key_update_rebinding_owner_by_non_admin_is_403(api, outsider):
    key = KeyFactory(user=outsider)
    other = UserFactory()
    response = api.post("/key/update", {"key": key.token, "user_id": other.user_id}, key=key_of(outsider))
    error = assert_error(response, 403, "auth_error")
    assert "rebind" in error["message"]


def test_key_update_blocking_a_teammates_key_without_grant_is_401(api, team_key, teammate):
    response = api.post("/key/update", {"key": team_key.token, "blocked": True}, key=key_of(teammate))
    assert_error(response, 401, "team_member_permission_error")


def test_key_update_models_beyond_the_team_by_member_is_403(api, team_key, member):
    response = api.post("/key/update", {"key": team_key.token, "models": ["anthropic/claude-3"]}, key=key_of(member))
    assert_error(response, 403, "auth_error", param="models")


def test_key_update_of_another_tenants_key_is_403_and_changes_nothing(api, team_key):
    """SPEC §3: on LiteLLM's routes a key that exists but is not the caller's is 403 (LiteLLM's clients
    check it); the REST API keeps 404."""
    stranger = UserFactory()
    response = api.post("/key/update", {"key": team_key.token, "key_alias": "x"}, key=key_of(stranger))
    assert_error(response, 403, "auth_error", param="key")
    team_key.refresh_from_db()
    assert team_key.key_alias != "x"


def test_key_update_unknown_key_is_404(api):
    response = api.post("/key/update", {"key": "sk-does-not-exist-0000000", "key_alias": "x"})
    error = assert_error(response, 404, "not_found_error", param="key")
    assert "sk-does-not-exist" not in error["message"]


def test_key_update_without_key_or_alias_is_400(api):
    assert_error(api.post("/key/update", {"models": []}), 400, "bad_request_error", param="key")


def test_key_update_wrong_type_is_400_naming_the_field(api, outsider):
    key = KeyFactory(user=outsider)
    response = api.post("/key/update", {"key": key.token, "models": [1, 2]}, key=key_of(outsider))
    error = assert_error(response, 400, "bad_request_error")
    assert error["param"].startswith("models")


# --- /key/delete ------------------------------------------------------------------------------


def test_key_delete_own_team_key_by_member_without_grant_is_401(api, team_key, member):
    """SPEC: the team-member check runs before ownership, so owning the key is not enough."""
    response = api.post("/key/delete", {"keys": [team_key.token]}, key=key_of(member))
    assert_error(response, 401, "team_member_permission_error")
    assert VirtualKey.objects.filter(pk=team_key.pk).exists()


def test_key_delete_teammates_key_by_member_with_grant_succeeds(api, org):
    team = TeamFactory(organization=org, member_permissions=["/key/delete"])
    owner, deleter = UserFactory(), UserFactory()
    TeamMembershipFactory(team=team, user=owner)
    TeamMembershipFactory(team=team, user=deleter)
    key = KeyFactory(user=owner, team=team)
    response = api.post("/key/delete", {"keys": [key.raw]}, key=key_of(deleter))
    assert response.status_code == 200
    assert response.json() == {"deleted_keys": [key.token]}  # a secret is answered by its hash, never echoed
    assert not VirtualKey.objects.filter(pk=key.pk).exists()


def test_key_delete_team_key_by_org_member_outside_team_is_400(api, team_key, org_member):
    response = api.post("/key/delete", {"keys": [team_key.token]}, key=key_of(org_member))
    error = assert_error(response, 400, "bad_request_error")
    assert "not assigned to team" in error["message"]


def test_key_delete_of_an_org_peers_personal_key_is_403(api, org, org_member):
    peer = UserFactory()
    OrganizationMembershipFactory(organization=org, user=peer)
    key = KeyFactory(user=peer, organization=org)
    response = api.post("/key/delete", {"keys": [key.token]}, key=key_of(org_member))
    assert_error(response, 403, "auth_error")


def test_key_delete_of_another_tenants_key_is_403_and_deletes_nothing(api, team_key, outsider):
    error = assert_error(api.post("/key/delete", {"keys": [team_key.token]}, key=key_of(outsider)), 403, "auth_error")
    assert error["message"] == "You are not authorized to delete this key"
    assert VirtualKey.objects.filter(pk=team_key.pk).exists()


def test_key_delete_of_another_users_key_next_to_an_own_key_is_403_and_deletes_none(api, team_key, outsider):
    mine = KeyFactory(user=outsider)
    response = api.post("/key/delete", {"keys": [mine.token, team_key.token]}, key=key_of(outsider))
    assert_error(response, 403, "auth_error")
    assert VirtualKey.objects.filter(pk__in=[mine.pk, team_key.pk]).count() == 2


@pytest.mark.parametrize("form", [pytest.param("raw", id="raw"), pytest.param("hash", id="hash")])
def test_key_delete_own_personal_key_by_raw_or_hash(api, outsider, form):
    key = KeyFactory(user=outsider)
    value = key.raw if form == "raw" else key.token
    response = api.post("/key/delete", {"keys": [value]}, key=key_of(outsider))
    assert response.json() == {"deleted_keys": [key.token]}
    assert not VirtualKey.objects.filter(pk=key.pk).exists()


def test_key_delete_by_alias(api):
    KeyFactory(key_alias="to-go")
    response = api.post("/key/delete", {"key_aliases": ["to-go"]})
    assert response.json() == {"deleted_keys": ["to-go"]}
    assert not VirtualKey.objects.filter(key_alias="to-go").exists()


def test_key_delete_refusal_of_one_key_deletes_none(api, org, org_member):
    mine = KeyFactory(user=org_member, organization=org)
    peer = UserFactory()
    OrganizationMembershipFactory(organization=org, user=peer)
    theirs = KeyFactory(user=peer, organization=org)
    response = api.post("/key/delete", {"keys": [mine.token, theirs.token]}, key=key_of(org_member))
    assert_error(response, 403, "auth_error")
    assert VirtualKey.objects.filter(pk__in=[mine.pk, theirs.pk]).count() == 2


def test_key_delete_with_one_unknown_key_deletes_none(api, outsider):
    mine = KeyFactory(user=outsider)
    response = api.post("/key/delete", {"keys": [mine.token, "sk-nobody-has-this-key-000"]}, key=key_of(outsider))
    assert_error(response, 404, "not_found_error")
    assert VirtualKey.objects.filter(pk=mine.pk).exists()


def test_key_delete_unknown_key_is_404(api):
    assert_error(api.post("/key/delete", {"keys": ["sk-unknown-key-000000000"]}), 404, "not_found_error")


def test_key_delete_without_keys_is_400(api):
    assert_error(api.post("/key/delete", {}), 400, "bad_request_error", param="keys")


# --- /key/regenerate --------------------------------------------------------------------------


def test_key_regenerate_issues_a_new_secret_and_the_old_one_stops(api, outsider):
    own = key_of(outsider)
    key = KeyFactory(user=outsider)
    response = api.post("/key/regenerate", {"key": key.raw}, key=own)
    assert response.status_code == 200
    body = response.json()
    assert body["key"] != key.raw and body["token_id"] == crypto.hash_secret(body["key"])
    assert_error(api.get("/key/info", key=key.raw), 401, "auth_error")
    assert api.get("/key/info", key=body["key"]).status_code == 200


def test_key_regenerate_with_the_key_in_the_path(api, outsider):
    key = KeyFactory(user=outsider)
    response = api.post(f"/key/{key.token}/regenerate", {}, key=key_of(outsider))
    assert response.status_code == 200
    assert response.json()["token"] != key.token


def test_key_regenerate_custom_new_key(api, outsider):
    key = KeyFactory(user=outsider)
    response = api.post("/key/regenerate", {"key": key.token, "new_key": "sk-my-own-new-secret-1"}, key=key_of(outsider))
    assert response.json()["key"] == "sk-my-own-new-secret-1"


def test_key_regenerate_by_member_without_grant_is_401(api, team_key, member):
    response = api.post("/key/regenerate", {"key": team_key.token}, key=key_of(member))
    assert_error(response, 401, "team_member_permission_error")


def test_key_regenerate_by_org_member_outside_team_is_401(api, team_key, org_member):
    response = api.post("/key/regenerate", {"key": team_key.token}, key=key_of(org_member))
    assert_error(response, 401, "team_member_permission_error")


def test_key_regenerate_of_an_org_peers_personal_key_is_403(api, org, org_member):
    peer = UserFactory()
    OrganizationMembershipFactory(organization=org, user=peer)
    key = KeyFactory(user=peer, organization=org)
    assert_error(api.post("/key/regenerate", {"key": key.token}, key=key_of(org_member)), 403, "auth_error")


def test_key_regenerate_unknown_key_is_404_without_the_secret_in_the_message(api):
    raw = "sk-unknown-regenerate-0001"
    error = assert_error(api.post("/key/regenerate", {"key": raw}), 404, "not_found_error")
    assert raw not in error["message"] and raw not in (error["param"] or "")


def test_key_regenerate_without_key_is_400(api):
    assert_error(api.post("/key/regenerate", {}), 400, "bad_request_error", param="key")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"grace_period": "8d"}, "grace_period", id="grace-period-over-the-maximum"),
        pytest.param({"grace_period": "soon"}, "grace_period", id="grace-period-not-a-duration"),
        pytest.param({"new_key": "sk-x"}, "new_key", id="new-key-too-short"),
    ],
)
def test_key_regenerate_bad_input_is_400(api, outsider, body, param):
    key = KeyFactory(user=outsider)
    response = api.post("/key/regenerate", {"key": key.token, **body}, key=key_of(outsider))
    assert_error(response, 400, "bad_request_error", param=param)


# --- /key/info --------------------------------------------------------------------------------


def test_key_info_without_key_describes_the_calling_key(api, outsider):
    key = KeyFactory(user=outsider)
    response = api.get("/key/info", key=key.raw)
    assert response.status_code == 200
    assert response.json()["key"] == key.token
    assert response.json()["info"]["status"] == "active"
    assert "token" not in response.json()["info"]


@pytest.mark.parametrize("form", [pytest.param("raw", id="raw"), pytest.param("hash", id="hash")])
def test_key_info_accepts_raw_or_hash(api, outsider, form):
    key = KeyFactory(user=outsider, key_alias="info-me")
    value = key.raw if form == "raw" else key.token
    response = api.get("/key/info", {"key": value}, key=key_of(outsider))
    assert response.json()["key"] == key.token
    assert response.json()["info"]["key_alias"] == "info-me"


def test_key_info_of_a_teammates_key_by_any_member_succeeds(api, team_key, org):
    plain_team = team_key.team
    reader = UserFactory()
    TeamMembershipFactory(team=plain_team, user=reader)
    assert api.get("/key/info", {"key": team_key.token}, key=key_of(reader)).status_code == 200


def test_key_info_of_an_org_peers_personal_key_is_403(api, org, org_member):
    peer = UserFactory()
    OrganizationMembershipFactory(organization=org, user=peer)
    key = KeyFactory(user=peer, organization=org)
    assert_error(api.get("/key/info", {"key": key.token}, key=key_of(org_member)), 403, "auth_error")


def test_key_info_of_another_tenants_key_is_403(api, team_key, outsider):
    error = assert_error(api.get("/key/info", {"key": team_key.token}, key=key_of(outsider)), 403, "auth_error")
    assert error["message"].startswith("You are not allowed to access this key's info.")


def test_key_info_random_key_is_404_before_permission(api, outsider):
    error = assert_error(api.get("/key/info", {"key": "sk-random-0000-1111"}, key=key_of(outsider)), 404)
    assert error["type"] == "not_found_error"


def test_key_info_ownerless_keys_do_not_match_each_other(api):
    """LiteLLM's None == None owner match is not copied: a service-account key sees only its own team."""
    mine, theirs = TeamFactory(), TeamFactory()
    service_key = KeyFactory(user=None, team=mine).raw
    other = KeyFactory(user=None, team=theirs)
    assert_error(api.get("/key/info", {"key": other.token}, key=service_key), 403, "auth_error")


def test_key_info_service_account_key_reads_its_own_teams_key(api):
    team = TeamFactory()
    service = KeyFactory(user=None, team=team)
    assert api.get("/key/info", {"key": service.token}, key=service.raw).status_code == 200


def test_key_info_with_master_key_and_no_key_is_400(api):
    assert_error(api.get("/key/info"), 400, "bad_request_error", param="key")


def test_key_info_shows_blocked_status(api):
    key = KeyFactory(blocked=True)
    assert api.get("/key/info", {"key": key.token}).json()["info"]["status"] == "blocked"


def test_key_info_reads_spend_and_budget_reset(api):
    key = KeyFactory(budget_duration="1d", spend=2.5)
    info = api.get("/key/info", {"key": key.token}).json()["info"]
    assert info["spend"] == 2.5 and info["budget_reset_at"] is not None


# --- /key/list --------------------------------------------------------------------------------


def test_key_list_by_internal_user_shows_only_their_own_hashes(api, team_key, outsider):
    own = KeyFactory(user=outsider)
    response = api.get("/key/list", key=own.raw)
    assert response.json() == {"keys": [own.token], "total_count": 1, "current_page": 1, "total_pages": 1}


def test_key_list_return_full_object_returns_rows(api, outsider):
    own = KeyFactory(user=outsider, key_alias="full")
    response = api.get("/key/list", {"return_full_object": "true"}, key=own.raw)
    assert [row["key_alias"] for row in response.json()["keys"]] == ["full"]


def test_key_list_team_admin_with_include_team_keys_sees_team_keys(api, team_key, team_admin):
    response = api.get("/key/list", {"include_team_keys": "true"}, key=key_of(team_admin))
    assert team_key.token in response.json()["keys"]


def test_key_list_member_with_list_grant_sees_team_keys(api, team_key, teammate):
    response = api.get("/key/list", {"include_team_keys": "true"}, key=key_of(teammate))
    assert team_key.token in response.json()["keys"]


def test_key_list_member_without_list_grant_does_not_see_team_keys(api, org):
    team = TeamFactory(organization=org)
    owner, reader = UserFactory(), UserFactory()
    TeamMembershipFactory(team=team, user=owner)
    TeamMembershipFactory(team=team, user=reader)
    key = KeyFactory(user=owner, team=team)
    response = api.get("/key/list", {"include_team_keys": "true"}, key=key_of(reader))
    assert key.token not in response.json()["keys"]


def test_key_list_org_admin_sees_the_orgs_keys_only(api, team_key, org_admin):
    foreign = KeyFactory()
    keys = api.get("/key/list", key=key_of(org_admin)).json()["keys"]
    assert team_key.token in keys and foreign.token not in keys


def test_key_list_admin_paginates(api):
    for _ in range(3):
        KeyFactory()
    body = api.get("/key/list", {"size": 2, "page": 2}).json()
    assert (body["total_count"], body["current_page"], body["total_pages"], len(body["keys"])) == (3, 2, 2, 1)


def test_key_list_filters_by_team(api, team_key):
    KeyFactory()
    assert api.get("/key/list", {"team_id": str(team_key.team_id)}).json()["keys"] == [team_key.token]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        pytest.param({"status": "sleeping"}, "status", id="status-unknown"),
        pytest.param({"size": 101}, "size", id="size-over-100"),
        pytest.param({"page": 0}, "page", id="page-zero"),
    ],
)
def test_key_list_bad_query_is_400(api, query, param):
    assert_error(api.get("/key/list", query), 400, "bad_request_error", param=param)


def test_key_list_query_count_is_pinned(api, outsider, django_assert_num_queries):
    own = key_of(outsider)
    for _ in range(5):
        KeyFactory(user=outsider)
    # key lookup, two for the actor's memberships, count, page
    with django_assert_num_queries(5):
        response = api.get("/key/list", {"return_full_object": "true"}, key=own)
    assert response.json()["total_count"] == 6


# --- /key/block, /key/unblock -----------------------------------------------------------------


def test_key_block_by_team_admin_blocks_and_the_key_is_refused(api, team_key, team_admin):
    response = api.post("/key/block", {"key": team_key.token}, key=key_of(team_admin))
    assert response.status_code == 200
    assert response.json()["blocked"] is True and response.json()["token"] == team_key.token
    error = assert_error(api.get("/key/info", key=team_key.raw), 401, "auth_error")
    assert "blocked" in error["message"]


def test_key_unblock_by_team_admin_restores_the_key(api, team_key, team_admin):
    api.post("/key/block", {"key": team_key.token}, key=key_of(team_admin))
    response = api.post("/key/unblock", {"key": team_key.token}, key=key_of(team_admin))
    assert response.json()["blocked"] is False
    assert api.get("/key/info", key=team_key.raw).status_code == 200


@pytest.mark.parametrize("route", [pytest.param("/key/block", id="block"), pytest.param("/key/unblock", id="unblock")])
def test_key_block_by_member_without_grant_is_401(api, team_key, teammate, route):
    assert_error(api.post(route, {"key": team_key.token}, key=key_of(teammate)), 401, "team_member_permission_error")


def test_key_block_of_an_org_peers_personal_key_is_403(api, org, org_member):
    peer = UserFactory()
    OrganizationMembershipFactory(organization=org, user=peer)
    key = KeyFactory(user=peer, organization=org)
    assert_error(api.post("/key/block", {"key": key.token}, key=key_of(org_member)), 403, "auth_error")
    key.refresh_from_db()
    assert key.blocked is False


@pytest.mark.parametrize("route", [pytest.param("/key/block", id="block"), pytest.param("/key/unblock", id="unblock")])
def test_key_block_unknown_key_is_404(api, route):
    assert_error(api.post(route, {"key": "sk-nobody-here-00000"}), 404, "not_found_error")


@pytest.mark.parametrize("body", [pytest.param({}, id="missing"), pytest.param({"key": 42}, id="not-a-string")])
def test_key_block_bad_input_is_400(api, body):
    assert_error(api.post("/key/block", body), 400, "bad_request_error", param="key")


# --- /key/health ------------------------------------------------------------------------------


def test_key_health_reports_the_calling_key_healthy(api, outsider):
    response = api.post("/key/health", key=key_of(outsider))
    assert response.json() == {"key": "healthy", "logging_callbacks": None}


def test_key_health_without_a_key_is_401(api):
    assert_error(api.post("/key/health", key=None), 401, "auth_error")


def test_key_generate_with_org_header_stamps_the_organization(api, org, org_member):
    response = api.post(
        "/key/generate", {}, key=key_of(org_member), headers={"X-Organization-Id": str(org.pk)}
    )
    assert response.json()["organization_id"] == str(org.pk)


def test_key_access_groups_are_listed_on_both_sides(api, team, team_admin):
    group = AccessGroupFactory()
    key = KeyFactory(user=team_admin, team=team)
    response = api.post(
        "/key/update", {"key": key.token, "access_group_ids": [str(group.pk)]}, key=key_of(team_admin)
    )
    assert response.json()["access_group_ids"] == [str(group.pk)]
    assert KeyAccessGroup.objects.filter(key=key, access_group=group).exists()
    group.refresh_from_db()
    assert list(group.key_assignments.values_list("key__token", flat=True)) == [key.token]
    assert group.assigned_key_count == 1


def test_key_generate_in_foreign_org_header_is_403(api, outsider):
    org = OrganizationFactory()
    response = api.post("/key/generate", {}, key=key_of(outsider), headers={"X-Organization-Id": str(org.pk)})
    assert_error(response, 403, "auth_error")


def test_key_generate_personal_key_with_access_groups_by_internal_user_is_403(api, outsider):
    group = AccessGroupFactory()
    response = api.post("/key/generate", {"access_group_ids": [str(group.pk)]}, key=key_of(outsider))
    assert_error(response, 403, "auth_error")


def test_key_update_blocked_null_unblocks_only_with_the_unblock_grant(api, team_key, teammate):
    VirtualKey.objects.filter(pk=team_key.pk).update(blocked=True)
    response = api.post("/key/update", {"key": team_key.token, "blocked": None}, key=key_of(teammate))
    assert_error(response, 401, "team_member_permission_error")
    team_key.refresh_from_db()
    assert team_key.blocked is True


def test_key_update_of_own_key_by_internal_user_viewer_is_403(api):
    viewer = UserFactory(user_role="internal_user_viewer")
    key = KeyFactory(user=viewer)
    assert_error(api.post("/key/update", {"key": key.token, "key_alias": "x"}, key=key.raw), 403, "auth_error")


def test_key_info_by_admin_viewer_reads_any_key(api, team_key):
    viewer = UserFactory(user_role="proxy_admin_viewer")
    assert api.get("/key/info", {"key": team_key.token}, key=key_of(viewer)).status_code == 200


def test_key_info_query_count_is_pinned(api, team_key, member, django_assert_num_queries):
    own = key_of(member)
    # caller's key, two for the caller's memberships, the key asked about (with team, org and owner)
    with django_assert_num_queries(4):
        assert api.get("/key/info", {"key": team_key.token}, key=own).status_code == 200
