"""The tenant context of a request (SPEC §3): key-bound organization first, then `X-Organization-Id`,
then personal scope or "all" mode."""
from __future__ import annotations

import uuid

import pytest

from orgs import services as org_services
from tests.api.conftest import error_of
from tests.factories import KeyFactory, UserFactory

pytestmark = pytest.mark.django_db


def _team_ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["team_id"] for row in response.json()["results"]}


def test_context_key_bound_to_an_organization_ignores_the_header(tenant_a, tenant_b, client_for):
    client = client_for(tenant_a.team_key.raw, tenant_b.org)

    assert _team_ids(client.get("/api/v1/teams/")) == {str(tenant_a.team.pk)}
    assert client.get(f"/api/v1/teams/{tenant_b.team.pk}/").status_code == 404


def test_context_key_bound_to_an_organization_ignores_even_a_malformed_header(tenant_a, client_for):
    response = client_for(tenant_a.team_key.raw, "not-a-uuid").get("/api/v1/teams/")

    assert _team_ids(response) == {str(tenant_a.team.pk)}


@pytest.mark.parametrize("value", ["x" * 129, "bad\x7fid", "tab\tinside", " "])
def test_context_malformed_header_is_a_400_naming_the_header(tenant_a, client_for, value):
    """Ids are printable strings of at most 128 characters (SPEC §1): anything else cannot name one."""
    response = client_for(tenant_a.admin_key.raw, value).get("/api/v1/teams/")

    assert response.status_code == 400
    assert error_of(response)["param"] == "X-Organization-Id"


@pytest.mark.parametrize("value", ["not-a-uuid", "1234", "' OR 1=1 --", "acme.corp@eu"])
def test_context_header_with_a_free_form_id_of_no_organization_is_a_404_for_an_admin(master, client_for, value):
    response = client_for(master, value).get("/api/v1/teams/")

    assert response.status_code == 404
    assert error_of(response)["param"] == "X-Organization-Id"


@pytest.mark.parametrize("value", ["not-a-uuid", "' OR 1=1 --"])
def test_context_header_with_a_free_form_id_is_a_403_for_a_non_member_before_existence(
    tenant_a, tenant_b, client_for, value
):
    unknown = client_for(tenant_a.admin_key.raw, value).get("/api/v1/teams/")
    foreign = client_for(tenant_a.admin_key.raw, tenant_b.org).get("/api/v1/teams/")

    assert unknown.status_code == foreign.status_code == 403


def test_context_header_of_an_organization_the_caller_is_not_in_is_a_403(tenant_a, tenant_b, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_b.org).get("/api/v1/teams/")

    assert response.status_code == 403
    assert error_of(response)["type"] == "auth_error"


def test_context_non_member_gets_the_same_403_for_an_unknown_organization(tenant_a, tenant_b, client_for):
    client = client_for(tenant_a.admin_key.raw, tenant_b.org)
    existing = client.get("/api/v1/teams/")
    unknown = client_for(tenant_a.admin_key.raw, uuid.uuid4()).get("/api/v1/teams/")

    assert (existing.status_code, unknown.status_code) == (403, 403)
    assert error_of(existing)["type"] == error_of(unknown)["type"]


def test_context_header_of_a_soft_deleted_organization_is_a_404_for_its_member(tenant_a, client_for):
    org_services.organization_delete(actor=None, organization=tenant_a.org)

    response = client_for(tenant_a.admin_key.raw, tenant_a.org).get("/api/v1/teams/")

    assert response.status_code == 404
    assert error_of(response)["param"] == "X-Organization-Id"


@pytest.mark.parametrize("deleted", [True, False], ids=["soft-deleted", "unknown"])
def test_context_header_of_a_gone_organization_is_a_404_for_an_admin(tenant_a, master, client_for, deleted):
    if deleted:
        org_services.organization_delete(actor=None, organization=tenant_a.org)
    org_id = tenant_a.org.pk if deleted else uuid.uuid4()

    response = client_for(master, org_id).get("/api/v1/teams/")

    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found_error"


def test_context_keys_of_a_soft_deleted_organization_are_refused_at_once(tenant_a, master, client_for):
    assert client_for(tenant_a.team_key.raw).get("/api/v1/keys/").status_code == 200

    deleted = client_for(master).delete(f"/api/v1/organizations/{tenant_a.org.pk}/")
    response = client_for(tenant_a.team_key.raw).get("/api/v1/keys/")

    assert deleted.status_code == 204
    assert response.status_code == 401
    assert error_of(response)["type"] == "auth_error"


def test_context_admin_without_header_sees_every_organization(tenant_a, tenant_b, master, client_for):
    teams = _team_ids(client_for(master).get("/api/v1/teams/"))

    assert teams == {str(tenant_a.team.pk), str(tenant_b.team.pk)}


def test_context_admin_with_header_sees_that_organization_only(tenant_a, tenant_b, master, client_for):
    teams = _team_ids(client_for(master, tenant_b.org).get("/api/v1/teams/"))

    assert teams == {str(tenant_b.team.pk)}


def test_context_admin_with_header_cannot_read_another_organizations_row(tenant_a, tenant_b, master, client_for):
    response = client_for(master, tenant_b.org).get(f"/api/v1/teams/{tenant_a.team.pk}/")

    assert response.status_code == 404


def test_context_admin_viewer_without_header_sees_every_organization(tenant_a, tenant_b, client_for):
    viewer = UserFactory(user_role="proxy_admin_viewer")

    teams = _team_ids(client_for(KeyFactory(user=viewer).raw).get("/api/v1/teams/"))

    assert teams == {str(tenant_a.team.pk), str(tenant_b.team.pk)}


def test_context_system_user_reads_every_organization_even_with_a_header(tenant_a, tenant_b, client_for):
    gateway = UserFactory(is_system=True)

    teams = _team_ids(client_for(KeyFactory(user=gateway).raw, tenant_a.org).get("/api/v1/teams/"))

    assert teams == {str(tenant_a.team.pk), str(tenant_b.team.pk)}


def test_context_non_admin_without_header_works_in_personal_scope(tenant_a, tenant_b, client_for):
    outsider = UserFactory()
    own = KeyFactory(user=outsider)

    response = client_for(own.raw).get("/api/v1/keys/")

    assert response.status_code == 200
    assert [row["token"] for row in response.json()["results"]] == [own.token]


def test_context_member_removed_from_the_organization_loses_it_at_once(tenant_a, client_for):
    client = client_for(tenant_a.admin_key.raw, tenant_a.org)
    assert client.get("/api/v1/teams/").status_code == 200

    membership = tenant_a.org.memberships.get(user=tenant_a.admin)
    org_services.organization_member_delete(actor=None, membership=membership)

    assert client.get("/api/v1/teams/").status_code == 403
