"""One organization with a row of every kind, and clients calling any route with a bearer key."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from rest_framework.test import APIClient

from accessctl.authentication import master_user
from accessctl.roles import OrgRole, PlatformRole, TeamRole
from accessgroups.models import AccessGroup
from keys.models import VirtualKey
from orgs.models import Organization, Team, User
from tests.factories import (
    AccessGroupFactory,
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

MASTER_KEY = "sk-hygiene-master-key-0001"
# The tables a request could write: every model of accessctl's apps (the login-throttling tables aside).
WRITABLE_APPS = ("orgs", "keys", "accessgroups")


@dataclass
class World:
    org: Organization
    org_admin: User
    member: User
    viewer: User
    team: Team
    key: VirtualKey  # the member's key of the team (raw secret on `key.raw`)
    viewer_key: VirtualKey  # an internal_user_viewer's personal key
    group: AccessGroup
    model_name: str
    server_id: str
    agent_id: str


@pytest.fixture
def master(settings, db) -> str:
    settings.ACCESSCTL_MASTER_KEY = MASTER_KEY
    master_user()  # the master key's user row, made on its first use: made here, before any dump
    return MASTER_KEY


@pytest.fixture
def world(db) -> World:
    org = OrganizationFactory(organization_alias="Hygiene", models=["openai/*"])
    org_admin = UserFactory(user_id="hygiene-admin@example.test")
    member = UserFactory(user_id="hygiene-member@example.test")
    viewer = UserFactory(user_id="hygiene-viewer@example.test", user_role=PlatformRole.INTERNAL_USER_VIEWER)
    OrganizationMembershipFactory(organization=org, user=org_admin, user_role=OrgRole.ORG_ADMIN)
    OrganizationMembershipFactory(organization=org, user=member, user_role=OrgRole.INTERNAL_USER)
    team = TeamFactory(organization=org, team_alias="hygiene-team")
    TeamMembershipFactory(team=team, user=member, role=TeamRole.USER)
    return World(
        org=org,
        org_admin=org_admin,
        member=member,
        viewer=viewer,
        team=team,
        key=KeyFactory(user=member, team=team, key_alias="hygiene-key", models=["openai/gpt-4o"]),
        viewer_key=KeyFactory(user=viewer),
        group=AccessGroupFactory(organization=org, access_group_name="hygiene-group"),
        model_name=CatalogModelFactory(model_name="openai/gpt-4o").model_name,
        server_id=MCPServerFactory().server_id,
        agent_id=AgentFactory().agent_id,
    )


def client_for(raw: str, org: Any = None) -> APIClient:
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    if org is not None:
        headers["HTTP_X_ORGANIZATION_ID"] = str(getattr(org, "pk", org))
    client.credentials(**headers)
    return client


def database_dump() -> dict[str, list[dict[str, Any]]]:
    """Every row of every writable table: equal before and after means the request changed nothing."""
    dump = {}
    for app in WRITABLE_APPS:
        for model in apps.get_app_config(app).get_models():
            dump[model._meta.label] = list(model.objects.order_by("pk").values())
    return dump


def refusal(response) -> tuple[int, str | None]:
    """(status, param) of an error answer, checking its shape: SPEC §7's, or `{"detail": ...}` on the
    `/v1/access_group` routes (LiteLLM's FastAPI shape)."""
    body = response.json()
    if set(body) == {"detail"}:
        detail = body["detail"]
        param = detail[0]["loc"][1] if isinstance(detail, list) and len(detail[0]["loc"]) > 1 else None
        return response.status_code, param
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert error["code"] == str(response.status_code)
    return response.status_code, error["param"]
