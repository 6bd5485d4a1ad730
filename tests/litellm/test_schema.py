"""Every LiteLLM-compatible route is documented in `/api/schema/`: its method, request, success body and errors."""
from __future__ import annotations

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

KEY_TEAM_USER_ORG = [
    ("post", "/key/generate"), ("post", "/key/update"), ("post", "/key/delete"), ("post", "/key/regenerate"),
    ("post", "/key/{key}/regenerate"), ("get", "/key/info"), ("get", "/key/list"), ("post", "/key/block"),
    ("post", "/key/unblock"), ("post", "/key/health"),
    ("post", "/team/new"), ("post", "/team/update"), ("post", "/team/delete"), ("get", "/team/info"),
    ("get", "/team/list"), ("post", "/team/member_add"), ("post", "/team/member_delete"),
    ("post", "/team/member_update"), ("get", "/team/permissions_list"), ("post", "/team/permissions_update"),
    ("post", "/user/new"), ("get", "/user/info"), ("post", "/user/update"), ("post", "/user/delete"),
    ("get", "/user/list"),
    ("post", "/organization/new"), ("patch", "/organization/update"), ("delete", "/organization/delete"),
    ("get", "/organization/info"), ("get", "/organization/list"), ("post", "/organization/member_add"),
    ("patch", "/organization/member_update"), ("delete", "/organization/member_delete"),
]
ACCESS_GROUPS = [
    (method, f"{prefix}{suffix}")
    for prefix in ("/v1/access_group", "/v1/unified_access_group")
    for method, suffix in [("get", ""), ("post", ""), ("get", "/{access_group_id}"),
                           ("put", "/{access_group_id}"), ("delete", "/{access_group_id}")]
]
NO_BODY = {("post", "/key/health")}


def ids(operations: list[tuple[str, str]]) -> list[str]:
    return [f"{m.upper()} {p}" for m, p in operations]


@pytest.fixture(scope="module")
def openapi() -> dict:
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        return SchemaGenerator().get_schema(request=None, public=True)


def operation(openapi: dict, method: str, path: str) -> dict:
    assert method in openapi["paths"].get(path, {}), f"{method.upper()} {path} is not documented"
    return openapi["paths"][path][method]


def ref(response: dict) -> str:
    return response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


@pytest.mark.parametrize(("method", "path"), KEY_TEAM_USER_ORG + ACCESS_GROUPS, ids=ids(KEY_TEAM_USER_ORG + ACCESS_GROUPS))
def test_litellm_route_documents_its_request_and_success_body(openapi, method, path):
    op = operation(openapi, method, path)
    success = next(status for status in op["responses"] if status.startswith("2"))
    if method == "delete" and path.startswith("/v1/"):
        assert success == "204"
    else:
        assert op["responses"][success]["content"]["application/json"]["schema"]
    if method != "get" and (method, path) not in NO_BODY and success != "204":
        assert op["requestBody"]["content"]["application/json"]["schema"]


@pytest.mark.parametrize(("method", "path"), KEY_TEAM_USER_ORG, ids=ids(KEY_TEAM_USER_ORG))
def test_litellm_route_documents_errors_in_the_spec_shape(openapi, method, path):
    responses = operation(openapi, method, path)["responses"]
    if (method, path) not in NO_BODY:
        assert ref(responses["400"]) == "Error"
    assert ref(responses["401"]) == "Error"


@pytest.mark.parametrize(("method", "path"), ACCESS_GROUPS, ids=ids(ACCESS_GROUPS))
def test_access_group_route_documents_errors_in_the_detail_shape(openapi, method, path):
    responses = operation(openapi, method, path)["responses"]
    assert ref(responses["403"]) == "DetailError"


def test_key_generate_documents_the_secret_and_its_hash(openapi):
    body = operation(openapi, "post", "/key/generate")["responses"]["200"]
    fields = openapi["components"]["schemas"][ref(body)]["properties"]
    assert {"key", "token", "token_id", "key_name", "expires", "litellm_budget_table"} <= set(fields)
