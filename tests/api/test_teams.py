"""`/api/v1/teams/` and their members: org admins create inside their organization, within its models;
team admins manage members and names, never their own team's limits."""
from __future__ import annotations

import pytest

from orgs import services as org_services
from orgs.models import Team, TeamMembership
from tests.api.conftest import error_of
from tests.factories import AccessGroupFactory, KeyFactory, TeamMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team_admin(tenant_a):
    admin = UserFactory()
    TeamMembershipFactory(team=tenant_a.team, user=admin, role="admin")
    return admin


def test_team_create_by_org_admin_is_stamped_with_the_context_organization(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/teams/", {"team_alias": "research", "team_member_permissions": ["/key/generate"]}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["organization_id"] == str(tenant_a.org.pk)
    assert body["team_member_permissions"] == ["/key/generate"]


def test_team_create_by_org_admin_without_an_organization_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw).post("/api/v1/teams/", {"team_alias": "global"}, format="json")

    assert response.status_code == 401
    assert not Team.objects.filter(team_alias="global").exists()


def test_team_create_in_another_organization_named_in_the_body_is_a_404(tenant_a, tenant_b, client_for):
    response = client_for(tenant_a.admin_key.raw).post(
        "/api/v1/teams/", {"team_alias": "intruder", "organization_id": str(tenant_b.org.pk)}, format="json"
    )

    assert response.status_code == 404
    assert error_of(response)["param"] == "organization_id"


def test_team_create_naming_another_organization_than_the_context_is_a_400(tenant_a, tenant_b, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/teams/", {"team_alias": "x", "organization_id": str(tenant_b.org.pk)}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response)["param"] == "organization_id"


def test_team_create_beyond_the_organizations_models_is_refused(tenant_a, client_for):
    org_services.organization_update(actor=None, organization=tenant_a.org, data={"models": ["openai/*"]})

    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/teams/", {"team_alias": "greedy", "models": ["anthropic/claude"]}, format="json"
    )

    assert response.status_code == 403
    assert error_of(response)["param"] == "models"


def test_team_create_by_proxy_admin_without_context_is_global(master, client_for):
    response = client_for(master).post("/api/v1/teams/", {"team_alias": "platform"}, format="json")

    assert response.status_code == 201
    assert response.json()["organization_id"] is None


def test_team_create_with_members_lists_them_with_roles(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/teams/",
        {"team_alias": "crew", "members_with_roles": [{"user_id": tenant_a.member.user_id, "role": "admin"}]},
        format="json",
    )

    assert response.json()["members_with_roles"] == [
        {"user_id": tenant_a.member.user_id, "user_email": None, "role": "admin"}
    ]


def test_team_detail_of_a_team_member_shows_the_team(tenant_a, client_for):
    response = client_for(tenant_a.team_key.raw).get(f"/api/v1/teams/{tenant_a.team.pk}/")

    assert response.status_code == 200
    assert response.json()["team_alias"] == "team-a"


def test_team_detail_of_an_org_member_outside_the_team_is_a_403(tenant_a, client_for):
    outsider = UserFactory()
    org_services.organization_member_add(actor=None, organization=tenant_a.org, user=outsider,
                                         user_role="internal_user")

    response = client_for(KeyFactory(user=outsider).raw, tenant_a.org).get(f"/api/v1/teams/{tenant_a.team.pk}/")

    assert response.status_code == 403


def test_team_update_of_alias_by_team_admin_is_saved(tenant_a, team_admin, client_for):
    response = client_for(KeyFactory(user=team_admin).raw).patch(
        f"/api/v1/teams/{tenant_a.team.pk}/", {"team_alias": "renamed"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["team_alias"] == "renamed"


@pytest.mark.parametrize(
    "body",
    [{"models": ["all-proxy-models"]}, {"max_budget": 500}, {"blocked": False}, {"access_group_ids": []}],
    ids=["models", "budget", "blocked", "access groups"],
)
def test_team_update_of_limits_by_team_admin_is_refused(tenant_a, team_admin, client_for, body):
    response = client_for(KeyFactory(user=team_admin).raw).patch(
        f"/api/v1/teams/{tenant_a.team.pk}/", body, format="json"
    )

    assert response.status_code == 403


def test_team_update_of_limits_by_org_admin_is_saved(tenant_a, client_for):
    group = AccessGroupFactory(organization=tenant_a.org)

    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/teams/{tenant_a.team.pk}/", {"max_budget": 50, "access_group_ids": [str(group.pk)]}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["max_budget"], response.json()["access_group_ids"]) == (50, [str(group.pk)])


def test_team_update_of_member_permissions_by_team_admin_is_saved(tenant_a, team_admin, client_for):
    response = client_for(KeyFactory(user=team_admin).raw).patch(
        f"/api/v1/teams/{tenant_a.team.pk}/", {"team_member_permissions": ["/key/list"]}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["team_member_permissions"] == ["/key/list"]


def test_team_update_with_an_unknown_permission_is_a_400(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/teams/{tenant_a.team.pk}/", {"team_member_permissions": ["/admin/everything"]}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response)["param"].startswith("team_member_permissions")


def test_team_update_by_team_member_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.team_key.raw).patch(
        f"/api/v1/teams/{tenant_a.team.pk}/", {"team_alias": "mine"}, format="json"
    )

    assert response.status_code == 403


def test_team_delete_by_team_admin_is_refused(tenant_a, team_admin, client_for):
    response = client_for(KeyFactory(user=team_admin).raw).delete(f"/api/v1/teams/{tenant_a.team.pk}/")

    assert response.status_code == 401
    assert Team.objects.filter(pk=tenant_a.team.pk).exists()


def test_team_delete_by_org_admin_removes_the_team_and_its_keys(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).delete(f"/api/v1/teams/{tenant_a.team.pk}/")

    assert response.status_code == 204
    assert not Team.objects.filter(pk=tenant_a.team.pk).exists()
    assert client_for(tenant_a.team_key.raw).get("/api/v1/keys/").status_code == 401


# --- members ------------------------------------------------------------------------------------


def test_team_member_add_by_team_admin_creates_the_membership(tenant_a, team_admin, client_for):
    newcomer = UserFactory()

    response = client_for(KeyFactory(user=team_admin).raw).post(
        f"/api/v1/teams/{tenant_a.team.pk}/members/", {"user_id": newcomer.user_id, "role": "user"}, format="json"
    )

    assert response.status_code == 201
    assert TeamMembership.objects.filter(team=tenant_a.team, user=newcomer, role="user").exists()


def test_team_member_add_twice_is_a_400_team_member_already_in_team(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        f"/api/v1/teams/{tenant_a.team.pk}/members/", {"user_id": tenant_a.member.user_id}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response)["type"] == "team_member_already_in_team"


def test_team_member_add_by_team_member_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.team_key.raw).post(
        f"/api/v1/teams/{tenant_a.team.pk}/members/", {"user_id": UserFactory().user_id}, format="json"
    )

    assert response.status_code == 403


def test_team_member_list_shows_members_with_roles(tenant_a, team_admin, client_for):
    response = client_for(tenant_a.team_key.raw).get(f"/api/v1/teams/{tenant_a.team.pk}/members/")

    assert {(m["user_id"], m["role"]) for m in response.json()["results"]} == {
        (tenant_a.member.user_id, "user"), (team_admin.user_id, "admin")
    }


def test_team_member_update_of_own_budget_by_team_admin_is_refused(tenant_a, team_admin, client_for):
    response = client_for(KeyFactory(user=team_admin).raw).patch(
        f"/api/v1/teams/{tenant_a.team.pk}/members/{team_admin.user_id}/", {"max_budget_in_team": 99}, format="json"
    )

    assert response.status_code == 403


def test_team_member_update_changes_role(tenant_a, team_admin, client_for):
    response = client_for(KeyFactory(user=team_admin).raw).patch(
        f"/api/v1/teams/{tenant_a.team.pk}/members/{tenant_a.member.user_id}/", {"role": "admin"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["role"] == "admin"


def test_team_member_delete_removes_them_and_their_keys_in_the_team(tenant_a, team_admin, client_for):
    response = client_for(KeyFactory(user=team_admin).raw).delete(
        f"/api/v1/teams/{tenant_a.team.pk}/members/{tenant_a.member.user_id}/"
    )

    assert response.status_code == 204
    assert not TeamMembership.objects.filter(team=tenant_a.team, user=tenant_a.member).exists()
    assert client_for(tenant_a.team_key.raw).get("/api/v1/keys/").status_code == 401
