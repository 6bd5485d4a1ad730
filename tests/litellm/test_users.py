"""`/user/*`: creation with a first key, info, the admin upsert of `/user/update`, deletion and listing."""
from __future__ import annotations

import pytest

from keys.models import VirtualKey
from orgs.models import OrganizationMembership, TeamMembership, User
from tests.factories import KeyFactory, OrganizationMembershipFactory, TeamFactory, UserFactory
from tests.litellm.conftest import assert_error, key_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_member(org):
    user = UserFactory()
    OrganizationMembershipFactory(organization=org, user=user)
    return user


# --- /user/new --------------------------------------------------------------------------------


def test_user_new_creates_the_user_and_a_working_key(api):
    response = api.post("/user/new", {"user_id": "ann@example.test", "user_email": "ann@example.test",
                                      "models": ["openai/gpt-4o"]})
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == "ann@example.test" and body["user_role"] == "internal_user"
    assert body["key"].startswith("sk-") and body["models"] == ["openai/gpt-4o"]
    assert "password" not in body
    assert api.get("/key/info", key=body["key"]).json()["info"]["user_id"] == "ann@example.test"


def test_user_new_without_user_id_generates_one(api):
    body = api.post("/user/new", {}).json()
    assert User.objects.filter(user_id=body["user_id"]).exists()


def test_user_new_with_auto_create_key_false_makes_no_key(api):
    body = api.post("/user/new", {"user_id": "nokey@example.test", "auto_create_key": False}).json()
    assert body["key"] is None
    assert not VirtualKey.objects.filter(user__user_id="nokey@example.test").exists()


def test_user_new_with_team_id_adds_the_user_to_the_team_and_binds_the_key(api, team):
    body = api.post("/user/new", {"user_id": "teamed@example.test", "team_id": str(team.team_id)}).json()
    assert TeamMembership.objects.get(team=team, user__user_id="teamed@example.test").role == "user"
    assert VirtualKey.objects.get(token=body["token"]).team == team
    assert body["team_id"] == str(team.team_id)


def test_user_new_by_org_admin_adds_the_user_to_their_org(api, org, org_admin):
    response = api.post("/user/new", {"user_id": "hire@example.test", "organization_id": str(org.pk)},
                        key=key_of(org_admin))
    assert response.status_code == 200
    assert OrganizationMembership.objects.filter(organization=org, user__user_id="hire@example.test").exists()
    assert VirtualKey.objects.get(token=response.json()["token"]).organization == org


def test_user_new_by_org_admin_with_models_beyond_the_org_is_403(api, org, org_admin):
    response = api.post("/user/new", {"organization_id": str(org.pk), "models": ["mistral/large"]},
                        key=key_of(org_admin))
    assert_error(response, 403, "auth_error", param="models")


def test_user_new_proxy_admin_role_by_org_admin_is_403(api, org, org_admin):
    response = api.post("/user/new", {"organization_id": str(org.pk), "user_role": "proxy_admin"},
                        key=key_of(org_admin))
    assert_error(response, 403, "auth_error")


def test_user_new_by_internal_user_is_401(api, outsider):
    assert_error(api.post("/user/new", {"user_id": "x"}, key=key_of(outsider)), 401, "auth_error")


def test_user_new_duplicate_user_id_is_409(api, outsider):
    assert_error(api.post("/user/new", {"user_id": outsider.user_id}), 409, param="user_id")


def test_user_new_duplicate_email_is_409(api):
    UserFactory(user_email="dup@example.test")
    assert_error(api.post("/user/new", {"user_email": "dup@example.test"}), 409, param="user_email")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"password": "hunter2hunter2"}, "password", id="password-rejected"),
        pytest.param({"user_role": "org_admin"}, "user_role", id="role-not-a-platform-role"),
        pytest.param({"user_email": "not-an-email"}, "user_email", id="bad-email"),
        pytest.param({"teams": "abc"}, "teams", id="teams-not-a-list"),
        pytest.param({"auto_create_key": "sometimes"}, "auto_create_key", id="auto-create-key-not-boolean"),
    ],
)
def test_user_new_bad_input_is_400_naming_the_field(api, body, param):
    assert_error(api.post("/user/new", body), 400, "bad_request_error", param=param)


def test_user_new_with_unknown_team_is_400(api):
    response = api.post("/user/new", {"team_id": "4d6b7f2a-6a8e-4e5b-9a49-000000000000"})
    assert_error(response, 400, "bad_request_error", param="team_id")
    assert not User.objects.exclude(user_id="default_user_id").exists()  # nothing but the master key's user


# --- /user/info -------------------------------------------------------------------------------


def test_user_info_of_self_shows_keys_and_teams(api, team, member):
    key = KeyFactory(user=member, team=team)
    own = key_of(member)
    body = api.get("/user/info", key=own).json()
    assert body["user_id"] == member.user_id
    assert body["user_info"]["teams"] == [str(team.team_id)]
    assert {k["token"] for k in body["keys"]} >= {key.token}
    assert [t["team_id"] for t in body["teams"]] == [str(team.team_id)]
    assert all("key" not in row for row in body["keys"])


def test_user_info_by_admin_viewer_reads_anyone(api, outsider):
    viewer = UserFactory(user_role="proxy_admin_viewer")
    assert api.get("/user/info", {"user_id": outsider.user_id}, key=key_of(viewer)).status_code == 200


def test_user_info_of_an_org_peer_is_403(api, org_member, org):
    peer = UserFactory()
    OrganizationMembershipFactory(organization=org, user=peer)
    assert_error(api.get("/user/info", {"user_id": peer.user_id}, key=key_of(org_member)), 403, "auth_error")


def test_user_info_of_a_user_in_another_tenant_is_403(api, outsider, member):
    assert_error(api.get("/user/info", {"user_id": member.user_id}, key=key_of(outsider)), 403, "auth_error")


def test_user_info_of_an_unknown_user_by_a_non_admin_is_the_same_403(api, outsider, member):
    """Decided before existence: a non-admin cannot tell a real user id from an unknown one."""
    real = api.get("/user/info", {"user_id": member.user_id}, key=key_of(outsider))
    ghost = api.get("/user/info", {"user_id": "ghost@example.test"}, key=key_of(outsider))
    assert real.status_code == ghost.status_code == 403
    assert real.json()["error"]["type"] == ghost.json()["error"]["type"] == "auth_error"


def test_user_info_of_an_unknown_user_by_an_org_admin_is_403(api, org_admin):
    assert_error(api.get("/user/info", {"user_id": "ghost@example.test"}, key=key_of(org_admin)), 403, "auth_error")


def test_user_info_by_org_admin_of_their_member(api, org_admin, org_member):
    assert api.get("/user/info", {"user_id": org_member.user_id}, key=key_of(org_admin)).status_code == 200


def test_user_info_unknown_user_is_404(api):
    assert_error(api.get("/user/info", {"user_id": "ghost@example.test"}), 404, "not_found_error", param="user_id")


def test_user_info_by_service_account_key_without_user_id_is_400(api, team):
    service = KeyFactory(user=None, team=team).raw
    assert_error(api.get("/user/info", key=service), 400, "bad_request_error", param="user_id")


# --- /user/update -----------------------------------------------------------------------------


def test_user_update_of_self_changes_alias(api, outsider):
    response = api.post("/user/update", {"user_id": outsider.user_id, "user_alias": "Out"}, key=key_of(outsider))
    assert response.status_code == 200
    assert response.json() == {"user_id": outsider.user_id, "data": response.json()["data"]}
    assert response.json()["data"]["user_alias"] == "Out"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"max_budget": 1000}, id="budget"),
        pytest.param({"spend": 0}, id="spend"),
        pytest.param({"models": ["openai/gpt-4o"]}, id="models"),
        pytest.param({"user_role": "proxy_admin"}, id="role"),
    ],
)
def test_user_update_of_own_limits_or_role_is_403(api, outsider, change):
    response = api.post("/user/update", {"user_id": outsider.user_id, **change}, key=key_of(outsider))
    assert_error(response, 403, "auth_error")


def test_user_update_of_an_org_peer_is_403(api, org, org_member):
    peer = UserFactory()
    OrganizationMembershipFactory(organization=org, user=peer)
    response = api.post("/user/update", {"user_id": peer.user_id, "user_alias": "x"}, key=key_of(org_member))
    assert_error(response, 403, "auth_error")


def test_user_update_of_a_members_platform_budget_by_org_admin_is_403(api, org_admin, org_member):
    # A user's own budget is account-level: proxy admins set it (their membership budget is the org's).
    response = api.post("/user/update", {"user_id": org_member.user_id, "max_budget": 50}, key=key_of(org_admin))
    assert_error(response, 403, "auth_error")
    org_member.refresh_from_db()
    assert org_member.max_budget is None


def test_user_update_by_admin_upserts_a_missing_user(api):
    response = api.post("/user/update", {"user_id": "litellm-proxy-budget", "spend": 0})
    assert response.status_code == 200
    assert User.objects.filter(user_id="litellm-proxy-budget").exists()


def test_user_update_of_a_missing_user_by_non_admin_is_404(api, outsider):
    response = api.post("/user/update", {"user_id": "ghost@example.test", "user_alias": "x"}, key=key_of(outsider))
    assert_error(response, 404, "not_found_error", param="user_id")
    assert not User.objects.filter(user_id="ghost@example.test").exists()


def test_user_update_by_email_finds_the_user(api):
    user = UserFactory(user_email="mail@example.test")
    api.post("/user/update", {"user_email": "mail@example.test", "user_alias": "Mail"})
    user.refresh_from_db()
    assert user.user_alias == "Mail"


def test_user_update_by_admin_changes_role(api, outsider):
    api.post("/user/update", {"user_id": outsider.user_id, "user_role": "internal_user_viewer"})
    outsider.refresh_from_db()
    assert outsider.user_role == "internal_user_viewer"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"user_alias": "x"}, "user_id", id="no-user"),
        pytest.param({"user_id": "u", "max_budget": "lots"}, "max_budget", id="budget-not-a-number"),
        pytest.param({"user_id": "u", "user_role": "root"}, "user_role", id="unknown-role"),
        pytest.param({"user_id": "u", "password": "short"}, "password", id="password-too-short"),
    ],
)
def test_user_update_bad_input_is_400_naming_the_field(api, body, param):
    assert_error(api.post("/user/update", body), 400, "bad_request_error", param=param)


# --- /user/delete -----------------------------------------------------------------------------


def test_user_delete_by_admin_deletes_the_user_and_their_keys(api, outsider):
    key = KeyFactory(user=outsider)
    response = api.post("/user/delete", {"user_ids": [outsider.user_id]})
    assert response.json() == {"deleted_users": [outsider.user_id]}
    assert not User.objects.filter(pk=outsider.pk).exists()
    assert not VirtualKey.objects.filter(pk=key.pk).exists()


def test_user_delete_by_org_admin_of_their_member_is_403(api, org_admin, org_member):
    # Deleting an account is account-level (SPEC §2): an org admin removes the member from the org instead.
    response = api.post("/user/delete", {"user_ids": [org_member.user_id]}, key=key_of(org_admin))
    assert_error(response, 403, "auth_error")
    assert User.objects.filter(pk=org_member.pk).exists()


def test_user_delete_by_internal_user_is_403(api, org, org_member):
    peer = UserFactory()
    OrganizationMembershipFactory(organization=org, user=peer)
    assert_error(api.post("/user/delete", {"user_ids": [peer.user_id]}, key=key_of(org_member)), 403, "auth_error")


def test_user_delete_of_a_user_in_another_tenant_is_404(api, outsider, member):
    assert_error(api.post("/user/delete", {"user_ids": [member.user_id]}, key=key_of(outsider)), 404)


def test_user_delete_unknown_user_is_404_and_deletes_none(api, outsider):
    response = api.post("/user/delete", {"user_ids": [outsider.user_id, "ghost@example.test"]})
    assert_error(response, 404, "not_found_error")
    assert User.objects.filter(pk=outsider.pk).exists()


def test_user_delete_without_user_ids_is_400(api):
    assert_error(api.post("/user/delete", {}), 400, "bad_request_error", param="user_ids")


# --- /user/list -------------------------------------------------------------------------------


def test_user_list_by_admin_pages_users_with_key_counts(api, outsider):
    KeyFactory(user=outsider)
    KeyFactory(user=outsider)
    body = api.get("/user/list", {"user_ids": outsider.user_id}).json()
    assert (body["total"], body["page"], body["page_size"], body["total_pages"]) == (1, 1, 25, 1)
    assert body["users"][0]["user_id"] == outsider.user_id and body["users"][0]["key_count"] == 2


def test_user_list_by_org_admin_shows_only_their_members(api, org_admin, org_member, outsider):
    users = api.get("/user/list", key=key_of(org_admin)).json()["users"]
    assert {u["user_id"] for u in users} == {org_admin.user_id, org_member.user_id}


def test_user_list_by_internal_user_is_403(api, outsider):
    assert_error(api.get("/user/list", key=key_of(outsider)), 403, "auth_error")


def test_user_list_filters_by_role_and_team(api):
    team = TeamFactory()
    viewer = UserFactory(user_role="internal_user_viewer")
    api.post("/team/member_add", {"team_id": str(team.team_id), "member": {"user_id": viewer.user_id}})
    assert [u["user_id"] for u in api.get("/user/list", {"role": "internal_user_viewer"}).json()["users"]] == [
        viewer.user_id
    ]
    assert [u["user_id"] for u in api.get("/user/list", {"team": str(team.team_id)}).json()["users"]] == [
        viewer.user_id
    ]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        pytest.param({"page_size": 101}, "page_size", id="page-size-over-100"),
        pytest.param({"role": "root"}, "role", id="unknown-role"),
        pytest.param({"sort_by": "password"}, "sort_by", id="unsortable-field"),
    ],
)
def test_user_list_bad_query_is_400(api, query, param):
    assert_error(api.get("/user/list", query), 400, "bad_request_error", param=param)


def test_user_list_query_count_is_pinned(api, django_assert_num_queries):
    for _ in range(5):
        KeyFactory(user=UserFactory())
    api.get("/user/list")  # the master user row exists from here on
    # master user, two for the actor's memberships, count, page, org memberships, team memberships
    with django_assert_num_queries(7):
        response = api.get("/user/list")
    assert response.json()["total"] == 6
