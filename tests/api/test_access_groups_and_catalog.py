"""`/api/v1/access-groups/`, the catalog and the audit log."""
from __future__ import annotations

import pytest

from accessgroups.models import AccessGroup, CatalogModel
from orgs import services as org_services
from tests.api.conftest import error_of
from tests.factories import AccessGroupFactory, KeyFactory, UserFactory

pytestmark = pytest.mark.django_db


# --- access groups ------------------------------------------------------------------------------


def test_access_group_create_by_org_admin_is_owned_by_the_context_organization(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/access-groups/",
        {"access_group_name": "research", "access_model_names": ["openai/gpt-4o"],
         "assigned_team_ids": [str(tenant_a.team.pk)]},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["organization_id"] == str(tenant_a.org.pk)
    tenant_a.team.refresh_from_db()
    assert tenant_a.team.access_group_ids == [response.json()["access_group_id"]]


def test_access_group_create_assigning_another_tenants_team_is_a_400(tenant_a, tenant_b, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/access-groups/", {"access_group_name": "x", "assigned_team_ids": [str(tenant_b.team.pk)]},
        format="json",
    )

    assert response.status_code == 400
    assert error_of(response)["param"] == "assigned_team_ids"


def test_access_group_create_beyond_the_organizations_models_is_refused(tenant_a, client_for):
    org_services.organization_update(actor=None, organization=tenant_a.org, data={"models": ["openai/*"]})

    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/access-groups/", {"access_group_name": "x", "access_model_names": ["anthropic/claude"]},
        format="json",
    )

    assert response.status_code == 403


def test_access_group_create_global_by_org_admin_is_refused(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw).post(
        "/api/v1/access-groups/", {"access_group_name": "everyone"}, format="json"
    )

    assert response.status_code == 403
    assert not AccessGroup.objects.filter(access_group_name="everyone").exists()


def test_access_group_create_with_a_taken_name_is_a_409(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(
        "/api/v1/access-groups/", {"access_group_name": "GROUP-A"}, format="json"
    )

    assert response.status_code == 409


def test_access_group_list_of_org_admin_shows_own_and_global_groups(tenant_a, tenant_b, client_for):
    shared = AccessGroupFactory()

    response = client_for(tenant_a.admin_key.raw, tenant_a.org).get("/api/v1/access-groups/")

    assert {g["access_group_id"] for g in response.json()["results"]} == {str(tenant_a.group.pk), str(shared.pk)}


def test_access_group_list_by_plain_member_is_refused(tenant_a, client_for):
    response = client_for(KeyFactory(user=tenant_a.member).raw, tenant_a.org).get("/api/v1/access-groups/")

    assert response.status_code == 403


def test_access_group_update_of_a_global_group_by_org_admin_is_refused(tenant_a, client_for):
    shared = AccessGroupFactory()

    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/access-groups/{shared.pk}/", {"access_model_names": ["*"]}, format="json"
    )

    assert response.status_code == 403


def test_access_group_update_replaces_its_assignments(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).patch(
        f"/api/v1/access-groups/{tenant_a.group.pk}/", {"assigned_key_ids": [tenant_a.team_key.token]}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["assigned_key_ids"] == [tenant_a.team_key.token]
    tenant_a.team_key.refresh_from_db()
    assert tenant_a.team_key.access_group_ids == [str(tenant_a.group.pk)]


def test_access_group_delete_by_org_admin_removes_it(tenant_a, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).delete(f"/api/v1/access-groups/{tenant_a.group.pk}/")

    assert response.status_code == 204
    assert not AccessGroup.objects.filter(pk=tenant_a.group.pk).exists()


# --- catalog ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/api/v1/catalog/models/", {"model_name": "openai/gpt-4o", "provider": "openai"}, id="model"),
        pytest.param("/api/v1/catalog/mcp-servers/", {"server_id": "github", "name": "GitHub"}, id="mcp server"),
        pytest.param("/api/v1/catalog/agents/", {"agent_id": "triage", "name": "Triage"}, id="agent"),
    ],
)
def test_catalog_entry_created_by_admin_is_read_by_any_user(master, client_for, path, body):
    created = client_for(master).post(path, body, format="json")
    listed = client_for(KeyFactory(user=UserFactory()).raw).get(path)

    assert created.status_code == 201
    assert [{k: row[k] for k in body} for row in listed.json()["results"]] == [body]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/api/v1/catalog/models/", {"model_name": "x/y"}, id="model"),
        pytest.param("/api/v1/catalog/mcp-servers/", {"server_id": "s", "name": "S"}, id="mcp server"),
        pytest.param("/api/v1/catalog/agents/", {"agent_id": "a", "name": "A"}, id="agent"),
    ],
)
def test_catalog_write_by_org_admin_is_refused(tenant_a, client_for, path, body):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).post(path, body, format="json")

    assert response.status_code == 403


def test_catalog_model_with_a_slash_in_its_name_has_a_detail_route(master, client_for):
    client = client_for(master)
    client.post("/api/v1/catalog/models/", {"model_name": "openai/gpt-4o"}, format="json")

    updated = client.patch("/api/v1/catalog/models/openai/gpt-4o/", {"active": False}, format="json")
    deleted = client.delete("/api/v1/catalog/models/openai/gpt-4o/")

    assert updated.json()["active"] is False
    assert deleted.status_code == 204
    assert not CatalogModel.objects.exists()


def test_catalog_create_of_an_existing_entry_is_a_409(master, client_for):
    client = client_for(master)
    client.post("/api/v1/catalog/agents/", {"agent_id": "a", "name": "A"}, format="json")

    response = client.post("/api/v1/catalog/agents/", {"agent_id": "a", "name": "B"}, format="json")

    assert response.status_code == 409


def test_catalog_update_of_an_unknown_entry_is_a_404(master, client_for):
    response = client_for(master).patch("/api/v1/catalog/mcp-servers/nope/", {"name": "N"}, format="json")

    assert response.status_code == 404


# --- audit log ----------------------------------------------------------------------------------


def test_audit_log_of_org_admin_shows_only_their_organizations_entries(tenant_a, tenant_b, client_for):
    response = client_for(tenant_a.admin_key.raw).get("/api/v1/audit-log/")

    assert response.status_code == 200
    assert {e["organization_id"] for e in response.json()["results"]} == {str(tenant_a.org.pk)}


def test_audit_log_by_plain_user_is_refused(client_for):
    response = client_for(KeyFactory(user=UserFactory()).raw).get("/api/v1/audit-log/")

    assert response.status_code == 403


def test_audit_log_by_plain_member_in_their_organization_is_refused(tenant_a, client_for):
    response = client_for(KeyFactory(user=tenant_a.member).raw, tenant_a.org).get("/api/v1/audit-log/")

    assert response.status_code == 403


def test_audit_log_records_rest_writes_with_their_author(tenant_a, client_for):
    client = client_for(tenant_a.admin_key.raw, tenant_a.org)
    client.patch(f"/api/v1/teams/{tenant_a.team.pk}/", {"team_alias": "audited"}, format="json")

    response = client.get("/api/v1/audit-log/?action=team_update")

    [entry] = response.json()["results"]
    assert (entry["actor_id"], entry["object_id"], entry["after"]) == (
        tenant_a.admin.user_id, str(tenant_a.team.pk), {"team_alias": "audited"}
    )
