"""`/api/v1/users/`: org admins create users inside their organization; nobody raises their own role or budget."""
from __future__ import annotations

import pytest

from orgs import services as org_services
from orgs.models import OrganizationMembership, User
from tests.api.conftest import error_of
from tests.factories import KeyFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_user_create_by_org_admin_makes_them_a_member_of_the_context_organization(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/users/", {"user_id": "carol@example.test", "organization_role": "internal_user_viewer"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["organizations"] == [
        {"organization_id": str(tenant_a.org.pk), "user_role": "internal_user_viewer"}
    ]
    assert OrganizationMembership.objects.filter(organization=tenant_a.org, user__user_id="carol@example.test").exists()


def test_user_create_by_org_admin_in_personal_scope_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw).post("/api/v1/users/", {"user_id": "dave@x.test"}, format="json")

    assert response.status_code == 401
    assert not User.objects.filter(user_id="dave@x.test").exists()


@pytest.mark.parametrize("role", ["proxy_admin", "proxy_admin_viewer"])
def test_user_create_with_an_admin_role_by_org_admin_is_refused(tenant_a, client_for, role):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/users/", {"user_id": "eve@x.test", "user_role": role}, format="json"
    )

    assert response.status_code == 403


def test_user_create_of_a_system_user_by_org_admin_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/users/", {"user_id": "bot@x.test", "is_system": True}, format="json"
    )

    assert response.status_code == 403


def test_user_create_with_a_taken_user_id_is_a_409(tenant_a, master, client_for):
    response = client_for(master).post("/api/v1/users/", {"user_id": tenant_a.member.user_id}, format="json")

    assert response.status_code == 409
    assert error_of(response)["param"] == "user_id"


def test_user_create_never_returns_the_password(master, client_for):
    response = client_for(master).post(
        "/api/v1/users/", {"user_id": "frank@x.test", "password": "correct horse battery"}, format="json"
    )

    assert response.status_code == 201
    assert "password" not in response.json()
    assert User.objects.get(user_id="frank@x.test").check_password("correct horse battery")


def test_user_detail_of_self_is_readable_by_anyone(client_for):
    user = UserFactory()

    response = client_for(KeyFactory(user=user).raw).get(f"/api/v1/users/{user.user_id}/")

    assert response.status_code == 200
    assert response.json()["user_id"] == user.user_id


def test_user_detail_of_a_colleague_for_a_plain_member_is_a_403(tenant_a, client_for):
    response = client_for(KeyFactory(user=tenant_a.member).raw, tenant_a.org).get(
        f"/api/v1/users/{tenant_a.admin.user_id}/"
    )

    assert response.status_code == 403


def test_user_list_by_plain_user_is_refused(client_for):
    response = client_for(KeyFactory(user=UserFactory()).raw).get("/api/v1/users/")

    assert response.status_code == 403


def test_user_list_of_org_admin_shows_their_organizations_members(tenant_a, tenant_b, client_for):
    response = client_for(tenant_a.admin_key.raw).get("/api/v1/users/")

    assert {u["user_id"] for u in response.json()["results"]} == {tenant_a.admin.user_id, tenant_a.member.user_id}


def test_user_update_of_own_alias_is_saved(client_for):
    user = UserFactory()

    response = client_for(KeyFactory(user=user).raw).patch(
        f"/api/v1/users/{user.user_id}/", {"user_alias": "Me"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["user_alias"] == "Me"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"max_budget": 1e6}, id="budget"),
        pytest.param({"spend": 0}, id="spend"),
        pytest.param({"models": ["all-proxy-models"]}, id="models"),
        pytest.param({"user_role": "proxy_admin"}, id="role"),
        pytest.param({"is_system": True}, id="system flag"),
    ],
)
def test_user_update_raising_own_rights_is_refused(tenant_a, client_for, body):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/users/{tenant_a.admin.user_id}/", body, format="json"
    )

    assert response.status_code == 403
    tenant_a.admin.refresh_from_db()
    assert (tenant_a.admin.user_role, tenant_a.admin.is_system, tenant_a.admin.max_budget) == (
        "internal_user", False, None
    )


def test_user_update_of_a_members_platform_budget_by_their_org_admin_is_refused(tenant_a, client_for):
    # A user's own budget is account-level (SPEC §2): proxy admins set it; org admins budget the membership.
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/users/{tenant_a.member.user_id}/", {"max_budget": 20}, format="json"
    )

    assert response.status_code == 403
    tenant_a.member.refresh_from_db()
    assert tenant_a.member.max_budget is None


def test_user_update_of_a_members_models_beyond_the_organization_is_refused(tenant_a, client_for):
    org_services.organization_update(actor=None, organization=tenant_a.org, data={"models": ["openai/*"]})

    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/users/{tenant_a.member.user_id}/", {"models": ["anthropic/claude"]}, format="json"
    )

    assert response.status_code == 403
    assert error_of(response)["param"] == "models"


def test_user_delete_by_their_org_admin_is_refused(tenant_a, client_for):
    # Deleting an account is account-level (SPEC §2): the org admin removes the membership instead.
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).delete(f"/api/v1/users/{tenant_a.member.user_id}/")

    assert response.status_code == 403
    assert User.objects.filter(user_id=tenant_a.member.user_id).exists()


def test_user_delete_of_self_is_refused(client_for):
    user = UserFactory()

    response = client_for(KeyFactory(user=user).raw).delete(f"/api/v1/users/{user.user_id}/")

    assert response.status_code == 403
