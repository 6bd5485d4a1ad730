"""`/organization/*`: budget rows, PATCH and DELETE-with-body methods, org admins confined to their org."""
from __future__ import annotations

import pytest

from orgs.models import Organization, OrganizationMembership, User
from tests.factories import (
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    UserFactory,
)
from tests.litellm.conftest import assert_error, key_of

pytestmark = pytest.mark.django_db

MISSING_ID = "0d8e1a7c-2b44-4f6e-8c1e-000000000000"


@pytest.fixture
def org_member(org):
    user = UserFactory()
    OrganizationMembershipFactory(organization=org, user=user)
    return user


# --- /organization/new ------------------------------------------------------------------------


def test_organization_new_by_master_creates_it_with_a_budget_row(api):
    response = api.post("/organization/new", {"organization_alias": "Acme", "models": ["openai/*"],
                                              "max_budget": 100, "budget_duration": "30d"})
    assert response.status_code == 200
    body = response.json()
    assert body["organization_alias"] == "Acme" and body["models"] == ["openai/*"]
    assert body["litellm_budget_table"]["max_budget"] == 100
    assert body["budget_id"] == body["litellm_budget_table"]["budget_id"]
    assert body["litellm_budget_table"]["budget_reset_at"] is not None
    assert body["members"] == [] and body["teams"] == []


def test_organization_new_with_chosen_id(api):
    response = api.post("/organization/new", {"organization_alias": "Fixed", "organization_id": MISSING_ID})
    assert response.json()["organization_id"] == MISSING_ID


@pytest.mark.parametrize("role", [pytest.param("internal_user", id="internal-user"),
                                  pytest.param("org_admin", id="org-admin")])
def test_organization_new_by_non_admin_is_401(api, org, role):
    user = UserFactory()
    OrganizationMembershipFactory(organization=org, user=user, user_role=role)
    assert_error(api.post("/organization/new", {"organization_alias": "x"}, key=key_of(user)), 401, "auth_error")


def test_organization_new_duplicate_id_is_409(api, org):
    response = api.post("/organization/new", {"organization_alias": "x", "organization_id": str(org.pk)})
    assert_error(response, 409, param="organization_id")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({}, "organization_alias", id="alias-missing"),
        pytest.param({"organization_alias": "x", "max_budget": -1}, "max_budget", id="budget-negative"),
        pytest.param({"organization_alias": "x", "models": [None]}, "models.0", id="model-null"),
        pytest.param({"organization_alias": "x", "budget_duration": "soon"}, "budget_duration", id="bad-duration"),
        pytest.param({"organization_alias": "x", "organization_id": "a" * 129}, "organization_id", id="id-too-long"),
        pytest.param({"organization_alias": "x", "organization_id": "ac\nme"}, "organization_id", id="id-not-printable"),
    ],
)
def test_organization_new_bad_input_is_400_naming_the_field(api, body, param):
    assert_error(api.post("/organization/new", body), 400, "bad_request_error", param=param)


# --- /organization/update (PATCH) -------------------------------------------------------------


def test_organization_update_by_org_admin_changes_alias(api, org, org_admin):
    response = api.patch("/organization/update", {"organization_id": str(org.pk), "organization_alias": "New"},
                         key=key_of(org_admin))
    assert response.status_code == 200
    assert response.json()["organization_alias"] == "New"


def test_organization_update_budget_by_admin_lands_on_the_budget_row(api, org):
    response = api.patch("/organization/update", {"organization_id": str(org.pk), "max_budget": 42})
    assert response.json()["litellm_budget_table"]["max_budget"] == 42
    org.budget.refresh_from_db()
    assert org.budget.max_budget == 42


@pytest.mark.parametrize("change", [pytest.param({"models": ["*"]}, id="models"),
                                    pytest.param({"max_budget": 1e6}, id="budget")])
def test_organization_update_limits_by_org_admin_is_403(api, org, org_admin, change):
    response = api.patch("/organization/update", {"organization_id": str(org.pk), **change}, key=key_of(org_admin))
    assert_error(response, 403, "auth_error")


def test_organization_update_by_member_is_403(api, org, org_member):
    response = api.patch("/organization/update", {"organization_id": str(org.pk), "organization_alias": "x"},
                         key=key_of(org_member))
    assert_error(response, 403, "auth_error")


def test_organization_update_of_another_org_by_org_admin_is_404(api, org_admin):
    other = OrganizationFactory()
    response = api.patch("/organization/update", {"organization_id": str(other.pk), "organization_alias": "x"},
                         key=key_of(org_admin))
    assert_error(response, 404, "not_found_error", param="organization_id")


def test_organization_update_unknown_org_is_404(api):
    assert_error(api.patch("/organization/update", {"organization_id": MISSING_ID}), 404, "not_found_error")


def test_organization_update_with_post_is_405(api, org):
    assert_error(api.post("/organization/update", {"organization_id": str(org.pk)}), 405)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"organization_alias": "x"}, "organization_id", id="id-missing"),
        pytest.param({"organization_id": "x", "metadata": "text"}, "metadata", id="metadata-not-object"),
    ],
)
def test_organization_update_bad_input_is_400(api, body, param):
    assert_error(api.patch("/organization/update", body), 400, "bad_request_error", param=param)


# --- /organization/delete (DELETE with a body) ------------------------------------------------


def test_organization_delete_soft_deletes_and_its_keys_stop(api, org, org_member):
    key = KeyFactory(user=org_member, organization=org)
    response = api.delete("/organization/delete", {"organization_ids": [str(org.pk)]})
    assert response.status_code == 200
    assert [o["organization_id"] for o in response.json()] == [str(org.pk)]
    assert Organization.objects.get(pk=org.pk).deleted_at is not None
    assert_error(api.get("/key/info", key=key.raw), 401, "auth_error")


def test_organization_delete_by_org_admin_is_401(api, org, org_admin):
    response = api.delete("/organization/delete", {"organization_ids": [str(org.pk)]}, key=key_of(org_admin))
    assert_error(response, 401, "auth_error")
    assert Organization.objects.get(pk=org.pk).deleted_at is None


def test_organization_delete_of_an_org_the_caller_is_not_in_is_404(api, org, outsider):
    response = api.delete("/organization/delete", {"organization_ids": [str(org.pk)]}, key=key_of(outsider))
    assert_error(response, 404, "not_found_error")


def test_organization_delete_unknown_org_is_404_and_deletes_none(api, org):
    response = api.delete("/organization/delete", {"organization_ids": [str(org.pk), MISSING_ID]})
    error = assert_error(response, 404, "not_found_error")
    assert MISSING_ID in error["message"]
    assert Organization.objects.get(pk=org.pk).deleted_at is None


def test_organization_delete_without_ids_is_400(api):
    assert_error(api.delete("/organization/delete", {}), 400, "bad_request_error", param="organization_ids")


# --- /organization/info -----------------------------------------------------------------------


def test_organization_info_by_member_shows_budget_members_and_teams(api, org, org_member, team):
    body = api.get("/organization/info", {"organization_id": str(org.pk)}, key=key_of(org_member)).json()
    assert body["organization_id"] == str(org.pk)
    assert body["litellm_budget_table"] is not None
    assert {m["user_id"]: m["user_role"] for m in body["members"]} == {org_member.user_id: "internal_user"}
    assert [t["team_id"] for t in body["teams"]] == [str(team.team_id)]


def test_organization_info_by_outsider_is_404(api, org, outsider):
    assert_error(api.get("/organization/info", {"organization_id": str(org.pk)}, key=key_of(outsider)), 404)


def test_organization_info_of_a_deleted_org_is_404(api, org):
    api.delete("/organization/delete", {"organization_ids": [str(org.pk)]})
    assert_error(api.get("/organization/info", {"organization_id": str(org.pk)}), 404, "not_found_error")


def test_organization_info_without_id_is_400(api):
    assert_error(api.get("/organization/info"), 400, "bad_request_error", param="organization_id")


# --- /organization/list -----------------------------------------------------------------------


def test_organization_list_by_admin_returns_an_array_with_budget_members_and_teams(api, org, org_admin, team):
    OrganizationFactory()
    body = api.get("/organization/list").json()
    assert isinstance(body, list) and len(body) == 2
    assert all(row["litellm_budget_table"] is not None for row in body)
    ours = next(row for row in body if row["organization_id"] == str(org.pk))
    assert [m["user_id"] for m in ours["members"]] == [org_admin.user_id]
    assert [t["team_id"] for t in ours["teams"]] == [str(team.team_id)]


def test_organization_list_by_member_shows_only_their_orgs(api, org, org_member):
    OrganizationFactory()
    assert [o["organization_id"] for o in api.get("/organization/list", key=key_of(org_member)).json()] == [str(org.pk)]


def test_organization_list_filters_by_alias_and_id(api, org):
    OrganizationFactory(organization_alias="Zeta")
    assert [o["organization_alias"] for o in api.get("/organization/list", {"org_alias": "zet"}).json()] == ["Zeta"]
    assert [o["organization_id"] for o in api.get("/organization/list", {"org_id": str(org.pk)}).json()] == [
        str(org.pk)
    ]


def test_organization_list_query_count_is_pinned(api, django_assert_num_queries):
    for _ in range(3):
        organization = OrganizationFactory()
        OrganizationMembershipFactory(organization=organization)
        TeamFactory(organization=organization)
    api.get("/organization/list")  # the master user row exists from here on
    # master user, two for the actor's memberships, organizations with budgets, memberships, teams
    with django_assert_num_queries(6):
        response = api.get("/organization/list")
    assert len(response.json()) == 3


# --- /organization/member_add -----------------------------------------------------------------


def test_organization_member_add_by_org_admin_creates_missing_users(api, org, org_admin):
    response = api.post("/organization/member_add", {
        "organization_id": str(org.pk),
        "member": [{"user_id": "newbie@example.test", "role": "internal_user"},
                   {"user_email": "viewer@example.test", "role": "internal_user_viewer"}],
    }, key=key_of(org_admin))
    assert response.status_code == 200
    body = response.json()
    assert body["organization_id"] == str(org.pk)
    assert {m["user_role"] for m in body["updated_organization_memberships"]} == {"internal_user",
                                                                                    "internal_user_viewer"}
    assert User.objects.filter(user_email="viewer@example.test").exists()


def test_organization_member_add_with_budget_creates_a_membership_budget(api, org, outsider):
    response = api.post("/organization/member_add", {"organization_id": str(org.pk), "member": {
        "user_id": outsider.user_id, "role": "org_admin"}, "max_budget_in_organization": 5})
    membership = response.json()["updated_organization_memberships"][0]
    assert membership["user_role"] == "org_admin" and membership["litellm_budget_table"]["max_budget"] == 5


def test_organization_member_add_of_an_existing_member_is_409(api, org, org_member):
    response = api.post("/organization/member_add", {"organization_id": str(org.pk),
                                                     "member": {"user_id": org_member.user_id}})
    assert_error(response, 409)


def test_organization_member_add_by_member_is_403(api, org, org_member):
    response = api.post("/organization/member_add", {"organization_id": str(org.pk), "member": {"user_id": "x"}},
                        key=key_of(org_member))
    assert_error(response, 403, "auth_error")


def test_organization_member_add_to_another_org_by_org_admin_is_404(api, org_admin):
    other = OrganizationFactory()
    response = api.post("/organization/member_add", {"organization_id": str(other.pk),
                                                     "member": {"user_id": org_admin.user_id}}, key=key_of(org_admin))
    assert_error(response, 404, "not_found_error")
    assert not OrganizationMembership.objects.filter(organization=other).exists()


def test_organization_member_add_invalid_role_is_400(api, org):
    response = api.post("/organization/member_add", {"organization_id": str(org.pk),
                                                     "member": {"user_id": "x", "role": "proxy_admin"}})
    assert_error(response, 400, "bad_request_error", param="member.0.role")


# --- /organization/member_update (PATCH) ------------------------------------------------------


def test_organization_member_update_by_org_admin_promotes(api, org, org_admin, org_member):
    response = api.patch("/organization/member_update", {"organization_id": str(org.pk),
                                                         "user_id": org_member.user_id, "role": "org_admin"},
                         key=key_of(org_admin))
    assert response.status_code == 200
    assert response.json()["user_role"] == "org_admin"


def test_organization_member_update_own_role_by_member_is_403(api, org, org_member):
    response = api.patch("/organization/member_update", {"organization_id": str(org.pk),
                                                         "user_id": org_member.user_id, "role": "org_admin"},
                         key=key_of(org_member))
    assert_error(response, 403, "auth_error")


def test_organization_member_update_of_a_non_member_is_404(api, org, outsider):
    response = api.patch("/organization/member_update", {"organization_id": str(org.pk),
                                                         "user_id": outsider.user_id, "role": "org_admin"})
    assert_error(response, 404, "not_found_error")


def test_organization_member_update_invalid_role_is_400(api, org, org_member):
    response = api.patch("/organization/member_update", {"organization_id": str(org.pk),
                                                         "user_id": org_member.user_id, "role": "admin"})
    assert_error(response, 400, "bad_request_error", param="role")


# --- /organization/member_delete (DELETE with a body) -----------------------------------------


def test_organization_member_delete_ends_the_members_access(api, org, org_admin, org_member):
    own = key_of(org_member)
    response = api.delete("/organization/member_delete", {"organization_id": str(org.pk),
                                                          "user_id": org_member.user_id}, key=key_of(org_admin))
    assert response.json()["user_id"] == org_member.user_id
    assert_error(api.get("/organization/info", {"organization_id": str(org.pk)}, key=own), 404)


def test_organization_member_delete_by_member_is_403(api, org, org_member, org_admin):
    response = api.delete("/organization/member_delete", {"organization_id": str(org.pk),
                                                          "user_id": org_admin.user_id}, key=key_of(org_member))
    assert_error(response, 403, "auth_error")


def test_organization_member_delete_of_a_non_member_is_404(api, org, outsider):
    response = api.delete("/organization/member_delete", {"organization_id": str(org.pk),
                                                          "user_id": outsider.user_id})
    assert_error(response, 404, "not_found_error")


def test_organization_member_delete_without_user_is_400(api, org):
    response = api.delete("/organization/member_delete", {"organization_id": str(org.pk)})
    assert_error(response, 400, "bad_request_error", param="user_id")
