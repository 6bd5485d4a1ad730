"""The OpenAPI 3 schema at `/api/schema/` documents every route with its request, response and error schemas."""
from __future__ import annotations

import pytest
from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

REST_OPERATIONS = [
    ("get", "/api/v1/organizations/"),
    ("post", "/api/v1/organizations/"),
    ("get", "/api/v1/organizations/{organization_id}/"),
    ("patch", "/api/v1/organizations/{organization_id}/"),
    ("delete", "/api/v1/organizations/{organization_id}/"),
    ("get", "/api/v1/organizations/{organization_id}/members/"),
    ("post", "/api/v1/organizations/{organization_id}/members/"),
    ("get", "/api/v1/organizations/{organization_id}/members/{user_id}/"),
    ("patch", "/api/v1/organizations/{organization_id}/members/{user_id}/"),
    ("delete", "/api/v1/organizations/{organization_id}/members/{user_id}/"),
    ("get", "/api/v1/teams/"),
    ("post", "/api/v1/teams/"),
    ("get", "/api/v1/teams/{team_id}/"),
    ("patch", "/api/v1/teams/{team_id}/"),
    ("delete", "/api/v1/teams/{team_id}/"),
    ("get", "/api/v1/teams/{team_id}/members/"),
    ("post", "/api/v1/teams/{team_id}/members/"),
    ("get", "/api/v1/teams/{team_id}/members/{user_id}/"),
    ("patch", "/api/v1/teams/{team_id}/members/{user_id}/"),
    ("delete", "/api/v1/teams/{team_id}/members/{user_id}/"),
    ("get", "/api/v1/users/"),
    ("post", "/api/v1/users/"),
    ("get", "/api/v1/users/{user_id}/"),
    ("patch", "/api/v1/users/{user_id}/"),
    ("delete", "/api/v1/users/{user_id}/"),
    ("get", "/api/v1/keys/"),
    ("post", "/api/v1/keys/"),
    ("get", "/api/v1/keys/{token}/"),
    ("patch", "/api/v1/keys/{token}/"),
    ("delete", "/api/v1/keys/{token}/"),
    ("post", "/api/v1/keys/{token}/block/"),
    ("post", "/api/v1/keys/{token}/unblock/"),
    ("post", "/api/v1/keys/{token}/regenerate/"),
    ("get", "/api/v1/access-groups/"),
    ("post", "/api/v1/access-groups/"),
    ("get", "/api/v1/access-groups/{access_group_id}/"),
    ("patch", "/api/v1/access-groups/{access_group_id}/"),
    ("delete", "/api/v1/access-groups/{access_group_id}/"),
    ("get", "/api/v1/catalog/models/"),
    ("post", "/api/v1/catalog/models/"),
    ("get", "/api/v1/catalog/models/{model_name}/"),
    ("patch", "/api/v1/catalog/models/{model_name}/"),
    ("delete", "/api/v1/catalog/models/{model_name}/"),
    ("get", "/api/v1/catalog/mcp-servers/"),
    ("post", "/api/v1/catalog/mcp-servers/"),
    ("get", "/api/v1/catalog/mcp-servers/{server_id}/"),
    ("patch", "/api/v1/catalog/mcp-servers/{server_id}/"),
    ("delete", "/api/v1/catalog/mcp-servers/{server_id}/"),
    ("get", "/api/v1/catalog/agents/"),
    ("post", "/api/v1/catalog/agents/"),
    ("get", "/api/v1/catalog/agents/{agent_id}/"),
    ("patch", "/api/v1/catalog/agents/{agent_id}/"),
    ("delete", "/api/v1/catalog/agents/{agent_id}/"),
    ("get", "/api/v1/audit-log/"),
]
LITELLM_PATHS = ["/key/generate", "/key/update", "/team/new", "/user/new", "/organization/new", "/v1/access_group"]
ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def openapi() -> dict:
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        document = SchemaGenerator().get_schema(request=None, public=True)
    return document


def _operation(openapi: dict, method: str, path: str) -> dict:
    assert path in openapi["paths"], f"{path} is not documented"
    assert method in openapi["paths"][path], f"{method.upper()} {path} is not documented"
    return openapi["paths"][path][method]


def test_schema_generation_has_no_errors(openapi):
    assert not GENERATOR_STATS._error_cache, dict(GENERATOR_STATS._error_cache)


@pytest.mark.parametrize(("method", "path"), REST_OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in REST_OPERATIONS])
def test_schema_rest_operation_documents_its_errors_in_the_spec_shape(openapi, method, path):
    responses = _operation(openapi, method, path)["responses"]

    for status in ("400", "401", "403", "404"):
        assert responses[status]["content"]["application/json"]["schema"]["$ref"] == ERROR_REF, status


@pytest.mark.parametrize(("method", "path"), REST_OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in REST_OPERATIONS])
def test_schema_rest_operation_documents_its_success_body(openapi, method, path):
    operation = _operation(openapi, method, path)
    success = next(status for status in operation["responses"] if status.startswith("2"))

    if method == "delete":
        assert success == "204"
    else:
        assert operation["responses"][success]["content"]["application/json"]["schema"]
    if method in ("post", "patch") and not path.endswith(("/block/", "/unblock/")):
        assert operation["requestBody"]["content"]["application/json"]["schema"]


@pytest.mark.parametrize(("method", "path"), REST_OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in REST_OPERATIONS])
def test_schema_rest_operation_documents_the_organization_header(openapi, method, path):
    parameters = _operation(openapi, method, path).get("parameters", [])

    assert any(p["in"] == "header" and p["name"] == "X-Organization-Id" for p in parameters)


def test_schema_lists_are_paginated_and_filterable(openapi):
    teams = _operation(openapi, "get", "/api/v1/teams/")
    page = teams["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]

    assert set(openapi["components"]["schemas"][page]["properties"]) == {"count", "next", "previous", "results"}
    assert {"page", "page_size", "team_id", "organization_id"} <= {p["name"] for p in teams["parameters"]}


def test_schema_error_component_is_the_spec_shape(openapi):
    error = openapi["components"]["schemas"]["Error"]
    body = openapi["components"]["schemas"][error["properties"]["error"]["$ref"].rsplit("/", 1)[-1]]

    assert set(body["properties"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", LITELLM_PATHS)
def test_schema_includes_the_litellm_compatible_routes(openapi, path):
    assert path in openapi["paths"]


def test_schema_endpoint_serves_openapi_3(db):
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_swagger_ui_is_served_from_our_own_static_files(db):
    response = Client().get("/api/docs/")

    assert response.status_code == 200
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in response.content
    assert b"cdn.jsdelivr.net" not in response.content
