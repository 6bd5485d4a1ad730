"""Across every LiteLLM route: authentication failures, malformed bodies, wrong methods, no secret in an
error, and never a 500 whatever JSON arrives."""
from __future__ import annotations

import datetime
import json

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys import crypto
from tests.factories import KeyFactory
from tests.litellm.conftest import MASTER_KEY, assert_detail, assert_error

pytestmark = pytest.mark.django_db

BODY_ROUTES = [
    ("POST", "/key/generate"), ("POST", "/key/update"), ("POST", "/key/delete"), ("POST", "/key/regenerate"),
    ("POST", "/key/block"), ("POST", "/key/unblock"), ("POST", "/team/new"), ("POST", "/team/update"),
    ("POST", "/team/delete"), ("POST", "/team/member_add"), ("POST", "/team/member_delete"),
    ("POST", "/team/member_update"), ("POST", "/team/permissions_update"), ("POST", "/user/new"),
    ("POST", "/user/update"), ("POST", "/user/delete"), ("POST", "/organization/new"),
    ("PATCH", "/organization/update"), ("DELETE", "/organization/delete"), ("POST", "/organization/member_add"),
    ("PATCH", "/organization/member_update"), ("DELETE", "/organization/member_delete"),
]
QUERY_ROUTES = [
    "/key/info", "/key/list", "/team/info", "/team/list", "/team/permissions_list", "/user/info", "/user/list",
    "/organization/info", "/organization/list",
]
ALL_ROUTES = [path for _, path in BODY_ROUTES] + QUERY_ROUTES + ["/key/health", "/v1/access_group"]
FIELDS = [
    "key", "keys", "key_alias", "key_aliases", "models", "max_budget", "tpm_limit", "metadata", "duration", "user_id",
    "user_ids", "user_email", "user_role", "team_id", "team_ids", "organization_id", "organization_ids",
    "organization_alias", "team_alias", "member", "members_with_roles", "role", "team_member_permissions", "teams",
    "access_group_ids", "blocked", "new_key", "max_budget_in_team", "max_budget_in_organization", "page", "size",
]


def body_param(method: str, path: str):
    return pytest.param(method, path, id=f"{method} {path}")


@pytest.mark.parametrize("path", ALL_ROUTES)
def test_route_without_a_key_is_401_no_api_key(api, path):
    method = next((m for m, p in BODY_ROUTES if p == path), "POST" if path == "/key/health" else "GET")
    error = assert_error(api.call(method, path, key=None, json_body={}), 401, "auth_error")
    assert error["message"] == "Authentication Error, No api key passed in."


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        pytest.param("Basic abc", "Malformed API Key", id="no-bearer-prefix"),
        pytest.param("Bearer not-a-virtual-key", "expected to start with 'sk-'", id="no-sk-prefix"),
        pytest.param("Bearer sk-unknown-key-123456", "Invalid proxy server token", id="unknown-key"),
    ],
)
def test_bad_credentials_are_401_auth_error(api, header, fragment):
    response = api.client.get("/key/list", HTTP_AUTHORIZATION=header)
    error = assert_error(response, 401, "auth_error")
    assert fragment in error["message"]


def test_expired_key_is_401_expired_key_with_the_masked_key_as_param(api):
    key = KeyFactory()
    type(key).objects.filter(pk=key.pk).update(expires=timezone.now() - datetime.timedelta(seconds=1))
    error = assert_error(api.get("/key/list", key=key.raw), 401, "expired_key")
    assert error["param"] == crypto.mask(key.raw)
    assert key.raw not in json.dumps(error)


@pytest.mark.parametrize(("method", "path"), [body_param(m, p) for m, p in BODY_ROUTES])
def test_malformed_json_is_400_naming_the_body(api, method, path):
    assert_error(api.call(method, path, raw_body='{"models": ['), 400, "bad_request_error", param="body")


@pytest.mark.parametrize(("method", "path"), [body_param(m, p) for m, p in BODY_ROUTES])
def test_a_body_that_is_not_an_object_is_400(api, method, path):
    assert_error(api.call(method, path, json_body=["a", "b"]), 400, "bad_request_error", param="body")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/key/generate", id="GET /key/generate"),
        pytest.param("POST", "/key/info", id="POST /key/info"),
        pytest.param("POST", "/organization/delete", id="POST /organization/delete"),
        pytest.param("GET", "/organization/member_update", id="GET /organization/member_update"),
    ],
)
def test_wrong_method_is_405_in_the_error_shape(api, method, path):
    assert_error(api.call(method, path, json_body={}), 405, "method_not_allowed")


def test_wrong_method_on_access_groups_is_405_in_the_detail_shape(api):
    assert_detail(api.patch("/v1/access_group", {}), 405)


def test_no_secret_in_errors_of_key_routes(api):
    raw = "sk-this-secret-must-never-echo-01"
    for method, path, body in [
        ("POST", "/key/update", {"key": raw, "models": []}),
        ("POST", "/key/delete", {"keys": [raw]}),
        ("POST", "/key/regenerate", {"key": raw}),
        ("POST", "/key/block", {"key": raw}),
        ("GET", "/key/info", None),
    ]:
        response = api.call(method, path, json_body=body, query={"key": raw} if method == "GET" else None)
        assert response.status_code == 404, (path, response.content)
        assert raw not in response.content.decode() and MASTER_KEY not in response.content.decode()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
BODIES = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), JSON_VALUES, max_size=8)


@pytest.mark.parametrize(("method", "path"), [body_param(m, p) for m, p in BODY_ROUTES])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_any_json_body_never_yields_a_500(api, method, path, body):
    response = api.call(method, path, json_body=body)
    assert response.status_code < 500, response.content
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("path", QUERY_ROUTES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(st.sampled_from(FIELDS + ["status", "return_full_object", "sort_by"]),
                             st.text(max_size=20), max_size=5))
def test_any_query_never_yields_a_500(api, path, query):
    response = api.get(path, query)
    assert response.status_code < 500, response.content
