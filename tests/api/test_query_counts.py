"""Every list endpoint runs the same number of queries for 1 row as for 50 (no query per row), pinned."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from accessgroups import services as access_services
from tests.factories import (
    AccessGroupFactory,
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

# The master key costs 3 queries before the view (its user, then the caller's org and team roles);
# a list then costs a count and a page, plus one per prefetched relation.
AUTH_MASTER = 3


def _organizations(n: int) -> str:
    for _ in range(n):
        OrganizationFactory()
    return "/api/v1/organizations/"


def _organization_members(n: int) -> str:
    org = OrganizationFactory()
    for _ in range(n):
        OrganizationMembershipFactory(organization=org, max_budget_in_organization=5.0)
    return f"/api/v1/organizations/{org.pk}/members/"


def _teams(n: int) -> str:
    org = OrganizationFactory()
    for _ in range(n):
        TeamMembershipFactory(team=TeamFactory(organization=org))
    return "/api/v1/teams/"


def _team_members(n: int) -> str:
    team = TeamFactory()
    for _ in range(n):
        TeamMembershipFactory(team=team, max_budget_in_team=2.0)
    return f"/api/v1/teams/{team.pk}/members/"


def _users(n: int) -> str:
    org, team = OrganizationFactory(), TeamFactory()
    for _ in range(n):
        user = UserFactory()
        OrganizationMembershipFactory(organization=org, user=user)
        TeamMembershipFactory(team=team, user=user)
    return "/api/v1/users/"


def _keys(n: int) -> str:
    team = TeamFactory(organization=OrganizationFactory())
    for _ in range(n):
        KeyFactory(team=team)
    return "/api/v1/keys/"


def _access_groups(n: int) -> str:
    org = OrganizationFactory()
    for _ in range(n):
        AccessGroupFactory(organization=org)
    return "/api/v1/access-groups/"


def _audit_log(n: int) -> str:
    for _ in range(n):
        UserFactory()  # one audit entry each
    return "/api/v1/audit-log/"


def _catalog(kind: str, natural: str, path: str) -> Callable[[int], str]:
    def make(n: int) -> str:
        for i in range(n):
            access_services.catalog_upsert(actor=None, kind=kind, data={natural: f"entry-{i}", "name": f"Entry {i}"})
        return path

    return make


# (rows, queries for the master key): count + page (+ prefetches) after the 3 of authentication.
LISTS = {
    "organizations": (_organizations, AUTH_MASTER + 2),
    "organization members": (_organization_members, AUTH_MASTER + 1 + 2),  # + the organization
    "teams": (_teams, AUTH_MASTER + 2 + 1),  # + members with roles
    "team members": (_team_members, AUTH_MASTER + 1 + 2),  # + the team
    "users": (_users, AUTH_MASTER + 2 + 2),  # + organizations and teams of each user
    "keys": (_keys, AUTH_MASTER + 2),
    "access groups": (_access_groups, AUTH_MASTER + 2),
    "audit log": (_audit_log, AUTH_MASTER + 2),
    "catalog models": (_catalog("model", "model_name", "/api/v1/catalog/models/"), AUTH_MASTER + 2),
    "catalog MCP servers": (_catalog("mcp_server", "server_id", "/api/v1/catalog/mcp-servers/"), AUTH_MASTER + 2),
    "catalog agents": (_catalog("agent", "agent_id", "/api/v1/catalog/agents/"), AUTH_MASTER + 2),
}


@pytest.mark.parametrize("rows", [1, 50])
@pytest.mark.parametrize("name", list(LISTS))
def test_list_query_count_is_pinned_and_independent_of_rows(master, client_for, django_assert_num_queries, name, rows):
    make, expected = LISTS[name]
    path = make(rows)
    client = client_for(master)
    client.get(path)  # the master key's user is created on first use

    with django_assert_num_queries(expected):
        response = client.get(path)

    assert response.status_code == 200
    assert len(response.json()["results"]) >= rows


@pytest.mark.parametrize("rows", [1, 50])
def test_key_list_of_an_org_admin_query_count_is_pinned(client_for, django_assert_num_queries, rows):
    org = OrganizationFactory()
    admin = UserFactory()
    OrganizationMembershipFactory(organization=org, user=admin, user_role="org_admin")
    team = TeamFactory(organization=org)
    TeamMembershipFactory(team=team, user=admin, role="admin")
    for _ in range(rows):
        KeyFactory(team=team)
    client = client_for(KeyFactory(user=admin).raw, org)

    # key (1) + org and team roles (2) + the header's organization (1) + the teams' grants (1) + count and page (2)
    with django_assert_num_queries(7):
        response = client.get("/api/v1/keys/")

    assert response.json()["count"] == rows
