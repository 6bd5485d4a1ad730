"""Every changelist runs a constant number of queries, whatever the number of rows — for an org admin
(whose rows are filtered by the tenant context inside the query) as for a platform admin."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from django.urls import reverse

from accessctl.roles import OrgRole
from accessgroups import services as access_services
from accessgroups.bulk import Selection
from accessgroups.bulk_jobs import bulk_assign_start
from orgs.audit import record
from orgs.models import Organization, User
from tests.admin.conftest import admin_url, logged_in
from tests.factories import (
    AccessGroupFactory,
    AdminFactory,
    AgentFactory,
    CatalogModelFactory,
    KeyFactory,
    MCPServerFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

Builder = Callable[[int, Organization, User], None]


def _orgs(n: int, org: Organization, org_admin: User) -> None:
    for _ in range(n - 1):  # the org admin's own organization is the first
        OrganizationMembershipFactory(organization=OrganizationFactory(), user=org_admin, user_role=OrgRole.ORG_ADMIN)


def _members(n: int, org: Organization, org_admin: User) -> None:
    for _ in range(n):
        OrganizationMembershipFactory(organization=org)


def _teams(n: int, org: Organization, org_admin: User) -> None:
    for _ in range(n):
        TeamFactory(organization=org)


def _team_members(n: int, org: Organization, org_admin: User) -> None:
    team = TeamFactory(organization=org)
    for _ in range(n):
        TeamMembershipFactory(team=team)


def _audit(n: int, org: Organization, org_admin: User) -> None:
    for i in range(n):
        record(actor=None, action="test_entry", object_type="test", object_id=i, organization_id=org.pk)


def _keys(n: int, org: Organization, org_admin: User) -> None:
    team = TeamFactory(organization=org)
    for _ in range(n):
        KeyFactory(team=team, user=None)


def _groups(n: int, org: Organization, org_admin: User) -> None:
    for _ in range(n):
        AccessGroupFactory(organization=org)


def _team_assignments(n: int, org: Organization, org_admin: User) -> None:
    group = AccessGroupFactory(organization=org)
    access_services.access_group_assign(actor=None, group=group, teams=[TeamFactory(organization=org) for _ in range(n)])


def _key_assignments(n: int, org: Organization, org_admin: User) -> None:
    group, team = AccessGroupFactory(organization=org), TeamFactory(organization=org)
    access_services.access_group_assign(actor=None, group=group, keys=[KeyFactory(team=team, user=None)
                                                                       for _ in range(n)])


def _jobs(n: int, org: Organization, org_admin: User) -> None:
    group = AccessGroupFactory(organization=org)
    key = KeyFactory(team=TeamFactory(organization=org), user=None)
    for _ in range(n):
        bulk_assign_start(actor=None, target="keys", group_refs=[str(group.pk)], selection=Selection(ids=(str(key.pk),)))


def _global(factory) -> Builder:
    def build(n: int, org: Organization, org_admin: User) -> None:
        for _ in range(n):
            factory()

    return build


BUILDERS: dict[str, Builder] = {
    "orgs.user": _members,
    "orgs.budget": _orgs,
    "orgs.organization": _orgs,
    "orgs.organizationmembership": _members,
    "orgs.team": _teams,
    "orgs.teammembership": _team_members,
    "orgs.auditentry": _audit,
    "keys.virtualkey": _keys,
    "accessgroups.accessgroup": _groups,
    "accessgroups.teamaccessgroup": _team_assignments,
    "accessgroups.keyaccessgroup": _key_assignments,
    "accessgroups.bulkjob": _jobs,
    "accessgroups.catalogmodel": _global(CatalogModelFactory),
    "accessgroups.mcpserver": _global(MCPServerFactory),
    "accessgroups.agent": _global(AgentFactory),
}

# (org admin, platform admin): session, user, the caller's memberships and grants (2), the counts, the
# page, and one per related-only filter's choices. The tenant filter is a clause in the same queries.
CHANGELIST_QUERIES = {
    "orgs.user": (7, 7),
    "orgs.budget": (8, 8),
    "orgs.organization": (7, 7),
    "orgs.organizationmembership": (8, 8),
    "orgs.team": (8, 8),
    "orgs.teammembership": (8, 8),
    "orgs.auditentry": (8, 8),
    # The platform admin also sees the other tenant's keys, which have access groups: their names are
    # read once per page (one query) for the "access groups" column.
    "keys.virtualkey": (9, 10),
    "accessgroups.accessgroup": (8, 8),
    "accessgroups.teamaccessgroup": (8, 8),
    "accessgroups.keyaccessgroup": (8, 8),
    "accessgroups.bulkjob": (6, 6),
    "accessgroups.catalogmodel": (8, 8),
    "accessgroups.mcpserver": (7, 7),
    "accessgroups.agent": (7, 7),
}


def test_admin_query_tables_cover_every_registered_model():
    from django.contrib import admin

    registered = {f"{m._meta.app_label}.{m._meta.model_name}" for m in admin.site._registry}
    assert registered == set(BUILDERS) == set(CHANGELIST_QUERIES)


@pytest.fixture
def org_admin_and_org() -> tuple[User, Organization]:
    membership = OrganizationMembershipFactory(user=UserFactory(user_id="counted@example.test"),
                                               user_role=OrgRole.ORG_ADMIN)
    # Another tenant's rows exist too: the filter must leave them out without costing a query.
    other = OrganizationFactory()
    for build in BUILDERS.values():
        build(3, other, UserFactory())
    return membership.user, membership.organization


@pytest.mark.parametrize(
    ("label", "rows", "who"),
    [
        pytest.param(label, rows, who, id=f"{label}-{rows}-{who}")
        for label in BUILDERS for rows in (1, 30) for who in ("org_admin", "platform_admin")
    ],
)
def test_admin_changelist_query_count_is_pinned_and_constant(
    org_admin_and_org, django_assert_num_queries, label, rows, who
):
    org_admin, org = org_admin_and_org
    BUILDERS[label](rows, org, org_admin)
    client = logged_in(org_admin if who == "org_admin" else AdminFactory())
    expected = CHANGELIST_QUERIES[label][0 if who == "org_admin" else 1]
    with django_assert_num_queries(expected):
        response = client.get(admin_url(label, "changelist"))
    assert response.status_code == 200
    if who == "org_admin" and label not in ("orgs.budget", "orgs.organization"):
        assert response.context["cl"].result_count >= rows


@pytest.mark.parametrize("who", [pytest.param("org_admin", id="org-admin"), pytest.param("admin", id="admin")])
def test_admin_index_dashboard_query_count_is_pinned(org_admin_and_org, django_assert_num_queries, who):
    org_admin, _ = org_admin_and_org
    client = logged_in(org_admin if who == "org_admin" else AdminFactory())
    # session, user, memberships and grants (2), five counts, expiring keys, four budget-alert lists, audit.
    with django_assert_num_queries(15):
        assert client.get(reverse("admin:index")).status_code == 200
