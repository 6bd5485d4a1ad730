"""`/team/*`: creation with the caller as admin, member management, member permissions, tenant scoping."""
from __future__ import annotations

import pytest

from keys.models import VirtualKey
from orgs.models import Team, TeamMembership, User
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

MISSING_ID = "9b2f7f7e-0c1d-4d8e-8a55-000000000000"


@pytest.fixture
def org_member(org):
    user = UserFactory()
    OrganizationMembershipFactory(organization=org, user=user)
    return user


# --- /team/new --------------------------------------------------------------------------------


def test_team_new_by_master_adds_default_user_id_as_admin(api):
    response = api.post("/team/new", {"team_alias": "core", "models": ["openai/gpt-4o"]})
    assert response.status_code == 200
    body = response.json()
    assert body["team_alias"] == "core" and body["organization_id"] is None
    assert {"user_id": "default_user_id", "user_email": None, "role": "admin"} in body["members_with_roles"]
    assert body["team_member_permissions"] == ["/key/info", "/key/health"]


def test_team_new_members_with_roles_creates_missing_users(api):
    response = api.post(
        "/team/new",
        {"team_alias": "t", "members_with_roles": [{"user_id": "fresh@example.test", "role": "user"}]},
    )
    roles = {m["user_id"]: m["role"] for m in response.json()["members_with_roles"]}
    assert roles == {"fresh@example.test": "user", "default_user_id": "admin"}
    assert User.objects.filter(user_id="fresh@example.test").exists()


def test_team_new_by_org_admin_inside_their_org_makes_them_admin(api, org, org_admin):
    response = api.post(
        "/team/new", {"team_alias": "org-team", "organization_id": str(org.pk)}, key=key_of(org_admin)
    )
    assert response.status_code == 200
    assert response.json()["organization_id"] == str(org.pk)
    assert response.json()["members_with_roles"] == [
        {"user_id": org_admin.user_id, "user_email": org_admin.user_email, "role": "admin"}
    ]


def test_team_new_by_org_admin_in_another_org_is_400_like_a_missing_org(api, org_admin):
    other = OrganizationFactory()
    response = api.post("/team/new", {"organization_id": str(other.pk)}, key=key_of(org_admin))
    assert_error(response, 400, "bad_request_error", param="organization_id")
    assert not Team.objects.filter(organization=other).exists()


def test_team_new_by_org_admin_outside_any_org_is_401(api, org_admin):
    assert_error(api.post("/team/new", {"team_alias": "global"}, key=key_of(org_admin)), 401, "auth_error")


def test_team_new_by_internal_user_is_401(api, outsider):
    assert_error(api.post("/team/new", {"team_alias": "x"}, key=key_of(outsider)), 401, "auth_error")


def test_team_new_by_admin_viewer_is_403(api):
    viewer = UserFactory(user_role="proxy_admin_viewer")
    assert_error(api.post("/team/new", {"team_alias": "x"}, key=key_of(viewer)), 403, "auth_error")


def test_team_new_with_models_beyond_the_org_is_400(api, org, org_admin):
    response = api.post(
        "/team/new", {"organization_id": str(org.pk), "models": ["mistral/large"]}, key=key_of(org_admin)
    )
    assert_error(response, 400, "bad_request_error", param="models")


def test_team_new_duplicate_team_id_is_400(api, team):
    assert_error(api.post("/team/new", {"team_id": str(team.team_id)}), 400, "bad_request_error", param="team_id")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"team_alias": 5}, "team_alias", id="alias-not-a-string"),
        pytest.param({"models": "gpt"}, "models", id="models-not-a-list"),
        pytest.param({"team_member_permissions": ["/key/everything"]}, "team_member_permissions.0", id="bad-permission"),
        pytest.param({"members_with_roles": [{"user_id": "a", "role": "owner"}]}, "members_with_roles.0.role",
                     id="bad-role"),
        pytest.param({"max_budget": -3}, "max_budget", id="negative-budget"),
    ],
)
def test_team_new_bad_input_is_400_naming_the_field(api, body, param):
    assert_error(api.post("/team/new", body), 400, "bad_request_error", param=param)


# --- /team/update -----------------------------------------------------------------------------


def test_team_update_by_team_admin_changes_alias(api, team, team_admin):
    response = api.post("/team/update", {"team_id": str(team.team_id), "team_alias": "renamed"}, key=key_of(team_admin))
    assert response.status_code == 200
    assert response.json()["team_id"] == str(team.team_id)
    assert response.json()["data"]["team_alias"] == "renamed"


def test_team_update_models_by_team_admin_is_403(api, team, team_admin):
    response = api.post(
        "/team/update", {"team_id": str(team.team_id), "models": ["openai/o1"]}, key=key_of(team_admin)
    )
    assert_error(response, 403, "auth_error")


def test_team_update_models_by_org_admin_within_the_org_succeeds(api, team, org_admin):
    response = api.post(
        "/team/update", {"team_id": str(team.team_id), "models": ["openai/o1"]}, key=key_of(org_admin)
    )
    assert response.json()["data"]["models"] == ["openai/o1"]


def test_team_update_models_beyond_the_org_is_400(api, team, org_admin):
    response = api.post(
        "/team/update", {"team_id": str(team.team_id), "models": ["mistral/large"]}, key=key_of(org_admin)
    )
    assert_error(response, 400, "bad_request_error", param="models")


def test_team_update_by_member_is_403(api, team, member):
    response = api.post("/team/update", {"team_id": str(team.team_id), "team_alias": "x"}, key=key_of(member))
    assert_error(response, 403, "auth_error")


def test_team_update_of_another_tenants_team_is_404(api, team, outsider):
    response = api.post("/team/update", {"team_id": str(team.team_id), "team_alias": "x"}, key=key_of(outsider))
    assert_error(response, 404, "not_found_error", param="team_id")


def test_team_update_unknown_team_is_404(api):
    assert_error(api.post("/team/update", {"team_id": MISSING_ID}), 404, "not_found_error")


def test_team_update_without_team_id_is_400(api):
    assert_error(api.post("/team/update", {"team_alias": "x"}), 400, "bad_request_error", param="team_id")


# --- /team/delete -----------------------------------------------------------------------------


def test_team_delete_by_org_admin_deletes_the_team_and_its_keys(api, team, member, org_admin):
    key = KeyFactory(user=member, team=team)
    response = api.post("/team/delete", {"team_ids": [str(team.team_id)]}, key=key_of(org_admin))
    assert response.json() == {"deleted_teams": [str(team.team_id)]}
    assert not Team.objects.filter(pk=team.pk).exists()
    assert not VirtualKey.objects.filter(pk=key.pk).exists()


def test_team_delete_by_team_admin_is_401(api, team, team_admin):
    assert_error(api.post("/team/delete", {"team_ids": [str(team.team_id)]}, key=key_of(team_admin)), 401, "auth_error")


def test_team_delete_of_another_tenants_team_is_404(api, team, outsider):
    response = api.post("/team/delete", {"team_ids": [str(team.team_id)]}, key=key_of(outsider))
    assert_error(response, 404, "not_found_error")


def test_team_delete_with_one_unknown_team_deletes_none(api, team):
    response = api.post("/team/delete", {"team_ids": [str(team.team_id), MISSING_ID]})
    assert_error(response, 404, "not_found_error")
    assert Team.objects.filter(pk=team.pk).exists()


@pytest.mark.parametrize("body", [pytest.param({}, id="missing"), pytest.param({"team_ids": []}, id="empty"),
                                  pytest.param({"team_ids": "abc"}, id="not-a-list")])
def test_team_delete_bad_input_is_400(api, body):
    assert_error(api.post("/team/delete", body), 400, "bad_request_error", param="team_ids")


# --- /team/info -------------------------------------------------------------------------------


def test_team_info_by_member_shows_keys_and_memberships(api, team, member, team_admin):
    key = KeyFactory(user=team_admin, team=team)
    response = api.get("/team/info", {"team_id": str(team.team_id)}, key=key_of(member))
    assert response.status_code == 200
    body = response.json()
    assert body["team_info"]["team_id"] == str(team.team_id)
    assert [k["token"] for k in body["keys"]] == [key.token]
    assert {m["user_id"] for m in body["team_memberships"]} == {member.user_id, team_admin.user_id}


def test_team_info_by_service_account_key_of_the_team(api, team):
    service = KeyFactory(user=None, team=team).raw
    assert api.get("/team/info", {"team_id": str(team.team_id)}, key=service).status_code == 200


def test_team_info_by_org_member_outside_the_team_is_403(api, team, org_member):
    assert_error(api.get("/team/info", {"team_id": str(team.team_id)}, key=key_of(org_member)), 403, "auth_error")


def test_team_info_of_another_tenants_team_is_404(api, team, outsider):
    assert_error(api.get("/team/info", {"team_id": str(team.team_id)}, key=key_of(outsider)), 404, "not_found_error")


def test_team_info_unknown_team_is_404(api):
    assert_error(api.get("/team/info", {"team_id": MISSING_ID}), 404, "not_found_error")


def test_team_info_without_team_id_is_400(api):
    assert_error(api.get("/team/info"), 400, "bad_request_error", param="team_id")


# --- /team/list -------------------------------------------------------------------------------


def test_team_list_by_admin_returns_an_array_sorted_by_alias(api):
    TeamFactory(team_alias="b-team")
    TeamFactory(team_alias="a-team")
    response = api.get("/team/list")
    assert [t["team_alias"] for t in response.json()] == ["a-team", "b-team"]
    assert all("team_memberships" in t and "keys" in t for t in response.json())


def test_team_list_by_internal_user_shows_their_teams(api, team, member):
    TeamFactory()
    assert [t["team_id"] for t in api.get("/team/list", key=key_of(member)).json()] == [str(team.team_id)]


def test_team_list_for_another_user_by_internal_user_is_401(api, member, outsider):
    response = api.get("/team/list", {"user_id": outsider.user_id}, key=key_of(member))
    assert_error(response, 401, "auth_error")


def test_team_list_by_org_admin_shows_the_orgs_teams(api, team, org_admin):
    TeamFactory()
    assert [t["team_id"] for t in api.get("/team/list", key=key_of(org_admin)).json()] == [str(team.team_id)]


def test_team_list_filters_by_user_and_organization(api, team, member):
    TeamFactory(organization=team.organization)
    assert len(api.get("/team/list", {"user_id": member.user_id}).json()) == 1
    assert len(api.get("/team/list", {"organization_id": str(team.organization_id)}).json()) == 2
    TeamFactory()
    assert len(api.get("/team/list", {"organization_id": "default_organization"}).json()) == 1


def test_team_list_query_count_is_pinned(api, django_assert_num_queries):
    for _ in range(4):
        team = TeamFactory()
        TeamMembershipFactory(team=team)
        KeyFactory(team=team, user=None)
    api.get("/team/list")  # the master user row exists from here on
    # master user, two for the actor's memberships, teams, memberships, keys
    with django_assert_num_queries(6):
        response = api.get("/team/list")
    assert len(response.json()) == 4


# --- /team/member_add -------------------------------------------------------------------------


def test_team_member_add_by_team_admin_creates_a_missing_user(api, team, team_admin):
    response = api.post(
        "/team/member_add", {"team_id": str(team.team_id), "member": {"user_id": "joiner@example.test", "role": "user"}},
        key=key_of(team_admin),
    )
    assert response.status_code == 200
    body = response.json()
    assert [u["user_id"] for u in body["updated_users"]] == ["joiner@example.test"]
    assert body["updated_team_memberships"][0]["role"] == "user"
    assert TeamMembership.objects.filter(team=team, user__user_id="joiner@example.test").exists()


def test_team_member_add_by_email_finds_the_existing_user(api, team):
    user = UserFactory(user_email="someone@example.test")
    api.post("/team/member_add", {"team_id": str(team.team_id), "member": [{"user_email": "someone@example.test"}]})
    assert TeamMembership.objects.filter(team=team, user=user).exists()


def test_team_member_add_already_a_member_is_400_team_member_already_in_team(api, team, member):
    response = api.post("/team/member_add", {"team_id": str(team.team_id), "member": {"user_id": member.user_id}})
    assert_error(response, 400, "team_member_already_in_team")


def test_team_member_add_list_of_only_members_is_400_team_member_already_in_team(api, team, member, team_admin):
    members = [{"user_id": member.user_id}, {"user_id": team_admin.user_id}]
    response = api.post("/team/member_add", {"team_id": str(team.team_id), "member": members})
    error = assert_error(response, 400, "team_member_already_in_team")
    assert "All users" in error["message"]


def test_team_member_add_list_skips_existing_members(api, team, member):
    members = [{"user_id": member.user_id}, {"user_id": "new-one@example.test"}]
    response = api.post("/team/member_add", {"team_id": str(team.team_id), "member": members})
    assert [u["user_id"] for u in response.json()["updated_users"]] == ["new-one@example.test"]


def test_team_member_add_by_member_is_403(api, team, member):
    response = api.post("/team/member_add", {"team_id": str(team.team_id), "member": {"user_id": "x"}},
                        key=key_of(member))
    assert_error(response, 403, "auth_error")


def test_team_member_add_to_another_tenants_team_is_404(api, team, outsider):
    response = api.post("/team/member_add", {"team_id": str(team.team_id), "member": {"user_id": outsider.user_id}},
                        key=key_of(outsider))
    assert_error(response, 404, "not_found_error")


@pytest.mark.parametrize(
    ("member", "param"),
    [
        pytest.param({"user_id": "x", "role": "owner"}, "member.0.role", id="bad-role"),
        pytest.param({"role": "user"}, "member.0.user_id", id="no-user"),
        pytest.param("alice", "member.0", id="not-an-object"),
    ],
)
def test_team_member_add_bad_member_is_400(api, team, member, param):
    response = api.post("/team/member_add", {"team_id": str(team.team_id), "member": member})
    assert_error(response, 400, "bad_request_error", param=param)


def test_team_member_add_email_not_matching_user_id_is_400(api, team):
    user = UserFactory(user_email="real@example.test")
    response = api.post("/team/member_add", {"team_id": str(team.team_id),
                                             "member": {"user_id": user.user_id, "user_email": "fake@example.test"}})
    assert_error(response, 400, "bad_request_error", param="user_email")


# --- /team/member_delete ----------------------------------------------------------------------


def test_team_member_delete_removes_the_member_and_their_team_keys(api, team, member, team_admin):
    key = KeyFactory(user=member, team=team)
    response = api.post("/team/member_delete", {"team_id": str(team.team_id), "user_id": member.user_id},
                        key=key_of(team_admin))
    assert response.status_code == 200
    assert member.user_id not in [m["user_id"] for m in response.json()["members_with_roles"]]
    assert not VirtualKey.objects.filter(pk=key.pk).exists()


def test_team_member_delete_of_a_non_member_is_400(api, team, outsider):
    response = api.post("/team/member_delete", {"team_id": str(team.team_id), "user_id": outsider.user_id})
    error = assert_error(response, 400, "bad_request_error")
    assert error["message"] == "User not found in team"


def test_team_member_delete_by_member_is_403(api, team, member, team_admin):
    response = api.post("/team/member_delete", {"team_id": str(team.team_id), "user_id": team_admin.user_id},
                        key=key_of(member))
    assert_error(response, 403, "auth_error")


def test_team_member_delete_unknown_team_is_404(api, member):
    response = api.post("/team/member_delete", {"team_id": MISSING_ID, "user_id": member.user_id})
    assert_error(response, 404, "not_found_error")


def test_team_member_delete_without_user_is_400(api, team):
    assert_error(api.post("/team/member_delete", {"team_id": str(team.team_id)}), 400, "bad_request_error",
                 param="user_id")


# --- /team/member_update ----------------------------------------------------------------------


def test_team_member_update_by_team_admin_changes_role_and_budget(api, team, member, team_admin):
    response = api.post(
        "/team/member_update",
        {"team_id": str(team.team_id), "user_id": member.user_id, "role": "admin", "max_budget_in_team": 12.5},
        key=key_of(team_admin),
    )
    assert response.json() == {
        "team_id": str(team.team_id), "user_id": member.user_id, "user_email": None, "role": "admin",
        "max_budget_in_team": 12.5,
    }


def test_team_member_update_of_a_non_member_is_400(api, team, outsider):
    response = api.post("/team/member_update", {"team_id": str(team.team_id), "user_id": outsider.user_id,
                                                "role": "admin"})
    assert_error(response, 400, "bad_request_error")


def test_team_member_update_own_role_by_member_is_403(api, team, member):
    response = api.post("/team/member_update", {"team_id": str(team.team_id), "user_id": member.user_id,
                                                "role": "admin"}, key=key_of(member))
    assert_error(response, 403, "auth_error")
    assert TeamMembership.objects.get(team=team, user=member).role == "user"


def test_team_member_update_invalid_role_is_400(api, team, member):
    response = api.post("/team/member_update", {"team_id": str(team.team_id), "user_id": member.user_id,
                                                "role": "owner"})
    assert_error(response, 400, "bad_request_error", param="role")


def test_team_member_update_unknown_team_is_404(api, member):
    response = api.post("/team/member_update", {"team_id": MISSING_ID, "user_id": member.user_id})
    assert_error(response, 404, "not_found_error")


# --- /team/permissions_list, /team/permissions_update -----------------------------------------


def test_team_permissions_list_by_member_shows_stored_and_available(api, team, member):
    response = api.get("/team/permissions_list", {"team_id": str(team.team_id)}, key=key_of(member))
    body = response.json()
    assert body["team_member_permissions"] == ["/key/generate", "/key/update", "/key/list"]
    assert "/key/delete" in body["all_available_permissions"]


def test_team_permissions_list_of_a_team_created_without_them_is_the_default(api):
    team = TeamFactory()
    body = api.get("/team/permissions_list", {"team_id": str(team.team_id)}).json()
    assert sorted(body["team_member_permissions"]) == ["/key/health", "/key/info"]


def test_team_permissions_list_by_org_member_outside_the_team_is_403(api, team, org_member):
    response = api.get("/team/permissions_list", {"team_id": str(team.team_id)}, key=key_of(org_member))
    assert_error(response, 403, "auth_error")


def test_team_permissions_list_of_another_tenants_team_is_404(api, team, outsider):
    response = api.get("/team/permissions_list", {"team_id": str(team.team_id)}, key=key_of(outsider))
    assert_error(response, 404, "not_found_error")


def test_team_permissions_list_without_team_id_is_400(api):
    assert_error(api.get("/team/permissions_list"), 400, "bad_request_error", param="team_id")


def test_team_permissions_update_by_team_admin_overwrites_and_takes_effect(api, team, team_admin, member):
    key = KeyFactory(user=member, team=team)
    response = api.post(
        "/team/permissions_update",
        {"team_id": str(team.team_id), "team_member_permissions": ["/key/delete"]},
        key=key_of(team_admin),
    )
    assert response.json()["team_member_permissions"] == ["/key/delete"]
    assert api.post("/key/delete", {"keys": [key.token]}, key=key_of(member)).status_code == 200


def test_team_permissions_update_by_member_is_403(api, team, member):
    response = api.post("/team/permissions_update", {"team_id": str(team.team_id),
                                                     "team_member_permissions": ["/key/delete"]}, key=key_of(member))
    assert_error(response, 403, "auth_error")


def test_team_permissions_update_unknown_permission_is_400(api, team):
    response = api.post("/team/permissions_update", {"team_id": str(team.team_id),
                                                     "team_member_permissions": ["/user/delete"]})
    assert_error(response, 400, "bad_request_error", param="team_member_permissions.0")


def test_team_permissions_update_unknown_team_is_404(api):
    response = api.post("/team/permissions_update", {"team_id": MISSING_ID, "team_member_permissions": []})
    assert_error(response, 404, "not_found_error")


def test_team_new_with_access_groups_assigns_them_on_both_sides(api):
    group = AccessGroupFactory()
    body = api.post("/team/new", {"team_alias": "grouped", "access_group_ids": [str(group.pk)]}).json()
    assert body["access_group_ids"] == [str(group.pk)]
    group.refresh_from_db()
    assert [str(t) for t in group.team_assignments.values_list("team_id", flat=True)] == [body["team_id"]]
    assert group.assigned_team_count == 1


def test_team_update_access_groups_by_org_admin(api, team, org, org_admin):
    group = AccessGroupFactory(organization=org)
    response = api.post("/team/update", {"team_id": str(team.team_id), "access_group_ids": [str(group.pk)]},
                        key=key_of(org_admin))
    assert response.json()["data"]["access_group_ids"] == [str(group.pk)]


def test_team_update_access_groups_by_team_admin_is_403(api, team, team_admin):
    group = AccessGroupFactory()
    response = api.post("/team/update", {"team_id": str(team.team_id), "access_group_ids": [str(group.pk)]},
                        key=key_of(team_admin))
    assert_error(response, 403, "auth_error")


def test_team_list_by_service_account_key_shows_its_own_team(api, team):
    TeamFactory(organization=team.organization)
    service = KeyFactory(user=None, team=team).raw
    assert [t["team_id"] for t in api.get("/team/list", key=service).json()] == [str(team.team_id)]


def test_team_member_add_admin_role_needs_no_licence(api, team, team_admin, outsider):
    response = api.post("/team/member_add", {"team_id": str(team.team_id),
                                             "member": {"user_id": outsider.user_id, "role": "admin"}},
                        key=key_of(team_admin))
    assert response.json()["updated_team_memberships"][0]["role"] == "admin"


def test_team_info_of_another_team_by_service_account_key_is_404(api, team):
    other = TeamFactory(organization=team.organization)
    service = KeyFactory(user=None, team=team).raw
    assert_error(api.get("/team/info", {"team_id": str(other.team_id)}, key=service), 404, "not_found_error")


# --- LiteLLM's legacy admins / members lists --------------------------------------------------


def test_team_legacy_admins_and_members_stay_as_given_at_creation(api, outsider):
    created = api.post("/team/new", {"team_alias": "legacy", "admins": ["a@x"], "members": ["a@x", "b@x"]}).json()
    assert (created["admins"], created["members"]) == (["a@x"], ["a@x", "b@x"])
    added = api.post("/team/member_add", {"team_id": created["team_id"],
                                          "member": {"user_id": outsider.user_id, "role": "admin"}})
    assert added.status_code == 200, added.content
    info = api.get("/team/info", {"team_id": created["team_id"]}).json()["team_info"]
    assert (info["admins"], info["members"]) == (["a@x"], ["a@x", "b@x"])
    assert outsider.user_id in [m["user_id"] for m in info["members_with_roles"]]


def test_team_legacy_lists_are_empty_by_default_while_members_with_roles_lists_the_creator(api, org, org_admin):
    created = api.post("/team/new", {"team_alias": "t", "organization_id": str(org.pk)}, key=key_of(org_admin)).json()
    assert created["admins"] == [] and created["members"] == []
    assert [m["user_id"] for m in created["members_with_roles"]] == [org_admin.user_id]


def test_team_update_changes_only_the_fields_sent(api, outsider):
    """LiteLLM's tests compare every other field of a team before and after `/team/update`."""
    created = api.post("/team/new", {"team_alias": "before", "members_with_roles": [
        {"user_id": outsider.user_id, "role": "user"}]}).json()
    before = api.get("/team/info", {"team_id": created["team_id"]}).json()["team_info"]
    api.post("/team/member_add", {"team_id": created["team_id"], "member": {"user_id": "late@x", "role": "user"}})
    response = api.post("/team/update", {"team_id": created["team_id"], "team_alias": "after"})
    after = response.json()["data"]
    assert after["team_alias"] == "after"
    ignored = {"team_alias", "updated_at", "members_with_roles"}
    assert {k: v for k, v in after.items() if k not in ignored} == {
        k: v for k, v in before.items() if k in after and k not in ignored
    }
