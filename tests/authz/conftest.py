"""Fixtures of the LiteLLM-compatible route tests: a JSON client that authenticates with a bearer key."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.factories import (
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)

MASTER_KEY = "sk-master-key-for-tests-0001"


class Api:
    """Calls the routes as a LiteLLM client does: JSON bodies, `Authorization: Bearer <key>`."""

    def __init__(self, client):
        self.client = client

    def call(self, method: str, path: str, *, key: str | None = MASTER_KEY, json_body: Any = None,
             query: dict | None = None, raw_body: str | None = None, headers: dict | None = None):
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
        if key:
            extra["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        url = f"{path}?{urlencode(query, doseq=True)}" if query else path
        body = raw_body if raw_body is not None else (json.dumps(json_body) if json_body is not None else "")
        return self.client.generic(method, url, body, content_type="application/json", **extra)

    def get(self, path: str, query: dict | None = None, **kwargs):
        return self.call("GET", path, query=query, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs):
        return self.call("POST", path, json_body=body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs):
        return self.call("PATCH", path, json_body=body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs):
        return self.call("PUT", path, json_body=body, **kwargs)

    def delete(self, path: str, body: Any = None, **kwargs):
        return self.call("DELETE", path, json_body=body, **kwargs)


def assert_error(response, status: int, type: str | None = None, param: str | None = None) -> dict:
    """The response is the SPEC §7 error shape with this status (and type, and param)."""
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == str(status)
    if type is not None:
        assert error["type"] == type, error
    if param is not None:
        assert error["param"] == param, error
    return error


def assert_detail(response, status: int) -> Any:
    """The `/v1/access_group` shape: `{"detail": ...}` with this status."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"detail"}, body
    return body["detail"]


@pytest.fixture(autouse=True)
def _master_key(settings):
    settings.ACCESSCTL_MASTER_KEY = MASTER_KEY


@pytest.fixture
def api(client, db) -> Api:
    return Api(client)


def key_of(user, **kwargs) -> str:
    """A personal key of `user`; returns its raw secret."""
    return KeyFactory(user=user, **kwargs).raw


@pytest.fixture
def org(db):
    return OrganizationFactory(models=["openai/*", "anthropic/claude-3"])


@pytest.fixture
def other_org(db):
    return OrganizationFactory()


@pytest.fixture
def org_admin(org):
    user = UserFactory()
    OrganizationMembershipFactory(organization=org, user=user, user_role="org_admin")
    return user


@pytest.fixture
def team(org):
    """A team of `org` whose members (role user) may generate, update and list keys, not delete them."""
    return TeamFactory(
        organization=org, models=["openai/gpt-4o", "openai/gpt-4o-mini"],
        member_permissions=["/key/generate", "/key/update", "/key/list"],
    )


@pytest.fixture
def team_admin(team):
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user, role="admin")
    return user


@pytest.fixture
def member(team):
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user, role="user")
    return user


@pytest.fixture
def outsider(db):
    return UserFactory()
