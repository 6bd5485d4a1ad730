"""SPEC §2's key_type / allowed_routes as a table: each kind of key × each kind of route → allowed, or 403
`key_route_access_denied`. Written from SPEC §2 and LiteLLM's route groups, not read off the policy; pure
functions, no database."""
from __future__ import annotations

import pytest

from accessctl.policy import (
    GATEWAY_ROUTES,
    KEY_TYPES,
    ROUTE_DENIED,
    Actor,
    Target,
    can_change_routes,
    may_call_route,
    refused_gateway_routes,
    routes_within,
)

# (path, method) of each kind of route the API serves, and which key types may call it.
ROUTES = {
    "gateway check": ("/api/v1/authz/check", "POST"),
    "gateway check (query form)": ("/api/v1/authz/check", "GET"),
    "usage report": ("/api/v1/usage", "POST"),
    "model list": ("/v1/models", "GET"),
    "model list alias": ("/models", "GET"),
    "model info": ("/model/info", "GET"),
    "model group info": ("/model_group/info", "GET"),
    "LiteLLM key generate": ("/key/generate", "POST"),
    "LiteLLM key update": ("/key/update", "POST"),
    "LiteLLM key info": ("/key/info", "GET"),
    "LiteLLM key list": ("/key/list", "GET"),
    "LiteLLM key health (a read by POST)": ("/key/health", "POST"),
    "LiteLLM team new": ("/team/new", "POST"),
    "LiteLLM team info": ("/team/info", "GET"),
    "LiteLLM organization delete": ("/organization/delete", "DELETE"),
    "LiteLLM access group update": ("/v1/access_group/g1", "PUT"),
    "REST key list": ("/api/v1/keys/", "GET"),
    "REST key create": ("/api/v1/keys/", "POST"),
    "REST key change": ("/api/v1/keys/abc/", "PATCH"),
    "REST team delete": ("/api/v1/teams/t1/", "DELETE"),
    "REST audit log": ("/api/v1/audit/", "GET"),
}
MODEL_ROUTES = {"gateway check", "gateway check (query form)", "usage report", "model list", "model list alias",
                "model info", "model group info"}
MODEL_INFO = {"model info", "model group info"}
READS = {"model list", "model list alias", "model info", "model group info", "LiteLLM key info", "LiteLLM key list",
         "LiteLLM key health (a read by POST)", "LiteLLM team info", "REST key list", "REST audit log"}
MAY_CALL = {
    "default": set(ROUTES),
    "llm_api": MODEL_ROUTES,
    # LiteLLM's management routes: everything but the model routes, whose info routes are in every group.
    "management": (set(ROUTES) - MODEL_ROUTES) | MODEL_INFO,
    "read_only": READS,
}


def _rows():
    for key_type in KEY_TYPES:
        for route, (path, method) in ROUTES.items():
            yield pytest.param(key_type, path, method, route in MAY_CALL[key_type], id=f"{key_type} | {route}")


@pytest.mark.parametrize(("key_type", "path", "method", "allowed"), list(_rows()))
def test_key_type_route(key_type: str, path: str, method: str, allowed: bool):
    verdict = may_call_route(key_type, [], path, method)

    assert verdict.allowed is allowed, verdict.message
    if not allowed:
        assert (verdict.status, verdict.type) == (403, ROUTE_DENIED)


def test_route_table_covers_every_key_type():
    assert set(MAY_CALL) == set(KEY_TYPES)


@pytest.mark.parametrize(
    ("allowed_routes", "path", "method", "allowed"),
    [
        pytest.param(["/key/info"], "/key/info", "GET", True, id="exact path"),
        pytest.param(["/key/info"], "/key/list", "GET", False, id="another path"),
        pytest.param(["/key"], "/key/generate", "POST", True, id="path prefix"),
        pytest.param(["/key"], "/keyring", "GET", False, id="a prefix is a whole segment"),
        pytest.param(["/team/*"], "/team/member_add", "POST", True, id="wildcard"),
        pytest.param(["/team/*"], "/key/info", "GET", False, id="wildcard elsewhere"),
        pytest.param(["/api/v1/keys"], "/api/v1/keys/", "POST", True, id="trailing slash ignored"),
        pytest.param(["/api/v1/keys/"], "/api/v1/keys/abc/block/", "POST", True, id="REST sub-route"),
        pytest.param(["info_routes"], "/key/info", "GET", True, id="group: info route"),
        pytest.param(["info_routes"], "/key/update", "POST", False, id="group: info routes never write"),
        pytest.param(["llm_api_routes"], "/api/v1/authz/check", "POST", True, id="group: model route"),
        pytest.param(["llm_api_routes"], "/key/info", "GET", False, id="group: model routes only"),
        pytest.param(["management_routes"], "/api/v1/authz/check", "GET", False, id="group: no gateway check"),
        pytest.param(["management_routes", "/api/v1/authz/check"], "/api/v1/authz/check", "GET", True,
                     id="group plus a path"),
    ],
)
def test_allowed_routes_route(allowed_routes, path, method, allowed):
    assert may_call_route("default", allowed_routes, path, method).allowed is allowed


def test_allowed_routes_narrow_the_key_type_further():
    assert not may_call_route("management", ["/key/info"], "/key/generate", "POST").allowed
    assert may_call_route("management", ["/key/info"], "/key/info", "GET").allowed


def test_allowed_routes_never_widen_the_key_type():
    assert not may_call_route("llm_api", ["/key/generate"], "/key/generate", "POST").allowed


def test_unrestricted_key_is_refused_no_gateway_route():
    assert refused_gateway_routes("default", []) == frozenset()


def test_management_key_is_refused_the_gateway_check_and_model_list_but_not_model_info():
    refused = refused_gateway_routes("management", [])

    assert {"/api/v1/authz/check", "/api/v1/usage", "/v1/models", "/models"} <= refused
    assert "/model/info" not in refused
    assert refused <= set(GATEWAY_ROUTES)


# --- a key never widens itself ------------------------------------------------------------------

UNRESTRICTED = ("default", [])


@pytest.mark.parametrize(
    ("new", "old", "within"),
    [
        pytest.param(("llm_api", []), UNRESTRICTED, True, id="anything narrows an unrestricted key"),
        pytest.param(UNRESTRICTED, ("management", []), False, id="back to default widens"),
        pytest.param(("llm_api", []), ("management", []), False, id="another type widens"),
        pytest.param(("management", ["/key/info"]), ("management", []), True, id="same type, fewer routes"),
        pytest.param(("default", ["/key/info"]), ("management", []), True, id="management paths within management"),
        pytest.param(("default", ["/api/v1"]), ("management", []), False, id="a prefix over the gateway check"),
        pytest.param(("default", ["management_routes"]), ("default", ["/key/info"]), False, id="group over a path"),
        pytest.param(("default", ["/key/info"]), ("default", ["/key"]), True, id="path under a prefix"),
        pytest.param(("default", ["/key/*"]), ("default", ["/key"]), True, id="wildcard under a prefix"),
        pytest.param(("default", ["/key*"]), ("default", ["/key"]), False, id="wildcard past a prefix"),
        pytest.param(("default", []), ("default", ["/key"]), False, id="dropping the routes widens"),
        pytest.param(("read_only", []), ("default", ["info_routes"]), True, id="read_only within info_routes"),
    ],
)
def test_routes_within(new, old, within):
    assert routes_within(new, old) is within


SELF = "a" * 64
OTHER = "b" * 64


def test_key_widening_itself_is_refused():
    actor = Actor(user_id="me", platform_role="proxy_admin", key_token=SELF)

    verdict = can_change_routes(actor, Target(key_token=SELF), new=UNRESTRICTED, old=("management", []))

    assert (verdict.allowed, verdict.status) == (False, 403)


def test_key_narrowing_itself_is_allowed():
    actor = Actor(user_id="me", platform_role="internal_user", key_token=SELF)

    assert can_change_routes(actor, Target(key_token=SELF), new=("management", ["/key/info"]),
                             old=("management", [])).allowed


def test_key_widening_another_key_is_left_to_the_update_rules():
    actor = Actor(user_id="me", platform_role="internal_user", key_token=OTHER)

    assert can_change_routes(actor, Target(key_token=SELF), new=UNRESTRICTED, old=("llm_api", [])).allowed
