"""`/api/v1/organizations/` and their members: proxy admins create and delete, org admins manage inside."""
from __future__ import annotations

import pytest

from keys.models import VirtualKey
from orgs.models import AuditEntry, Organization, OrganizationMembership
from tests.api.conftest import error_of
from tests.factories import KeyFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_organization_create_by_proxy_admin_returns_the_row_with_its_budget_table(master, client_for):
    response = client_for(master).post(
        "/api/v1/organizations/", {"organization_alias": "Acme", "models": ["openai/*"], "max_budget": 100},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["organization_alias"], body["models"]) == ("Acme", ["openai/*"])
    assert body["litellm_budget_table"]["max_budget"] == 100
    assert body["budget_id"] == body["litellm_budget_table"]["budget_id"]


def test_organization_create_by_org_admin_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/organizations/", {"organization_alias": "Mine"}, format="json"
    )

    assert response.status_code == 401
    assert error_of(response)["type"] == "auth_error"
    assert not Organization.objects.filter(organization_alias="Mine").exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({}, "organization_alias", id="missing alias"),
        pytest.param({"organization_alias": 7}, "organization_alias", id="alias not a string"),
        pytest.param({"organization_alias": "x", "max_budget": "lots"}, "max_budget", id="budget not a number"),
        pytest.param({"organization_alias": "x", "models": "gpt"}, "models", id="models not a list"),
        pytest.param({"organization_alias": "x", "organization_id": "x" * 129}, "organization_id", id="id too long"),
        pytest.param({"organization_alias": "x", "organization_id": "bad\nid"}, "organization_id", id="id not printable"),
    ],
)
def test_organization_create_with_bad_input_is_a_400_naming_the_field(master, client_for, body, param):
    response = client_for(master).post("/api/v1/organizations/", body, format="json")

    assert response.status_code == 400
    assert error_of(response)["param"] == param


def test_organization_list_of_a_member_shows_their_organizations(tenant_a, tenant_b, client_for):
    response = client_for(KeyFactory(user=tenant_a.member).raw).get("/api/v1/organizations/")

    assert [row["organization_id"] for row in response.json()["results"]] == [str(tenant_a.org.pk)]


def test_organization_update_of_alias_by_org_admin_is_saved_and_audited(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/organizations/{tenant_a.org.pk}/", {"organization_alias": "Renamed"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["organization_alias"] == "Renamed"
    assert AuditEntry.objects.filter(action="organization_update", actor_id=tenant_a.admin.user_id).exists()


@pytest.mark.parametrize("body", [{"models": ["all-proxy-models"]}, {"max_budget": 1e9}], ids=["models", "budget"])
def test_organization_update_of_limits_by_org_admin_is_refused(tenant_a, client_for, body):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/organizations/{tenant_a.org.pk}/", body, format="json"
    )

    assert response.status_code == 403
    tenant_a.org.refresh_from_db()
    assert tenant_a.org.models == []


def test_organization_update_by_plain_member_is_refused(tenant_a, client_for):
    member_key = KeyFactory(user=tenant_a.member)

    response = client_for(member_key.raw, tenant_a.org).patch(
        f"/api/v1/organizations/{tenant_a.org.pk}/", {"organization_alias": "Mine now"}, format="json"
    )

    assert response.status_code == 403


def test_organization_delete_soft_deletes_and_keeps_the_rows(tenant_a, master, client_for):
    response = client_for(master).delete(f"/api/v1/organizations/{tenant_a.org.pk}/")

    assert response.status_code == 204
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert org.deleted_at is not None
    assert VirtualKey.objects.filter(pk=tenant_a.team_key.pk).exists()
    assert OrganizationMembership.objects.filter(organization=org).count() == 2


def test_organization_delete_hides_it_from_lists_and_detail(tenant_a, master, client_for):
    client = client_for(master)
    client.delete(f"/api/v1/organizations/{tenant_a.org.pk}/")

    assert client.get(f"/api/v1/organizations/{tenant_a.org.pk}/").status_code == 404
    assert str(tenant_a.org.pk) not in {r["organization_id"] for r in client.get("/api/v1/organizations/").json()["results"]}


def test_organization_delete_by_org_admin_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).delete(f"/api/v1/organizations/{tenant_a.org.pk}/")

    assert response.status_code == 401
    assert Organization.objects.get(pk=tenant_a.org.pk).deleted_at is None


# --- members ------------------------------------------------------------------------------------


def test_organization_member_add_by_org_admin_creates_the_membership(tenant_a, client_for):
    newcomer = UserFactory()

    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        f"/api/v1/organizations/{tenant_a.org.pk}/members/",
        {"user_id": newcomer.user_id, "user_role": "internal_user", "max_budget_in_organization": 10},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["max_budget_in_organization"] == 10
    assert OrganizationMembership.objects.filter(organization=tenant_a.org, user=newcomer).exists()


def test_organization_member_add_twice_is_a_409(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        f"/api/v1/organizations/{tenant_a.org.pk}/members/", {"user_id": tenant_a.member.user_id}, format="json"
    )

    assert response.status_code == 409


def test_organization_member_add_of_unknown_user_is_a_404_naming_user_id(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        f"/api/v1/organizations/{tenant_a.org.pk}/members/", {"user_id": "ghost@example.test"}, format="json"
    )

    assert response.status_code == 404
    assert error_of(response)["param"] == "user_id"


def test_organization_member_add_by_plain_member_is_refused(tenant_a, client_for):
    response = client_for(KeyFactory(user=tenant_a.member).raw, tenant_a.org).post(
        f"/api/v1/organizations/{tenant_a.org.pk}/members/", {"user_id": UserFactory().user_id}, format="json"
    )

    assert response.status_code == 403


def test_organization_member_update_changes_the_role(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/organizations/{tenant_a.org.pk}/members/{tenant_a.member.user_id}/",
        {"user_role": "org_admin"}, format="json",
    )

    assert response.status_code == 200
    assert response.json()["user_role"] == "org_admin"


def test_organization_member_update_of_own_budget_by_org_admin_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/organizations/{tenant_a.org.pk}/members/{tenant_a.admin.user_id}/",
        {"max_budget_in_organization": 1000}, format="json",
    )

    assert response.status_code == 403


def test_organization_member_delete_ends_their_access_at_once(tenant_a, client_for):
    member_client = client_for(KeyFactory(user=tenant_a.member).raw, tenant_a.org)
    assert member_client.get(f"/api/v1/organizations/{tenant_a.org.pk}/").status_code == 200

    response = client_for(tenant_a.admin_key.raw, tenant_a.org).delete(
        f"/api/v1/organizations/{tenant_a.org.pk}/members/{tenant_a.member.user_id}/"
    )

    assert response.status_code == 204
    assert member_client.get(f"/api/v1/organizations/{tenant_a.org.pk}/").status_code == 403


def test_organization_member_detail_of_a_non_member_is_a_404(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).get(
        f"/api/v1/organizations/{tenant_a.org.pk}/members/{UserFactory().user_id}/"
    )

    assert response.status_code == 404
