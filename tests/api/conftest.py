"""Two tenants side by side, and clients that call the REST API with a bearer key."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from accessgroups.models import AccessGroup
from keys.models import VirtualKey
from orgs.models import Organization, Team, User
from tests.factories import (
    AccessGroupFactory,
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)

MASTER_KEY = "sk-master-key-for-tests-0001"


@dataclass
class Tenant:
    """One organization with an org admin, a team, a team member and a key of each."""

    org: Organization
    admin: User  # org admin
    member: User  # team member (role user), also an org member
    team: Team
    admin_key: VirtualKey  # personal key of the org admin (no organization: context from the header)
    team_key: VirtualKey  # a key of the team, owned by the member (context: the organization)
    group: AccessGroup  # an access group owned by the organization


def make_tenant(name: str) -> Tenant:
    org = OrganizationFactory(organization_alias=f"Org {name}")
    admin = UserFactory(user_id=f"admin-{name}@example.test")
    member = UserFactory(user_id=f"member-{name}@example.test")
    OrganizationMembershipFactory(organization=org, user=admin, user_role="org_admin")
    OrganizationMembershipFactory(organization=org, user=member, user_role="internal_user")
    team = TeamFactory(organization=org, team_alias=f"team-{name}")
    TeamMembershipFactory(team=team, user=member, role="user")
    return Tenant(
        org=org,
        admin=admin,
        member=member,
        team=team,
        admin_key=KeyFactory(user=admin, key_alias=f"personal-{name}"),
        team_key=KeyFactory(user=member, team=team, key_alias=f"team-key-{name}"),
        group=AccessGroupFactory(organization=org, access_group_name=f"group-{name}", access_model_names=[]),
    )


@pytest.fixture
def tenant_a(db) -> Tenant:
    return make_tenant("a")


@pytest.fixture
def tenant_b(db) -> Tenant:
    return make_tenant("b")


@pytest.fixture
def master(settings, db) -> str:
    settings.ACCESSCTL_MASTER_KEY = MASTER_KEY
    return MASTER_KEY


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    """`client_for(raw_key, org=None)`: a client sending `Authorization: Bearer` (and `X-Organization-Id`)."""

    def make(raw: str, org: Any = None) -> APIClient:
        client = APIClient()
        headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
        if org is not None:
            headers["HTTP_X_ORGANIZATION_ID"] = str(getattr(org, "pk", org))
        client.credentials(**headers)
        return client

    return make


def error_of(response) -> dict[str, Any]:
    """The SPEC §7 error body, asserting its shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == str(response.status_code)
    return body["error"]
