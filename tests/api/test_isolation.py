"""No request shows or changes another tenant's rows: a foreign row answers exactly like a missing one (404),
and lists never contain another tenant's rows, also when filtered by their ids (SPEC §3)."""
from __future__ import annotations

import uuid

import pytest

from orgs.models import Organization, Team
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

MISSING_USER = "nobody@example.test"
MISSING_TOKEN = "0" * 64


# Every detail route; `{org}`, `{team}`, `{user}`, `{token}`, `{group}` name one tenant's rows, and
# `{member}` a member of that tenant's organization and team.
DETAIL_ROUTES = [
    ("get", "/api/v1/organizations/{org}/"),
    ("patch", "/api/v1/organizations/{org}/"),
    ("delete", "/api/v1/organizations/{org}/"),
    ("get", "/api/v1/organizations/{org}/members/"),
    ("post", "/api/v1/organizations/{org}/members/"),
    ("get", "/api/v1/organizations/{org}/members/{member}/"),
    ("patch", "/api/v1/organizations/{org}/members/{member}/"),
    ("delete", "/api/v1/organizations/{org}/members/{member}/"),
    ("get", "/api/v1/teams/{team}/"),
    ("patch", "/api/v1/teams/{team}/"),
    ("delete", "/api/v1/teams/{team}/"),
    ("get", "/api/v1/teams/{team}/members/"),
    ("post", "/api/v1/teams/{team}/members/"),
    ("get", "/api/v1/teams/{team}/members/{member}/"),
    ("patch", "/api/v1/teams/{team}/members/{member}/"),
    ("delete", "/api/v1/teams/{team}/members/{member}/"),
    ("get", "/api/v1/users/{user}/"),
    ("patch", "/api/v1/users/{user}/"),
    ("delete", "/api/v1/users/{user}/"),
    ("get", "/api/v1/keys/{token}/"),
    ("patch", "/api/v1/keys/{token}/"),
    ("delete", "/api/v1/keys/{token}/"),
    ("post", "/api/v1/keys/{token}/block/"),
    ("post", "/api/v1/keys/{token}/unblock/"),
    ("post", "/api/v1/keys/{token}/regenerate/"),
    ("get", "/api/v1/access-groups/{group}/"),
    ("patch", "/api/v1/access-groups/{group}/"),
    ("delete", "/api/v1/access-groups/{group}/"),
]


def _ids_of(tenant) -> dict[str, str]:
    return {
        "org": str(tenant.org.pk),
        "team": str(tenant.team.pk),
        "user": tenant.member.user_id,
        "member": tenant.member.user_id,
        "token": tenant.team_key.token,
        "group": str(tenant.group.pk),
    }


def _missing_ids(member: str) -> dict[str, str]:
    return {
        "org": str(uuid.uuid4()),
        "team": str(uuid.uuid4()),
        "user": MISSING_USER,
        "member": member,
        "token": MISSING_TOKEN,
        "group": str(uuid.uuid4()),
    }


CALLERS = {
    "org admin A, header A": lambda a, client_for: client_for(a.admin_key.raw, a.org),
    "org admin A, personal scope": lambda a, client_for: client_for(a.admin_key.raw),
    "team member A, org-bound team key": lambda a, client_for: client_for(a.team_key.raw),
}


def _normalized(response, *ids) -> dict:
    """The error body with the ids in the message replaced, so two 404s can be compared whole."""
    body = error_of(response)
    message = body["message"]
    for value in ids:
        message = message.replace(str(value), "<id>")
    return {**body, "message": message, "status": response.status_code}


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize(("method", "route"), DETAIL_ROUTES, ids=[f"{m.upper()} {r}" for m, r in DETAIL_ROUTES])
def test_detail_route_another_tenants_row_answers_like_a_missing_row(
    tenant_a, tenant_b, client_for, caller, method, route
):
    client = CALLERS[caller](tenant_a, client_for)
    foreign_ids, missing_ids = _ids_of(tenant_b), _missing_ids(tenant_b.member.user_id)

    foreign = getattr(client, method)(route.format(**foreign_ids), {}, format="json")
    absent = getattr(client, method)(route.format(**missing_ids), {}, format="json")

    assert foreign.status_code == 404
    assert _normalized(foreign, *foreign_ids.values()) == _normalized(absent, *missing_ids.values())


def test_detail_route_foreign_writes_leave_the_rows_unchanged(tenant_a, tenant_b, client_for):
    client = client_for(tenant_a.admin_key.raw, tenant_a.org)
    for method, route in DETAIL_ROUTES:
        body = {"organization_alias": "taken", "team_alias": "taken"}
        getattr(client, method)(route.format(**_ids_of(tenant_b)), body, format="json")
    assert Organization.objects.get(pk=tenant_b.org.pk).organization_alias == "Org b"
    assert Organization.objects.get(pk=tenant_b.org.pk).deleted_at is None
    assert Team.objects.get(pk=tenant_b.team.pk).team_alias == "team-b"
    tenant_b.team_key.refresh_from_db()
    assert tenant_b.team_key.blocked is False


# (list, query string naming tenant B's rows, the field holding a row's id, which of B's ids must never show).
LISTS = [
    ("/api/v1/organizations/", "organization_id={org}", "organization_id", ("org",)),
    ("/api/v1/teams/", "team_id={team}", "team_id", ("team",)),
    ("/api/v1/teams/", "organization_id={org}", "team_id", ("team",)),
    ("/api/v1/teams/", "user_id={member}", "team_id", ("team",)),
    ("/api/v1/users/", "user_id={member},{admin}", "user_id", ("member", "admin")),
    ("/api/v1/users/", "organization_id={org}", "user_id", ("member", "admin")),
    ("/api/v1/keys/", "token={token},{admin_token}", "token", ("token", "admin_token")),
    ("/api/v1/keys/", "team_id={team}", "token", ("token",)),
    ("/api/v1/keys/", "user_id={member}", "token", ("token",)),
    ("/api/v1/access-groups/", "access_group_id={group}", "access_group_id", ("group",)),
    ("/api/v1/access-groups/", "organization_id={org}", "access_group_id", ("group",)),
    ("/api/v1/audit-log/", "organization_id={org}", "organization_id", ("org",)),
]
LIST_IDS = [f"{path}?{query.split('=')[0]}" for path, query, _, _ in LISTS]


def _list_ids_of(tenant) -> dict[str, str]:
    return {**_ids_of(tenant), "admin": tenant.admin.user_id, "admin_token": tenant.admin_key.token}


LIST_CALLERS = {
    "org admin A, header A": lambda a, client_for: client_for(a.admin_key.raw, a.org),
    "org admin A, personal scope": lambda a, client_for: client_for(a.admin_key.raw),
}


@pytest.mark.parametrize("caller", list(LIST_CALLERS))
@pytest.mark.parametrize(("path", "query", "field", "foreign"), LISTS, ids=LIST_IDS)
def test_list_filtered_by_another_tenants_ids_is_empty(tenant_a, tenant_b, client_for, caller, path, query, field,
                                                        foreign):
    client = LIST_CALLERS[caller](tenant_a, client_for)

    response = client.get(f"{path}?{query.format(**_list_ids_of(tenant_b))}")

    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert response.json()["results"] == []


@pytest.mark.parametrize("caller", list(LIST_CALLERS))
@pytest.mark.parametrize(("path", "query", "field", "foreign"), LISTS, ids=LIST_IDS)
def test_list_never_shows_another_tenants_rows(tenant_a, tenant_b, client_for, caller, path, query, field, foreign):
    client = LIST_CALLERS[caller](tenant_a, client_for)
    b_ids = _list_ids_of(tenant_b)

    response = client.get(path)

    assert response.status_code == 200
    shown = {str(row[field]) for row in response.json()["results"]}
    assert shown, "the caller's own rows are listed"
    assert not shown & {b_ids[name] for name in foreign}


@pytest.mark.parametrize("path", ["/api/v1/keys/", "/api/v1/teams/"])
def test_list_with_an_org_bound_key_shows_only_its_organization(tenant_a, tenant_b, client_for, path):
    response = client_for(tenant_a.team_key.raw).get(path)

    assert response.status_code == 200
    assert {row["organization_id"] for row in response.json()["results"]} == {str(tenant_a.org.pk)}


def test_member_list_of_own_organization_never_shows_another_organizations_members(tenant_a, tenant_b, client_for):
    response = client_for(tenant_a.admin_key.raw, tenant_a.org).get(f"/api/v1/organizations/{tenant_a.org.pk}/members/")

    assert {row["user_id"] for row in response.json()["results"]} == {tenant_a.admin.user_id, tenant_a.member.user_id}
