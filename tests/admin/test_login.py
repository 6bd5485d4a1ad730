"""Who may open the admin: it follows from roles, memberships and grants, re-read on every request."""
from __future__ import annotations

import pytest
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse

from accessctl.roles import OrgRole, PlatformRole, TeamRole
from orgs import services as org_services
from orgs.models import OrganizationMembership, TeamMembership
from tests.admin.conftest import ROLES, logged_in
from tests.factories import (
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-password"


def _index_status(client: Client) -> int:
    return client.get(reverse("admin:index")).status_code


@pytest.mark.parametrize("role", [pytest.param(role, id=role) for role in ROLES])
def test_admin_index_for_each_admin_role_answers_200(world, role):
    assert _index_status(logged_in(world.users[role])) == 200


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: UserFactory(), id="internal-user"),
        pytest.param(lambda: UserFactory(user_role=PlatformRole.INTERNAL_USER_VIEWER), id="internal-viewer"),
        pytest.param(lambda: OrganizationMembershipFactory(user_role=OrgRole.INTERNAL_USER).user, id="org-member"),
        pytest.param(lambda: TeamMembershipFactory(role=TeamRole.USER).user, id="team-member"),
        pytest.param(lambda: UserFactory(user_role=PlatformRole.PROXY_ADMIN, is_active=False), id="inactive-admin"),
    ],
)
def test_admin_index_for_a_user_without_an_admin_role_redirects_to_login(make):
    response = logged_in(make()).get(reverse("admin:index"))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda u: OrganizationMembershipFactory(user=u, user_role=OrgRole.ORG_ADMIN), id="org-admin"),
        pytest.param(lambda u: TeamMembershipFactory(user=u, role=TeamRole.ADMIN), id="team-admin"),
        pytest.param(lambda u: org_services.team_grant_manage(actor=None, team=TeamFactory(), user=u), id="granted"),
    ],
)
def test_admin_login_with_user_id_and_password_for_a_tenant_admin_succeeds(client, make):
    user = UserFactory(user_id="lead@example.test", password=PASSWORD)
    make(user)
    response = client.post(reverse("admin:login"), {"username": "lead@example.test", "password": PASSWORD,
                                                    "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert _index_status(client) == 200


def test_admin_login_for_an_org_member_without_admin_role_is_refused(client):
    member = OrganizationMembershipFactory(user=UserFactory(user_id="m@example.test", password=PASSWORD)).user
    response = client.post(reverse("admin:login"), {"username": member.user_id, "password": PASSWORD})
    assert response.status_code == 200
    assert "staff account" in response.content.decode()


def test_admin_password_set_by_user_update_route_lets_the_org_admin_log_in(client):
    user = OrganizationMembershipFactory(user_role=OrgRole.ORG_ADMIN).user
    org_services.user_update(actor=None, user=user, data={"password": PASSWORD})
    assert client.login(request=HttpRequest(), username=user.user_id, password=PASSWORD)
    assert _index_status(client) == 200


def test_admin_access_after_org_admin_membership_removed_ends_on_next_request(client):
    membership = OrganizationMembershipFactory(user_role=OrgRole.ORG_ADMIN)
    client.force_login(membership.user)
    assert _index_status(client) == 200
    org_services.organization_member_delete(actor=None, membership=membership)
    assert _index_status(client) == 302


def test_admin_access_after_org_admin_demoted_ends_on_next_request(client):
    membership = OrganizationMembershipFactory(user_role=OrgRole.ORG_ADMIN)
    client.force_login(membership.user)
    assert _index_status(client) == 200
    org_services.organization_member_update(actor=None, membership=membership, user_role=OrgRole.INTERNAL_USER)
    assert _index_status(client) == 302


def test_admin_access_after_organization_soft_deleted_ends_on_next_request(client):
    membership = OrganizationMembershipFactory(user_role=OrgRole.ORG_ADMIN)
    client.force_login(membership.user)
    assert _index_status(client) == 200
    org_services.organization_delete(actor=None, organization=membership.organization)
    assert _index_status(client) == 302


def test_admin_access_after_team_admin_membership_removed_ends_on_next_request(client):
    membership = TeamMembershipFactory(role=TeamRole.ADMIN)
    client.force_login(membership.user)
    assert _index_status(client) == 200
    org_services.team_member_delete(actor=None, membership=TeamMembership.objects.get(pk=membership.pk))
    assert _index_status(client) == 302


def test_admin_access_after_grant_revoked_ends_on_next_request(client):
    team, user = TeamFactory(), UserFactory()
    org_services.team_grant_manage(actor=None, team=team, user=user)
    client.force_login(user)
    assert _index_status(client) == 200
    org_services.team_revoke_manage(actor=None, team=team, user=user)
    assert _index_status(client) == 302


def test_admin_access_after_platform_role_lowered_ends_on_next_request(client):
    user = UserFactory(user_role=PlatformRole.PROXY_ADMIN_VIEWER)
    client.force_login(user)
    assert _index_status(client) == 200
    org_services.user_update(actor=None, user=user, data={"user_role": PlatformRole.INTERNAL_USER})
    assert _index_status(client) == 302


@pytest.mark.parametrize(
    ("role", "queries"),
    [pytest.param("proxy_admin", 0, id="proxy-admin"), pytest.param("org_admin", 2, id="org-admin")],
)
def test_user_is_staff_is_computed_once_per_instance(world, django_assert_num_queries, role, queries):
    user = type(world.users[role]).objects.get(pk=world.users[role].pk)
    with django_assert_num_queries(queries):
        assert user.is_staff and user.is_staff


def test_user_is_staff_for_a_fresh_instance_reflects_a_removed_membership(world):
    org_admin = world.users["org_admin"]
    org_services.organization_member_delete(actor=None, membership=OrganizationMembership.objects.get(user=org_admin))
    assert type(org_admin).objects.get(pk=org_admin.pk).is_staff is False
