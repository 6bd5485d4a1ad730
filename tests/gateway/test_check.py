"""POST/GET /api/v1/authz/check: the answer, its shape, the refusals, and its cost in queries."""
from __future__ import annotations

import datetime
import json

import pytest
from django.db import OperationalError
from django.utils import timezone

from keys import services as key_services
from orgs import services as org_services
from tests.factories import (
    AccessGroupFactory,
    CatalogModelFactory,
    KeyFactory,
    OrganizationFactory,
    TeamFactory,
    UserFactory,
)

from .conftest import CHECK_URL, bearer, error_type

pytestmark = pytest.mark.django_db

LEVEL_DEFAULTS = {
    "tpm_limit": None,
    "rpm_limit": None,
    "max_parallel_requests": None,
    "max_budget": None,
    "soft_budget": None,
    "spend": 0.0,
    "budget_duration": None,
    "budget_reset_at": None,
}

GPT = "openai/gpt-4o"


def test_check_allowed_key_answers_200_with_key_and_limits(check):
    org = OrganizationFactory()
    team = TeamFactory(organization=org)
    key = KeyFactory(team=team, key_alias="gw", models=[GPT], tpm_limit=1000, rpm_limit=10, max_budget=5.0)

    response = check(key.raw, model=GPT)

    assert response.status_code == 200
    assert response.json() == {
        "allowed": True,
        "key": {
            "token": key.token,
            "key_alias": "gw",
            "user_id": key.user.user_id,
            "team_id": str(team.team_id),
            "organization_id": str(org.organization_id),
        },
        "limits": {
            **LEVEL_DEFAULTS,
            "tpm_limit": 1000,
            "rpm_limit": 10,
            "max_budget": 5.0,
            "model_max_budget": {},
            "model_spend": {},
            "team": {**LEVEL_DEFAULTS, "team_alias": team.team_alias},
            "organization": {**LEVEL_DEFAULTS, "organization_alias": org.organization_alias},
            "user": {**LEVEL_DEFAULTS, "user_email": key.user.user_email},
        },
    }


def test_check_answer_carries_each_levels_limits_and_budgets(check):
    org = OrganizationFactory()
    org_services.organization_update(actor=None, organization=org, data={"max_budget": 100.0, "rpm_limit": 50})
    team = TeamFactory(organization=org, tpm_limit=5000, rpm_limit=20, max_budget=40.0, max_parallel_requests=4)
    key = KeyFactory(team=team, models=[GPT], max_parallel_requests=2, budget_duration="1d", soft_budget=1.0)

    limits = check(key.raw, model=GPT).json()["limits"]

    assert (limits["max_parallel_requests"], limits["budget_duration"], limits["soft_budget"]) == (2, "1d", 1.0)
    team_limits = limits["team"]
    assert (team_limits["tpm_limit"], team_limits["rpm_limit"], team_limits["max_budget"]) == (5000, 20, 40.0)
    assert team_limits["max_parallel_requests"] == 4
    assert (limits["organization"]["max_budget"], limits["organization"]["rpm_limit"]) == (100.0, 50)


def test_check_asked_to_include_models_lists_the_keys_effective_models_from_the_catalog(client, check):
    CatalogModelFactory(model_name="openai/gpt-4o-mini")
    CatalogModelFactory(model_name="anthropic/claude-3")
    key = KeyFactory(models=["openai/*"])

    assert check(key.raw, model="openai/gpt-4o-mini", include=["models"]).json()["models"] == ["openai/gpt-4o-mini"]
    query = client.get(CHECK_URL, {"model": "openai/gpt-4o-mini", "include": "models"}, **bearer(key.raw))
    assert query.json()["models"] == ["openai/gpt-4o-mini"]
    assert "models" not in check(key.raw, model="openai/gpt-4o-mini").json()


def test_check_query_form_sends_the_keys_identity_in_headers(client):
    team = TeamFactory(organization=OrganizationFactory())
    key = KeyFactory(team=team, key_alias="nginx gw", models=[GPT])

    response = client.get(CHECK_URL, {"model": GPT}, **bearer(key.raw))

    assert response["X-Accessctl-User-Id"] == key.user.user_id
    assert response["X-Accessctl-Team-Id"] == str(team.team_id)
    assert response["X-Accessctl-Organization-Id"] == str(team.organization.organization_id)
    assert response["X-Accessctl-Key-Alias"] == "nginx%20gw"
    assert response["X-Accessctl-Key-Token"] == key.token


def test_check_query_form_refusal_carries_the_error_body_in_a_header(client):
    key = KeyFactory(models=[GPT])

    response = client.get(CHECK_URL, {"model": "anthropic/claude"}, **bearer(key.raw))

    assert response.status_code == 403
    assert json.loads(response["X-Accessctl-Error"]) == response.json()


def test_check_body_form_sends_no_identity_headers(check):
    key = KeyFactory(models=[GPT])

    assert "X-Accessctl-User-Id" not in check(key.raw, model=GPT)


def test_check_query_form_answers_like_the_body_form(client, check):
    key = KeyFactory(models=[GPT])

    response = client.get(CHECK_URL, {"model": GPT}, **bearer(key.raw))

    assert response.status_code == 200
    assert response.json() == check(key.raw, model=GPT).json()


def test_check_query_form_denied_model_answers_403(client):
    key = KeyFactory(models=[GPT])

    response = client.get(CHECK_URL, {"model": "anthropic/claude"}, **bearer(key.raw))

    assert response.status_code == 403
    assert response.json()["error"] == {
        "message": "Key not allowed to access model 'anthropic/claude'.",
        "type": "key_model_access_denied",
        "param": "model",
        "code": "403",
    }


def test_check_warm_runs_no_database_query(check, django_assert_num_queries):
    group = AccessGroupFactory(access_model_names=[GPT])
    key = KeyFactory(team=TeamFactory(organization=OrganizationFactory()), access_group_ids=[group.pk])
    check(key.raw, model=GPT)  # cold: loads and caches the snapshot

    with django_assert_num_queries(0):
        response = check(key.raw, model=GPT)

    assert response.status_code == 200


def test_check_cold_key_naming_no_models_or_groups_runs_two_queries(check, django_assert_num_queries):
    key = KeyFactory(team=TeamFactory(organization=OrganizationFactory()))

    with django_assert_num_queries(2):  # the token's index probe, the key with team, organization, budget, user
        response = check(key.raw, model=GPT)

    assert response.status_code == 200


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda team: KeyFactory(team=team, models=[GPT]), id="model-names"),
        pytest.param(
            lambda team: KeyFactory(team=team, access_group_ids=[AccessGroupFactory(access_model_names=[GPT]).pk]),
            id="access-groups",
        ),
    ],
)
def test_check_cold_key_with_models_or_groups_runs_three_queries(check, django_assert_num_queries, make_key):
    key = make_key(TeamFactory(organization=OrganizationFactory()))

    with django_assert_num_queries(3):  # the probe, the key's path, then the groups it has or names
        response = check(key.raw, model=GPT)

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, "No api key passed in", id="no-key"),
        pytest.param({"HTTP_AUTHORIZATION": "Basic abc"}, "Malformed API Key", id="not-bearer"),
        pytest.param(bearer("not-a-virtual-key"), "expected to start with 'sk-'", id="no-sk-prefix"),
        pytest.param(bearer("sk-unknown-secret-0000000000"), "Invalid proxy server token", id="unknown-key"),
    ],
)
def test_check_without_a_known_key_answers_401(client, headers, message):
    response = client.post(CHECK_URL, {"model": GPT}, content_type="application/json", **headers)

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "auth_error"

    assert response.json()["error"]["code"] == "401"
    assert message in response.json()["error"]["message"]


def test_check_of_an_unknown_key_runs_only_the_token_probe(check, django_assert_num_queries):
    """A random key (a flood) costs one two-index probe, never the key's six-table path."""
    with django_assert_num_queries(1) as captured:
        response = check("sk-unknown-secret-0000000001", model=GPT)

    assert response.status_code == 401
    assert "JOIN" not in captured.captured_queries[0]["sql"].upper()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({}, "model", id="no-resource"),
        pytest.param({"model": 5}, "model", id="model-not-a-string"),
        pytest.param({"model": "  "}, "model", id="model-blank"),
        pytest.param({"mcp_server_id": ["a"]}, "mcp_server_id", id="mcp-server-not-a-string"),
        pytest.param({"agent_id": ""}, "agent_id", id="agent-blank"),
    ],
)
def test_check_bad_input_answers_400_naming_the_field(client, body, param):
    key = KeyFactory()

    response = client.post(CHECK_URL, body, content_type="application/json", **bearer(key.raw))

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "bad_request_error"


@pytest.mark.parametrize(
    "body",
    [pytest.param(b"{not json", id="malformed-json"), pytest.param(b'["model"]', id="json-array")],
)
def test_check_body_that_is_not_a_json_object_answers_400(client, body):
    key = KeyFactory()

    response = client.post(CHECK_URL, body, content_type="application/json", **bearer(key.raw))

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "body"


def _expired_key():
    key = KeyFactory()
    key_services.key_update(actor=None, key=key, data={"expires": timezone.now() - datetime.timedelta(seconds=1)})
    return key


def _key_of_deactivated_user():
    key = KeyFactory()
    org_services.user_update(actor=None, user=key.user, data={"is_active": False})
    return key


@pytest.mark.parametrize(
    ("make_key", "resource", "expected_type"),
    [
        pytest.param(lambda: KeyFactory(models=[GPT]), {"model": "x/y"}, "key_model_access_denied", id="key-model"),
        pytest.param(
            lambda: KeyFactory(team=TeamFactory(models=["x/*"]), models=[GPT]),
            {"model": GPT},
            "team_model_access_denied",
            id="team-model",
        ),
        pytest.param(
            lambda: KeyFactory(team=TeamFactory(organization=OrganizationFactory(models=["x/y"]))),
            {"model": GPT},
            "org_model_access_denied",
            id="organization-model",
        ),
        pytest.param(
            lambda: KeyFactory(user=UserFactory(models=["x/y"]), models=[GPT]),
            {"model": GPT},
            "user_model_access_denied",
            id="user-model",
        ),
        pytest.param(
            lambda: KeyFactory(access_group_ids=[AccessGroupFactory(access_mcp_server_ids=["fs"]).pk]),
            {"mcp_server_id": "github"},
            "key_mcp_server_access_denied",
            id="mcp-server",
        ),
        pytest.param(
            lambda: KeyFactory(access_group_ids=[AccessGroupFactory(access_agent_ids=["a1"]).pk]),
            {"agent_id": "a2"},
            "key_agent_access_denied",
            id="agent",
        ),
        pytest.param(lambda: KeyFactory(blocked=True), {"model": GPT}, "key_blocked", id="blocked"),
        pytest.param(_expired_key, {"model": GPT}, "expired_key", id="expired"),
        pytest.param(_key_of_deactivated_user, {"model": GPT}, "user_blocked", id="user-deactivated"),
        pytest.param(
            lambda: KeyFactory(team=TeamFactory(blocked=True)), {"model": GPT}, "team_blocked", id="team-blocked"
        ),
        pytest.param(
            lambda: KeyFactory(max_budget=1.0, spend=1.0), {"model": GPT}, "budget_exceeded", id="key-budget"
        ),
        pytest.param(
            lambda: KeyFactory(model_max_budget={GPT: 2.0}, model_spend={GPT: 2.5}),
            {"model": GPT},
            "budget_exceeded",
            id="model-max-budget",
        ),
    ],
)
def test_check_denied_key_answers_403_with_the_resolver_type(check, make_key, resource, expected_type):
    key = make_key()

    response = check(key.raw, **resource)

    assert response.status_code == 403
    assert error_type(response) == expected_type
    assert response.json()["error"]["code"] == "403"


def test_check_allowed_mcp_server_answers_200(check):
    key = KeyFactory(access_group_ids=[AccessGroupFactory(access_mcp_server_ids=["fs"]).pk])

    assert check(key.raw, mcp_server_id="fs").status_code == 200


def test_check_master_key_is_allowed_everything(check, settings):
    settings.ACCESSCTL_MASTER_KEY = "sk-master-key-for-tests"

    response = check("sk-master-key-for-tests", model="any/model")

    assert response.status_code == 200
    assert response.json()["key"]["user_id"] == "default_user_id"


def test_check_database_unreachable_answers_503(check, monkeypatch):
    key = KeyFactory()

    def unreachable(token):
        raise OperationalError("connection refused")

    monkeypatch.setattr("keys.cache.key_with_path", unreachable)
    response = check(key.raw, model=GPT)

    assert response.status_code == 503
    assert error_type(response) == "no_db_connection"


@pytest.mark.parametrize(
    "query",
    [pytest.param("model=openai%2Fgpt-4o", id="percent-encoded"), pytest.param("model=openai/gpt-4o&x=1", id="extra")],
)
def test_check_query_form_decodes_the_query_string(client, query):
    key = KeyFactory(models=[GPT])

    response = client.get(f"{CHECK_URL}?{query}", **bearer(key.raw))

    assert response.status_code == 200


def test_check_other_method_answers_405_in_the_error_shape(client):
    key = KeyFactory()

    response = client.put(CHECK_URL, {"model": GPT}, content_type="application/json", **bearer(key.raw))

    assert response.status_code == 405
    assert error_type(response) == "method_not_allowed"


def test_check_answer_follows_a_key_update_on_the_next_request(check, django_capture_on_commit_callbacks):
    key = KeyFactory(key_alias="before")
    assert check(key.raw, model=GPT).json()["key"]["key_alias"] == "before"

    with django_capture_on_commit_callbacks(execute=True):
        key_services.key_update(actor=None, key=key, data={"key_alias": "after"})

    assert check(key.raw, model=GPT).json()["key"]["key_alias"] == "after"
