"""Drive accessctl with LiteLLM's own management client (`litellm.proxy.client`), as its `lite` CLI does.

Runs inside the LiteLLM virtualenv (.venv-litellm), never ours: `python drive_management_client.py BASE_URL
MASTER_KEY`. Prints one JSON object per line: {"call", "ok", "result"|"error"}; the tests read them.
"""
from __future__ import annotations

import json
import sys
import traceback
from typing import Any

from litellm.proxy.client import Client
from litellm.proxy.client.users import UsersManagementClient

BASE, MASTER = sys.argv[1], sys.argv[2]
TEAM_ID = "test_team_1a2b3c4d"  # LiteLLM ids are free strings
DASHBOARD = "litellm-dashboard"


def report(call: str, fn) -> Any:
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, never hidden
        status = getattr(getattr(exc, "response", None), "status_code", None)
        print(json.dumps({"call": call, "ok": False, "status": status, "error": f"{type(exc).__name__}: {exc}",
                          "trace": traceback.format_exc()[-400:]}), flush=True)
        return None
    print(json.dumps({"call": call, "ok": True, "result": result}, default=str), flush=True)
    return result


admin = Client(base_url=BASE, api_key=MASTER)
users = UsersManagementClient(base_url=BASE, api_key=MASTER)

# Teams: created through the generic HTTP client (the CLI has no `teams create`), with free-form ids.
report("http POST /team/new", lambda: admin.http.request(
    "POST", "/team/new", json={"team_id": TEAM_ID, "team_alias": "E2E team", "models": ["openai/gpt-4o"]}))
report("http POST /team/new (dashboard)", lambda: admin.http.request(
    "POST", "/team/new", json={"team_id": DASHBOARD, "team_alias": "LiteLLM dashboard"}))
report("teams.list", lambda: [t["team_id"] for t in admin.teams.list()])
report("teams.list_v2", lambda: admin.teams.list_v2(page=1, page_size=1, team_alias="E2E"))
report("teams.get_available", lambda: admin.teams.get_available())

# Users: create (joining a free-form team), get, list, and later delete.
created = report("users.create_user", lambda: users.create_user(
    {"user_id": "alice@corp.example", "user_email": "alice@corp.example", "team_id": DASHBOARD}))
report("users.get_user", lambda: users.get_user(user_id="alice@corp.example"))
report("users.get_user_v2", lambda: users.get_user_v2(user_id="alice@corp.example"))
report("users.list_users", lambda: [u["user_id"] for u in users.list_users()])

# Keys: generate for the team, list, info, update (assign to another team, as `lite teams assign-key`),
# then the user's own key reads its info and sees its models.
generated = report("keys.generate", lambda: admin.keys.generate(
    team_id=TEAM_ID, key_alias="e2e-key", models=["openai/gpt-4o"]))
if generated:
    secret = generated["key"]
    report("keys.list", lambda: admin.keys.list(team_id=TEAM_ID, return_full_object=True)["total_count"])
    report("keys.info", lambda: admin.keys.info(key=secret)["info"]["team_id"])
    report("keys.update", lambda: admin.keys.update(key=secret, key_alias="e2e-key-renamed"))
    own = Client(base_url=BASE, api_key=secret)
    report("models.list (team key)", lambda: [m["id"] for m in own.models.list()])
    report("models.info (team key)", lambda: [m["model_name"] for m in own.models.info()])
    report("model_groups.info (team key)", lambda: [g["model_group"] for g in own.model_groups.info()])
    report("models.get (team key)", lambda: own.models.get(model_name="openai/gpt-4o")["model_name"])
    report("keys.delete", lambda: admin.keys.delete(keys=[secret]))
    report("keys.info (deleted)", lambda: admin.keys.info(key=secret))
if created:
    alice = Client(base_url=BASE, api_key=created["key"])
    report("models.list (alice)", lambda: len(alice.models.list()))
    report("teams.list (alice)", lambda: [t["team_id"] for t in alice.teams.list()])

report("models.list (master)", lambda: len(admin.models.list()))
report("models.info (master)", lambda: len(admin.models.info()))
report("model_groups.info (master)", lambda: len(admin.model_groups.info()))
report("models.new (unsupported)", lambda: admin.models.new(model_name="x", model_params={"model": "openai/x"}))
report("credentials.list (unsupported)", lambda: admin.credentials.list())
report("users.delete_user", lambda: users.delete_user(["alice@corp.example"]))
report("users.get_user (deleted)", lambda: users.get_user(user_id="alice@corp.example"))
