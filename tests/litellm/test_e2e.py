"""End to end: the real server in a subprocess, driven over HTTP with `requests` as a LiteLLM client would.

The server gets its own SQLite file, migrated here, so it and this test see the same database whatever
database the rest of the suite runs on.
"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
MASTER = "sk-e2e-master-key-000001"
GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    """A LiteLLM-style client: bearer key, JSON in and out."""

    def __init__(self, base: str, key: str):
        self.base, self.key = base, key

    def __call__(self, method: str, path: str, body: dict | None = None, **params) -> requests.Response:
        return requests.request(
            method, self.base + path, json=body, params=params or None, timeout=10,
            headers={"Authorization": f"Bearer {self.key}"},
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    database = tmp_path_factory.mktemp("e2e") / "e2e.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "ACCESSCTL_MASTER_KEY": MASTER,
        "CACHE_URL": "",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    port = free_port()
    log = database.with_name("server.log")
    process = subprocess.Popen(
        [str(GUNICORN), "accessctl.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),  # a file: a full pipe would stall it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still loading the app
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def error_type(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["type"]


def test_litellm_client_end_to_end(server):
    master = Client(server, MASTER)

    # An organization with an org admin, and another organization the admin is not in.
    org = master("POST", "/organization/new", {"organization_alias": "e2e", "models": ["openai/*"]}).json()
    other_org = master("POST", "/organization/new", {"organization_alias": "elsewhere"}).json()
    assert org["litellm_budget_table"] is not None
    added = master("POST", "/organization/member_add", {
        "organization_id": org["organization_id"], "member": {"user_id": "boss@e2e.test", "role": "org_admin"},
    })
    assert added.status_code == 200
    boss = Client(server, master("POST", "/key/generate", {"user_id": "boss@e2e.test"}).json()["key"])

    # The org admin creates a team inside the organization, and is refused outside it.
    team = boss("POST", "/team/new", {
        "team_alias": "e2e-team", "organization_id": org["organization_id"],
        "models": ["openai/gpt-4o", "openai/gpt-4o-mini"],
        "team_member_permissions": ["/key/generate", "/key/update", "/key/info"],
    })
    assert team.status_code == 200, team.text
    team_id = team.json()["team_id"]
    assert {"user_id": "boss@e2e.test", "user_email": None, "role": "admin"} in team.json()["members_with_roles"]
    outside = boss("POST", "/team/new", {"team_alias": "x", "organization_id": other_org["organization_id"]})
    assert error_type(outside) == (400, "bad_request_error")
    assert error_type(boss("POST", "/team/new", {"team_alias": "global"})) == (401, "auth_error")

    # A member joins through /user/new with team_id: their first key is bound to the team.
    new_user = boss("POST", "/user/new", {"user_id": "dev@e2e.test", "team_id": team_id,
                                          "organization_id": org["organization_id"]})
    assert new_user.status_code == 200, new_user.text
    dev = Client(server, new_user.json()["key"])
    assert dev("GET", "/key/info").json()["info"]["team_id"] == team_id

    # Member permissions: generate, update (not the budget) and info allowed; delete and regenerate refused.
    generated = dev("POST", "/key/generate", {"team_id": team_id, "models": ["openai/gpt-4o"]})
    assert generated.status_code == 200, generated.text
    dev_key = generated.json()["key"]
    assert dev("POST", "/key/update", {"key": dev_key, "key_alias": "dev-key"}).json()["key_alias"] == "dev-key"
    assert error_type(dev("POST", "/key/update", {"key": dev_key, "max_budget": 10})) == (403, "auth_error")
    assert dev("GET", "/key/info", key=dev_key).json()["info"]["key_alias"] == "dev-key"
    assert error_type(dev("POST", "/key/delete", {"keys": [dev_key]})) == (401, "team_member_permission_error")
    assert error_type(dev("POST", "/key/regenerate", {"key": dev_key})) == (401, "team_member_permission_error")
    assert error_type(dev("POST", "/key/generate", {"team_id": team_id, "models": ["anthropic/claude-3"]})) == (
        403, "auth_error"
    )

    # The team admin grants regenerate and delete; now the member may.
    granted = boss("POST", "/team/permissions_update", {
        "team_id": team_id,
        "team_member_permissions": ["/key/generate", "/key/update", "/key/info", "/key/regenerate", "/key/delete"],
    })
    assert granted.status_code == 200
    regenerated = dev("POST", "/key/regenerate", {"key": dev_key})
    assert regenerated.status_code == 200, regenerated.text
    assert Client(server, dev_key)("GET", "/key/info").status_code == 401  # the old secret stops at once
    new_secret = regenerated.json()["key"]
    assert Client(server, new_secret)("GET", "/key/info").json()["info"]["key_alias"] == "dev-key"
    new_token = hashlib.sha256(new_secret.encode()).hexdigest()  # answered by its hash, never echoed
    assert dev("POST", "/key/delete", {"keys": [new_secret]}).json() == {"deleted_keys": [new_token]}
    assert error_type(dev("GET", "/key/info", key=new_secret)) == (404, "not_found_error")

    # An access group assigned to the team and to a key: both sides list each other.
    group = master("POST", "/v1/access_group", {
        "access_group_name": "e2e-mini", "access_model_names": ["openai/gpt-4o-mini"], "assigned_team_ids": [team_id],
    })
    assert group.status_code == 201, group.text
    group_id = group.json()["access_group_id"]
    grouped = boss("POST", "/key/generate", {"team_id": team_id, "access_group_ids": [group_id]})
    assert grouped.status_code == 200, grouped.text
    token = grouped.json()["token"]
    assert grouped.json()["access_group_ids"] == [group_id]
    assert master("GET", "/team/info", team_id=team_id).json()["team_info"]["access_group_ids"] == [group_id]
    listed = master("GET", f"/v1/access_group/{group_id}").json()
    assert listed["assigned_team_ids"] == [team_id] and listed["assigned_key_ids"] == [token]
    assert error_type(dev("POST", "/key/generate", {"team_id": team_id, "access_group_ids": [group_id]})) == (
        403, "auth_error"
    )

    # Deleting the group detaches it from both.
    assert master("DELETE", f"/v1/access_group/{group_id}").status_code == 204
    assert master("GET", "/team/info", team_id=team_id).json()["team_info"]["access_group_ids"] == []
    assert master("GET", "/key/info", key=token).json()["info"]["access_group_ids"] == []

    # The org admin sees their organization and its member, never the other one.
    orgs = boss("GET", "/organization/list").json()
    assert [o["organization_id"] for o in orgs] == [org["organization_id"]]
    assert {m["user_id"] for m in orgs[0]["members"]} == {"boss@e2e.test", "dev@e2e.test"}
    assert boss("GET", "/organization/info", organization_id=other_org["organization_id"]).status_code == 404
