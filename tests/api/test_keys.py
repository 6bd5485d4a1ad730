"""`/api/v1/keys/`: the raw key is shown once; team members act on team keys only as `member_permissions` allow."""
from __future__ import annotations

import pytest

from keys.models import VirtualKey
from orgs import services as org_services
from tests.api.conftest import error_of
from tests.factories import AccessGroupFactory, KeyFactory, TeamMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_key_create_returns_the_raw_key_once(client_for):
    user = UserFactory()
    client = client_for(KeyFactory(user=user).raw)

    created = client.post("/api/v1/keys/", {"key_alias": "laptop"}, format="json")
    shown = client.get(f"/api/v1/keys/{created.json()['token']}/")

    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("sk-") and body["token"] == body["token_id"] != body["key"]
    assert body["user_id"] == user.user_id
    assert "key" not in shown.json()
    assert shown.json()["key_name"] == f"sk-...{body['key'][-4:]}"


def test_key_create_works_as_a_credential_at_once(client_for):
    created = client_for(KeyFactory(user=UserFactory()).raw).post("/api/v1/keys/", {}, format="json")

    assert client_for(created.json()["key"]).get("/api/v1/keys/").status_code == 200


def test_key_create_for_another_user_by_non_admin_is_refused(client_for):
    response = client_for(KeyFactory(user=UserFactory()).raw).post(
        "/api/v1/keys/", {"user_id": UserFactory().user_id}, format="json"
    )

    assert response.status_code == 403


def test_key_create_for_an_unknown_user_by_non_admin_answers_like_for_an_existing_one(client_for):
    client = client_for(KeyFactory(user=UserFactory()).raw)

    unknown = client.post("/api/v1/keys/", {"user_id": "ghost@example.test"}, format="json")
    existing = client.post("/api/v1/keys/", {"user_id": UserFactory().user_id}, format="json")

    assert (unknown.status_code, existing.status_code) == (403, 403)


def test_key_create_by_admin_without_owner_or_team_is_ownerless(master, client_for):
    response = client_for(master).post("/api/v1/keys/", {}, format="json")

    assert response.status_code == 201
    assert (response.json()["user_id"], response.json()["team_id"]) == (None, None)


def test_key_create_in_team_by_member_without_the_grant_is_a_401_team_member_permission_error(tenant_a, client_for):
    response = client_for(tenant_a.team_key.raw).post(
        "/api/v1/keys/", {"team_id": str(tenant_a.team.pk)}, format="json"
    )

    assert response.status_code == 401
    assert error_of(response)["type"] == "team_member_permission_error"


def test_key_create_in_team_by_member_with_the_grant_is_allowed(tenant_a, client_for):
    org_services.team_permissions_update(actor=None, team=tenant_a.team, permissions=["/key/generate"])

    response = client_for(tenant_a.team_key.raw).post(
        "/api/v1/keys/", {"team_id": str(tenant_a.team.pk)}, format="json"
    )

    assert response.status_code == 201
    assert (response.json()["team_id"], response.json()["organization_id"]) == (
        str(tenant_a.team.pk), str(tenant_a.org.pk)
    )


def test_key_create_in_team_for_a_non_member_is_a_400(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/keys/", {"team_id": str(tenant_a.team.pk), "user_id": tenant_a.admin.user_id}, format="json"
    )

    assert response.status_code == 400


def test_key_create_in_another_tenants_team_is_a_404(tenant_a, tenant_b, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/keys/", {"team_id": str(tenant_b.team.pk)}, format="json"
    )

    assert response.status_code == 404
    assert error_of(response)["param"] == "team_id"


def test_key_create_beyond_the_teams_models_is_refused(tenant_a, client_for):
    org_services.team_update(actor=None, team=tenant_a.team, data={"models": ["openai/gpt-4o"]})
    org_services.team_permissions_update(actor=None, team=tenant_a.team, permissions=["/key/generate"])

    response = client_for(tenant_a.team_key.raw).post(
        "/api/v1/keys/", {"team_id": str(tenant_a.team.pk), "models": ["openai/gpt-5"]}, format="json"
    )

    assert response.status_code == 403
    assert error_of(response)["param"] == "models"


def test_key_create_of_a_personal_key_with_access_groups_by_non_admin_is_refused(client_for):
    response = client_for(KeyFactory(user=UserFactory()).raw).post(
        "/api/v1/keys/", {"access_group_ids": [str(AccessGroupFactory().pk)]}, format="json"
    )

    assert response.status_code == 403


def test_key_update_of_own_alias_is_saved(client_for):
    own = KeyFactory(user=UserFactory())

    response = client_for(own.raw).patch(f"/api/v1/keys/{own.token}/", {"key_alias": "renamed"}, format="json")

    assert response.status_code == 200
    assert response.json()["key_alias"] == "renamed"


@pytest.mark.parametrize("body", [{"max_budget": 1000}, {"spend": 0}], ids=["budget", "spend"])
def test_key_update_of_own_budget_by_non_admin_is_refused(client_for, body):
    own = KeyFactory(user=UserFactory(), max_budget=1)

    response = client_for(own.raw).patch(f"/api/v1/keys/{own.token}/", body, format="json")

    assert response.status_code == 403
    own.refresh_from_db()
    assert own.max_budget == 1


def test_key_update_moving_own_key_to_another_owner_is_refused(client_for):
    own = KeyFactory(user=UserFactory())

    response = client_for(own.raw).patch(
        f"/api/v1/keys/{own.token}/", {"user_id": UserFactory().user_id}, format="json"
    )

    assert response.status_code == 403


def test_key_update_of_a_team_key_by_team_admin_may_set_budget(tenant_a, client_for):
    admin = UserFactory()
    TeamMembershipFactory(team=tenant_a.team, user=admin, role="admin")

    response = client_for(KeyFactory(user=admin).raw).patch(
        f"/api/v1/keys/{tenant_a.team_key.token}/", {"max_budget": 5}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["max_budget"] == 5


def test_key_update_with_a_malformed_duration_is_a_400_naming_it(client_for):
    own = KeyFactory(user=UserFactory())

    response = client_for(own.raw).patch(f"/api/v1/keys/{own.token}/", {"duration": "forever"}, format="json")

    assert response.status_code == 400
    assert error_of(response)["param"] == "duration"


def test_key_block_refuses_the_key_from_the_next_request(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(f"/api/v1/keys/{tenant_a.team_key.token}/block/")

    assert response.status_code == 200
    assert response.json()["blocked"] is True
    assert client_for(tenant_a.team_key.raw).get("/api/v1/keys/").status_code == 401


def test_key_block_by_team_member_without_the_grant_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.team_key.raw).post(f"/api/v1/keys/{tenant_a.team_key.token}/block/")

    assert response.status_code == 401
    assert error_of(response)["type"] == "team_member_permission_error"


def test_key_unblock_lets_the_key_in_again(tenant_a, client_for):
    admin = client_for(tenant_a.admin_key.raw, tenant_a.org)
    admin.post(f"/api/v1/keys/{tenant_a.team_key.token}/block/")

    response = admin.post(f"/api/v1/keys/{tenant_a.team_key.token}/unblock/")

    assert response.json()["blocked"] is False
    assert client_for(tenant_a.team_key.raw).get("/api/v1/keys/").status_code == 200


def test_key_regenerate_shows_a_new_secret_once_and_refuses_the_old(client_for):
    own = KeyFactory(user=UserFactory())

    response = client_for(own.raw).post(f"/api/v1/keys/{own.token}/regenerate/")

    assert response.status_code == 200
    assert response.json()["key"] != own.raw
    assert client_for(own.raw).get("/api/v1/keys/").status_code == 401
    assert client_for(response.json()["key"]).get("/api/v1/keys/").status_code == 200


def test_key_delete_of_own_key_removes_it(client_for):
    user = UserFactory()
    own, other = KeyFactory(user=user), KeyFactory(user=user)

    response = client_for(own.raw).delete(f"/api/v1/keys/{other.token}/")

    assert response.status_code == 204
    assert not VirtualKey.objects.filter(pk=other.pk).exists()


def test_key_list_of_team_member_shows_own_keys_not_the_teams(tenant_a, client_for):
    colleague = UserFactory()
    TeamMembershipFactory(team=tenant_a.team, user=colleague)
    KeyFactory(user=colleague, team=tenant_a.team)

    response = client_for(tenant_a.team_key.raw).get("/api/v1/keys/")

    assert [k["token"] for k in response.json()["results"]] == [tenant_a.team_key.token]


def test_key_list_of_team_member_with_the_list_grant_shows_the_teams_keys(tenant_a, client_for):
    colleague = UserFactory()
    TeamMembershipFactory(team=tenant_a.team, user=colleague)
    theirs = KeyFactory(user=colleague, team=tenant_a.team)
    org_services.team_permissions_update(actor=None, team=tenant_a.team, permissions=["/key/list"])

    response = client_for(tenant_a.team_key.raw).get("/api/v1/keys/")

    assert {k["token"] for k in response.json()["results"]} == {tenant_a.team_key.token, theirs.token}


def test_key_list_filters_by_alias(client_for):
    user = UserFactory()
    wanted = KeyFactory(user=user, key_alias="wanted")
    KeyFactory(user=user, key_alias="other")

    response = client_for(wanted.raw).get("/api/v1/keys/?key_alias=wanted")

    assert [k["token"] for k in response.json()["results"]] == [wanted.token]


def test_key_list_with_a_malformed_filter_is_a_400_naming_it(client_for):
    response = client_for(KeyFactory(user=UserFactory()).raw).get("/api/v1/keys/?team_id=" + "x" * 129)

    assert response.status_code == 400
    assert error_of(response)["param"] == "team_id"


# --- key_type and allowed_routes (SPEC §2) --------------------------------------------------------------


def test_key_create_with_key_type_and_allowed_routes_returns_them(client_for):
    client = client_for(KeyFactory(user=UserFactory()).raw)

    body = client.post("/api/v1/keys/", {"key_type": "read_only", "allowed_routes": ["/api/v1/keys"]},
                       format="json").json()

    assert (body["key_type"], body["allowed_routes"]) == ("read_only", ["/api/v1/keys"])
    assert VirtualKey.objects.get(token=body["token"]).key_type == "read_only"


def test_key_read_shows_key_type_and_allowed_routes(client_for):
    user = UserFactory()
    key = KeyFactory(user=user, key_type="llm_api", allowed_routes=["llm_api_routes"])

    body = client_for(KeyFactory(user=user).raw).get(f"/api/v1/keys/{key.token}/").json()

    assert (body["key_type"], body["allowed_routes"]) == ("llm_api", ["llm_api_routes"])


def test_key_patch_sets_key_type(client_for):
    user = UserFactory()
    key = KeyFactory(user=user)

    response = client_for(KeyFactory(user=user).raw).patch(f"/api/v1/keys/{key.token}/", {"key_type": "management"},
                                                           format="json")

    assert (response.status_code, response.json()["key_type"]) == (200, "management")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"key_type": "root"}, "key_type", id="unknown-key-type"),
        pytest.param({"allowed_routes": ["no-slash"]}, "allowed_routes", id="not-a-route"),
    ],
)
def test_key_create_with_bad_routes_is_400_naming_the_field(client_for, body, param):
    response = client_for(KeyFactory(user=UserFactory()).raw).post("/api/v1/keys/", body, format="json")

    assert (response.status_code, error_of(response)["param"]) == (400, param)


def test_key_list_by_llm_api_key_is_403_key_route_access_denied(client_for):
    response = client_for(KeyFactory(user=UserFactory(), key_type="llm_api").raw).get("/api/v1/keys/")

    assert (response.status_code, error_of(response)["type"]) == (403, "key_route_access_denied")


def test_key_list_by_read_only_key_is_allowed(client_for):
    assert client_for(KeyFactory(user=UserFactory(), key_type="read_only").raw).get("/api/v1/keys/").status_code == 200


def test_key_patch_by_read_only_key_is_403_and_changes_nothing(client_for):
    key = KeyFactory(user=UserFactory(), key_type="read_only")

    response = client_for(key.raw).patch(f"/api/v1/keys/{key.token}/", {"key_alias": "x"}, format="json")

    assert (response.status_code, error_of(response)["type"]) == (403, "key_route_access_denied")
    key.refresh_from_db()
    assert key.key_alias is None


def test_key_patch_widening_the_calling_key_itself_is_403(client_for):
    key = KeyFactory(user=UserFactory(), key_type="management")

    response = client_for(key.raw).patch(f"/api/v1/keys/{key.token}/", {"key_type": "default"}, format="json")

    assert response.status_code == 403
    key.refresh_from_db()
    assert key.key_type == "management"
