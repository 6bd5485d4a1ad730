"""Two tenants with one row of every kind each, global rows, and one user per admin role."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accessctl.roles import OrgRole, PlatformRole, TeamRole
from accessgroups import services as access_services
from accessgroups.bulk import Selection
from accessgroups.bulk_jobs import bulk_assign_start
from accessgroups.models import BulkJob, KeyAccessGroup, TeamAccessGroup
from orgs import services as org_services
from orgs.models import AuditEntry, Organization, User
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

ROLES = ("proxy_admin", "admin_viewer", "org_admin", "team_admin", "granted")


@dataclass
class Tenant:
    """One organization with a row of every tenant-owned model, keyed by admin label."""

    organization: Organization
    rows: dict[str, Any] = field(default_factory=dict)


def build_tenant(alias: str) -> Tenant:
    org = OrganizationFactory(organization_alias=alias)
    member = OrganizationMembershipFactory(organization=org).user
    team = TeamFactory(organization=org, team_alias=f"{alias} team")
    team_member = TeamMembershipFactory(team=team, user=member)
    group = AccessGroupFactory(organization=org, access_group_name=f"{alias} group")
    key = KeyFactory(team=team, user=member, key_alias=f"{alias} key", access_group_ids=[group.pk])
    access_services.access_group_assign(actor=None, group=group, teams=[team])
    job = bulk_assign_start(actor=None, target="keys", group_refs=[str(group.pk)], selection=Selection(ids=(str(key.pk),)))
    return Tenant(org, {
        "orgs.user": member,
        "orgs.budget": org.budget,
        "orgs.organization": org,
        "orgs.organizationmembership": member.organization_memberships.get(),
        "orgs.team": team,
        "orgs.teammembership": team_member,
        "orgs.auditentry": AuditEntry.objects.filter(organization_id=org.pk).first(),
        "keys.virtualkey": key,
        "accessgroups.accessgroup": group,
        "accessgroups.teamaccessgroup": TeamAccessGroup.objects.get(team=team, access_group=group),
        "accessgroups.keyaccessgroup": KeyAccessGroup.objects.get(key=key, access_group=group),
        "accessgroups.bulkjob": BulkJob.objects.get(pk=job.pk),
    })


@dataclass
class World:
    own: Tenant
    other: Tenant
    global_rows: dict[str, Any]
    users: dict[str, User]


@pytest.fixture
def world(db) -> World:
    own, other = build_tenant("Acme"), build_tenant("Globex")
    global_rows = {
        "accessgroups.accessgroup": AccessGroupFactory(access_group_name="everyone"),
        "accessgroups.catalogmodel": CatalogModelFactory(),
        "accessgroups.mcpserver": MCPServerFactory(),
        "accessgroups.agent": AgentFactory(),
    }
    own_team = own.rows["orgs.team"]
    granted = UserFactory(user_id="granted@example.test")
    org_services.team_grant_manage(actor=None, team=own_team, user=granted)
    users = {
        "proxy_admin": AdminFactory(user_id="root@example.test"),
        "admin_viewer": UserFactory(user_id="viewer@example.test", user_role=PlatformRole.PROXY_ADMIN_VIEWER),
        "org_admin": OrganizationMembershipFactory(
            organization=own.organization, user=UserFactory(user_id="orgadmin@example.test"),
            user_role=OrgRole.ORG_ADMIN,
        ).user,
        "team_admin": TeamMembershipFactory(
            team=own_team, user=UserFactory(user_id="teamadmin@example.test"), role=TeamRole.ADMIN
        ).user,
        "granted": granted,
    }
    return World(own, other, global_rows, users)


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def admin_url(label: str, view: str, *args: object) -> str:
    app, model = label.split(".")
    return reverse(f"admin:{app}_{model}_{view}", args=args)
