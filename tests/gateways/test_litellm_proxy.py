"""The real LiteLLM proxy with the accessctl plugin, driven by the official openai SDK (SPEC §6).

accessctl decides every call (allowed, refused with its reason, refused when it cannot be asked), hands
LiteLLM the key's limits so LiteLLM's own limiters enforce them, and receives each call's spend from the
plugin's callback. The tests that stop accessctl come last: the servers are shared by the session.
"""
from __future__ import annotations

import json
import time

import openai
import pytest

from .conftest import INPUT_COST, MOCK_TEXT, OUTPUT_COST, eventually, postgres_pass_only

pytestmark = postgres_pass_only

GPT = "openai/gpt-4o"
MINI = "openai/gpt-4o-mini"
HAIKU = "anthropic/claude-3-5-haiku"
MISTRAL = "mistral/mistral-small"
CALL_COST = 10 * INPUT_COST + 20 * OUTPUT_COST  # the mock's usage: 10 prompt and 20 completion tokens
MESSAGES = [{"role": "user", "content": "hello"}]


def chat(proxy, key: str, model: str):
    return proxy.client(key).chat.completions.create(model=model, messages=MESSAGES)


def refusal(excinfo) -> dict:
    return excinfo.value.body if isinstance(excinfo.value.body, dict) and "type" in excinfo.value.body else (
        excinfo.value.body or {}
    ).get("error", {})


def test_allowed_model_answers_through_the_proxy(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT])

    completion = chat(litellm_proxy, key, GPT)

    assert completion.choices[0].message.content == MOCK_TEXT


def test_model_outside_the_keys_rules_is_403_with_accessctls_reason(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT])

    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        chat(litellm_proxy, key, MINI)

    assert excinfo.value.status_code == 403
    assert refusal(excinfo)["type"] == "key_model_access_denied"


def test_unknown_key_is_401(litellm_proxy):
    with pytest.raises(openai.AuthenticationError) as excinfo:
        chat(litellm_proxy, "sk-not-a-key-accessctl-knows", GPT)

    assert excinfo.value.status_code == 401
    assert refusal(excinfo)["type"] == "auth_error"


def test_key_blocked_in_accessctl_is_refused_on_the_very_next_call(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT])
    chat(litellm_proxy, key, GPT)

    accessctl.api("POST", "/key/block", {"key": key})

    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        chat(litellm_proxy, key, GPT)
    assert refusal(excinfo)["type"] == "key_blocked"


def test_spend_reported_by_the_callback_lands_on_key_team_organization_and_user(litellm_proxy, accessctl):
    org = accessctl.organization()
    team = accessctl.team(organization_id=org)
    user = accessctl.user()
    key = accessctl.key(user_id=user, team_id=team, models=[GPT])

    raw = litellm_proxy.client(key).chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES)
    cost = float(raw.headers["x-litellm-response-cost"])

    assert cost == pytest.approx(CALL_COST)
    eventually(lambda: accessctl.spend("key", key) > 0)
    for kind, ident in (("key", key), ("team", team), ("organization", org), ("user", user)):
        assert accessctl.spend(kind, ident) == pytest.approx(cost), kind


def test_spend_of_many_calls_is_counted_once_each(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT])

    for _ in range(3):
        chat(litellm_proxy, key, GPT)

    eventually(lambda: accessctl.spend("key", key) >= 3 * CALL_COST * 0.999)
    time.sleep(0.5)  # a duplicate report would land by now
    assert accessctl.spend("key", key) == pytest.approx(3 * CALL_COST)


def test_calls_that_exhaust_the_budget_refuse_the_next_call(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT], max_budget=CALL_COST * 1.5)

    chat(litellm_proxy, key, GPT)
    chat(litellm_proxy, key, GPT)  # the budget still had room when this one was decided

    eventually(lambda: accessctl.check(key, GPT).status_code == 403)
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        chat(litellm_proxy, key, GPT)
    assert refusal(excinfo)["type"] == "budget_exceeded"


def test_team_access_group_narrows_what_the_key_reaches(litellm_proxy, accessctl):
    org = accessctl.organization()
    team = accessctl.team(organization_id=org)
    accessctl.api("POST", "/v1/access_group", {
        "access_group_name": f"haiku-only-{team[:8]}", "access_model_names": [HAIKU], "assigned_team_ids": [team],
    })
    key = accessctl.key(team_id=team, models=[HAIKU, GPT])

    assert chat(litellm_proxy, key, HAIKU).choices[0].message.content == MOCK_TEXT
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        chat(litellm_proxy, key, GPT)
    assert refusal(excinfo)["type"] == "team_model_access_denied"


def test_organization_soft_delete_stops_its_keys(litellm_proxy, accessctl):
    org = accessctl.organization()
    key = accessctl.key(organization_id=org, models=[GPT])
    chat(litellm_proxy, key, GPT)

    accessctl.api("DELETE", "/organization/delete", {"organization_ids": [org]})

    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        chat(litellm_proxy, key, GPT)
    assert refusal(excinfo)["type"] == "organization_deleted"


def test_rpm_limit_from_accessctl_is_enforced_by_litellm(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT], rpm_limit=2)

    chat(litellm_proxy, key, GPT)
    chat(litellm_proxy, key, GPT)
    with pytest.raises(openai.RateLimitError) as excinfo:
        chat(litellm_proxy, key, GPT)

    assert excinfo.value.status_code == 429
    assert accessctl.check(key, GPT).status_code == 200  # LiteLLM refused it, not accessctl


def test_model_list_through_the_proxy_lists_only_the_keys_models(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT, HAIKU])

    listed = {model.id for model in litellm_proxy.client(key).models.list()}

    assert listed == {GPT, HAIKU}


def test_model_list_of_a_key_that_reaches_nothing_is_empty(litellm_proxy, accessctl):
    org = accessctl.organization(models=["no-default-models"])
    key = accessctl.key(organization_id=org)

    assert [model.id for model in litellm_proxy.client(key).models.list()] == []


def test_model_list_of_a_blocked_key_is_403(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT])
    accessctl.api("POST", "/key/block", {"key": key})

    with pytest.raises(openai.PermissionDeniedError):
        litellm_proxy.client(key).models.list()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param('{"messages": [{"role": "user", "content": "hi"}]}', 400, id="no-model"),
        pytest.param("this is not json", 400, id="not-json"),
        pytest.param('["a", "list"]', 400, id="json-not-an-object"),
        pytest.param('{"model": 42, "messages": []}', 400, id="model-not-a-string"),
    ],
)
def test_malformed_request_is_a_clean_400(litellm_proxy, accessctl, body, status):
    key = accessctl.key(models=[GPT])

    response = litellm_proxy.post("/chat/completions", key, body)

    assert response.status_code == status, response.text
    assert response.json()["error"]["type"]


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer {key} trailing-garbage", id="space-inside"),
        pytest.param("Bearer {key}\tx", id="tab-inside"),
        pytest.param("Bearer  ", id="blank"),
        pytest.param("{key}", id="no-scheme"),
    ],
)
def test_key_with_stray_whitespace_or_no_scheme_is_a_clean_401(litellm_proxy, accessctl, authorization):
    key = accessctl.key(models=[GPT])

    response = litellm_proxy.post(
        "/chat/completions", None, json.dumps({"model": GPT, "messages": []}),
        headers={"Authorization": authorization.format(key=key)},
    )

    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "auth_error"


def test_litellm_management_routes_are_closed_to_virtual_keys(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT])

    response = litellm_proxy.post("/key/generate", key, "{}")

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "route_not_allowed"


def test_streaming_call_is_decided_and_answered(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT])

    stream = litellm_proxy.client(key).chat.completions.create(model=GPT, messages=MESSAGES, stream=True)

    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == MOCK_TEXT
    eventually(lambda: accessctl.spend("key", key) > 0)


def _key_reaching(accessctl, *, agents=(), mcp_servers=()) -> str:
    key = accessctl.key(models=[GPT])
    accessctl.api("POST", "/v1/access_group", {
        "access_group_name": f"tools-{key[-8:]}", "access_model_names": [GPT], "access_agent_ids": list(agents),
        "access_mcp_server_ids": list(mcp_servers), "assigned_key_ids": [key],
    })
    return key


def test_agent_route_checks_the_agent_it_names(litellm_proxy, accessctl):
    key = _key_reaching(accessctl, agents=["research-agent"])
    message = json.dumps({"jsonrpc": "2.0", "id": "1", "method": "message/send", "params": {}})

    response = litellm_proxy.post("/a2a/support-triage/message/send", key, message)

    # LiteLLM answers A2A routes in JSON-RPC: accessctl's reason is the error's data.
    assert response.status_code == 403, response.text
    assert response.json()["error"]["data"]["type"] == "key_agent_access_denied", response.text


def test_mcp_route_checks_the_server_it_names(litellm_proxy, accessctl):
    key = _key_reaching(accessctl, mcp_servers=["github"])

    response = litellm_proxy.post("/mcp/filesystem", key, "{}")
    by_header = litellm_proxy.post("/mcp/", key, "{}", headers={"x-mcp-servers": "filesystem"})

    # LiteLLM answers MCP routes with FastAPI's {"detail"}: accessctl's message, with its status.
    for refused in (response, by_header):
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"] == "Key not allowed to access MCP server 'filesystem'.", refused.text


# --- accessctl unreachable: refused, then recovered (these stop the shared accessctl; keep them last) ---


def test_accessctl_frozen_refuses_within_the_timeout_and_recovers(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT])
    chat(litellm_proxy, key, GPT)

    accessctl.pause()
    try:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as excinfo:
            chat(litellm_proxy, key, GPT)
        elapsed = time.monotonic() - started
    finally:
        accessctl.resume()

    assert excinfo.value.status_code == 503
    assert refusal(excinfo)["type"] == "accessctl_unavailable"
    assert elapsed < 5  # the plugin's 1 s timeout, not the client's
    assert chat(litellm_proxy, key, GPT).choices[0].message.content == MOCK_TEXT


def test_accessctl_stopped_refuses_and_recovers_when_it_returns(litellm_proxy, accessctl):
    key = accessctl.key(models=[GPT])
    chat(litellm_proxy, key, GPT)

    accessctl.stop()
    try:
        with pytest.raises(openai.APIStatusError) as excinfo:
            chat(litellm_proxy, key, GPT)
    finally:
        accessctl.start()

    assert excinfo.value.status_code == 503
    assert refusal(excinfo)["type"] == "accessctl_unavailable"
    assert chat(litellm_proxy, key, GPT).choices[0].message.content == MOCK_TEXT
