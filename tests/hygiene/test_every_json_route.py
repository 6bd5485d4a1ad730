"""Bad input on every JSON route: a 400 naming the field (or a 413 for a body too large), in the route's
error shape, never a 500, and nothing written. Routes are read from the URL conf, so a new route is
covered the day it is added."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver

from accessctl.jsonbody import MAX_JSON_DEPTH
from keys.api.litellm_models import UnsupportedRouteView
from tests.hygiene.conftest import World, client_for, database_dump, refusal

pytestmark = pytest.mark.django_db

BODY_METHODS = ("post", "put", "patch", "delete")
DETAIL_SHAPED = ("v1/access_group", "v1/unified_access_group")  # LiteLLM's FastAPI error shape (SPEC §7)
# The admin keeps Django's HTML; schema pages are GETs; SCIM has its own error shape and its own test below.
SKIPPED_PREFIXES = ("admin/", "api/schema/", "api/docs/", "scim/")


def _walk(patterns: list, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def json_routes() -> tuple[list[tuple[str, str]], set[str]]:
    """(method, route) of every route that takes a request body, and the LiteLLM routes accessctl answers
    as unsupported (a 400 naming `route` whatever the body: nothing is read, nothing written)."""
    routes, unsupported = [], set()
    for route, callback in _walk(get_resolver().url_patterns):
        view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if view is None or route.startswith(SKIPPED_PREFIXES):
            continue
        if issubclass(view, UnsupportedRouteView):
            unsupported.add(route)
        routes.extend((method, route) for method in BODY_METHODS if hasattr(view, method))
    return routes, unsupported


JSON_ROUTES, UNSUPPORTED_ROUTES = json_routes()
ROUTE_PARAMS = [pytest.param(method, route, id=f"{method.upper()} /{route}") for method, route in JSON_ROUTES]

# What each path parameter names, in the world every test starts from: real rows, so a route that
# ignored a bad body would really write.
PATH_VALUES: dict[str, Callable[[World], str]] = {
    "organization_id": lambda w: str(w.org.pk),
    "team_id": lambda w: str(w.team.pk),
    "user_id": lambda w: w.member.user_id,
    "token": lambda w: w.key.token,
    "key": lambda w: w.key.raw,
    "access_group_id": lambda w: str(w.group.pk),
    "model_name": lambda w: w.model_name,
    "server_id": lambda w: w.server_id,
    "agent_id": lambda w: w.agent_id,
    "model_id": lambda w: "a-model-id",  # LiteLLM's deployment id: one path segment
    "job_id": lambda w: "00000000-0000-4000-8000-000000000000",  # the body is refused before the lookup
}


# Routes written as regular expressions, and a path each matches.
REGEX_PATHS = {r"^(?:v1/)?credentials(?:/.*)?$": "/credentials"}


def url_of(route: str, world: World) -> str:
    if route.startswith("^"):
        assert route in REGEX_PATHS, f"add a path that /{route} matches to REGEX_PATHS"
        return REGEX_PATHS[route]

    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name in PATH_VALUES, f"add the path parameter {name!r} of /{route} to PATH_VALUES"
        return PATH_VALUES[name](world)

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", value, route)


def send(client, method: str, url: str, body: str | bytes):
    return getattr(client, method)(url, data=body, content_type="application/json")


def test_json_routes_are_read_from_the_url_conf():
    routes = {route for _, route in JSON_ROUTES}
    # A sample of each interface: LiteLLM routes, REST, access groups in LiteLLM's shape, the gateway.
    assert {"key/generate", "team/new", "api/v1/keys/", "api/v1/teams/<str:team_id>/", "v1/access_group",
            "api/v1/authz/check", "api/v1/usage"} <= routes
    assert len(JSON_ROUTES) >= 60


# --- bodies that break the parser, whatever the route ------------------------------------------

DEEP_ARRAY = "[" * 3000 + "]" * 3000
DEEP_METADATA = json.dumps({"metadata": 1}).replace("1", '{"a":' * 500 + "1" + "}" * 500)
JUST_TOO_DEEP = json.dumps({"metadata": 1}).replace("1", "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
FIVE_MEGABYTES = json.dumps({"metadata": {"blob": "x" * 5_000_000}})

BODY_CASES = [
    pytest.param(DEEP_ARRAY, 400, "body", id="nested-3000-deep"),
    pytest.param(DEEP_METADATA, 400, "metadata", id="metadata-nested-500-deep"),
    pytest.param(JUST_TOO_DEEP, 400, "metadata", id="metadata-one-level-too-deep"),
    pytest.param(FIVE_MEGABYTES, 413, "body", id="five-megabytes"),
]


@pytest.mark.parametrize(("body", "status", "param"), BODY_CASES)
@pytest.mark.parametrize(("method", "route"), ROUTE_PARAMS)
def test_bad_body_on_every_json_route_is_refused_naming_the_field_and_changes_nothing(
    master, world, method, route, body, status, param
):
    before = database_dump()

    response = send(client_for(master), method, url_of(route, world), body)

    if route.startswith(DETAIL_SHAPED) and status != 400:
        param = None  # LiteLLM's `{"detail": "..."}` names no field
    if route in UNSUPPORTED_ROUTES:
        status, param = 400, "route"
    assert refusal(response) == (status, param), response.content[:300]
    assert database_dump() == before


def test_deep_body_from_a_viewer_key_is_never_a_500_on_any_route(world):
    """One test over every route (a viewer changes nothing anyway): refused for who they are (401/403/404)
    or for the body (400 naming it); never a server error."""
    client = client_for(world.viewer_key.raw)
    wrong = {}
    for method, route in JSON_ROUTES:
        response = send(client, method, url_of(route, world), DEEP_ARRAY)
        status, param = refusal(response)
        if status not in (400, 401, 403, 404) or status == 400 and param not in ("body", "route"):
            wrong[f"{method.upper()} /{route}"] = (status, param)
    assert wrong == {}


def test_metadata_as_deep_as_allowed_is_accepted(master, world):
    metadata: dict = {}
    for _ in range(MAX_JSON_DEPTH - 2):  # the body itself is the first level, metadata the second
        metadata = {"a": metadata}
    body = json.dumps({"key": world.key.token, "metadata": metadata})

    response = send(client_for(master), "post", "/key/update", body)

    assert response.status_code == 200, response.content
    world.key.refresh_from_db()
    assert world.key.metadata == metadata


# --- out-of-range values, on every route that takes the field ------------------------------------

HUGE_DURATION = "9999999999d"

# A body each route accepts as it is: a bad field added to it is the only reason to refuse.
BASES: dict[tuple[str, str], Callable[[World], dict[str, Any]]] = {
    ("post", "key/generate"): lambda w: {},
    ("post", "key/update"): lambda w: {"key": w.key.token},
    ("post", "key/regenerate"): lambda w: {"key": w.key.token},
    ("post", "key/<str:key>/regenerate"): lambda w: {},
    ("post", "team/new"): lambda w: {"team_alias": "hygiene-new-team"},
    ("post", "team/update"): lambda w: {"team_id": str(w.team.pk)},
    ("post", "organization/new"): lambda w: {"organization_alias": "hygiene-new-org"},
    ("patch", "organization/update"): lambda w: {"organization_id": str(w.org.pk)},
    ("post", "user/new"): lambda w: {"user_id": "hygiene-new@example.test"},
    ("post", "user/update"): lambda w: {"user_id": w.member.user_id},
    ("post", "api/v1/keys/"): lambda w: {},
    ("patch", "api/v1/keys/<str:token>/"): lambda w: {},
    ("post", "api/v1/teams/"): lambda w: {"team_alias": "hygiene-new-team"},
    ("patch", "api/v1/teams/<str:team_id>/"): lambda w: {},
    ("post", "api/v1/organizations/"): lambda w: {"organization_alias": "hygiene-new-org"},
    ("patch", "api/v1/organizations/<str:organization_id>/"): lambda w: {},
    ("post", "api/v1/users/"): lambda w: {"user_id": "hygiene-new@example.test"},
    ("patch", "api/v1/users/<str:user_id>/"): lambda w: {},
    ("post", "api/v1/usage"): lambda w: {"key": w.key.raw, "model": "openai/gpt-4o", "spend": 0.01},
    ("post", "team/member_add"): lambda w: {"team_id": str(w.team.pk),
                                            "member": {"user_id": w.org_admin.user_id, "role": "user"}},
    ("post", "team/member_update"): lambda w: {"team_id": str(w.team.pk), "user_id": w.member.user_id},
    ("patch", "organization/member_update"): lambda w: {"organization_id": str(w.org.pk),
                                                        "user_id": w.member.user_id},
}

BUDGETED = [
    "key/generate", "key/update", "team/new", "team/update", "organization/new", "organization/update",
    "user/new", "user/update", "api/v1/keys/", "api/v1/keys/<str:token>/", "api/v1/teams/",
    "api/v1/teams/<str:team_id>/", "api/v1/organizations/", "api/v1/organizations/<str:organization_id>/",
    "api/v1/users/", "api/v1/users/<str:user_id>/",
]
KEYS_WITH_DURATION = ["key/generate", "key/update", "api/v1/keys/", "api/v1/keys/<str:token>/"]
SPEND_SETTERS = ["key/update", "api/v1/keys/<str:token>/", "team/update", "user/update", "api/v1/users/<str:user_id>/"]

FIELD_CASES = [
    ("duration", {"duration": HUGE_DURATION}, KEYS_WITH_DURATION),
    ("budget_duration", {"budget_duration": HUGE_DURATION}, BUDGETED),
    ("max_budget", {"max_budget": 1e13}, BUDGETED),
    ("soft_budget", {"soft_budget": 1e300}, BUDGETED),
    ("model_max_budget", {"model_max_budget": {"openai/gpt-4o": 1e308}}, BUDGETED),
    ("spend", {"spend": 1e308}, [*SPEND_SETTERS, "api/v1/usage"]),
    ("prompt_tokens", {"prompt_tokens": 10**13}, ["api/v1/usage"]),
    ("completion_tokens", {"completion_tokens": 10**30}, ["api/v1/usage"]),
    ("max_budget_in_team", {"max_budget_in_team": 1e13}, ["team/member_update"]),
    ("max_budget_in_organization", {"max_budget_in_organization": 1e13}, ["organization/member_update"]),
]


def _field_params() -> Iterator[Any]:
    for field, bad, routes in FIELD_CASES:
        for method, route in JSON_ROUTES:
            if route in routes and (method, route) in BASES:
                yield pytest.param(method, route, field, bad, id=f"{field} on {method.upper()} /{route}")


@pytest.mark.parametrize(("method", "route", "field", "bad"), list(_field_params()))
def test_out_of_range_value_is_a_400_naming_the_field_and_changes_nothing(master, world, method, route, field, bad):
    base = BASES[(method, route)](world)
    before = database_dump()

    response = send(client_for(master), method, url_of(route, world), json.dumps({**base, **bad}))

    assert refusal(response) == (400, field), response.content[:300]
    assert database_dump() == before


def test_out_of_range_values_on_any_route_are_never_a_500(master, world):
    """Every bad value at once, on every route (with its accepted body when it has one): refused or
    ignored, never a server error; a refusal writes nothing."""
    bad = {name: value for _, values, _ in FIELD_CASES for name, value in values.items()}
    client = client_for(master)
    wrong = {}
    for method, route in JSON_ROUTES:
        with transaction.atomic():  # rolled back: a route that ignores the values and deletes its row
            base = BASES.get((method, route), lambda w: {})(world)  # leaves it for the next route
            before = database_dump()
            response = send(client, method, url_of(route, world), json.dumps({**base, **bad}))
            if response.status_code >= 500:
                wrong[f"{method.upper()} /{route}"] = response.status_code
            elif response.status_code >= 400:
                refusal(response)
                if database_dump() != before:
                    wrong[f"{method.upper()} /{route}"] = "refused, yet wrote"
            transaction.set_rollback(True)
    assert wrong == {}


def test_every_budgeted_route_in_the_tables_exists():
    routes = {route for _, route in JSON_ROUTES}
    for _, _, case_routes in FIELD_CASES:
        assert set(case_routes) <= routes
    assert {route for _, route in BASES} <= routes


# --- SCIM (its own error shape: RFC 7644 §3.12) --------------------------------------------------

SCIM_TOKEN = "scim-token-for-hygiene-0001"


def _scim_routes(world: World) -> list[tuple[str, str]]:
    member = f"/scim/v2/Users/{world.member.pk}"
    return [("post", "/scim/v2/Users"), ("post", "/scim/v2/Users/.search"), ("post", "/scim/v2/Groups"),
            ("post", "/scim/v2/Groups/.search"), ("put", member), ("patch", member)]


@pytest.mark.parametrize(("body", "status", "param"), BODY_CASES)
def test_bad_body_on_every_scim_write_is_a_scim_error_and_changes_nothing(client, settings, world, body, status, param):
    settings.ACCESSCTL_SCIM_TOKEN = SCIM_TOKEN
    settings.ACCESSCTL_SCIM_GROUPS = {"target": "team", "organization_id": str(world.org.pk)}
    before = database_dump()
    answers = {}
    for method, url in _scim_routes(world):
        response = getattr(client, method)(url, data=body, content_type="application/scim+json",
                                           HTTP_AUTHORIZATION=f"Bearer {SCIM_TOKEN}")
        error = response.json()
        answers[f"{method.upper()} {url}"] = (response.status_code, int(error["status"]), error["schemas"])

    expected = (status, status, ["urn:ietf:params:scim:api:messages:2.0:Error"])
    assert answers == {name: expected for name in answers}
    assert database_dump() == before
