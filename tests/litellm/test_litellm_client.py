"""End to end with LiteLLM's own management client (`litellm.proxy.client`, pinned in
integrations/litellm/requirements.txt, installed by `make test` into .venv-litellm) and its `lite` CLI,
run as subprocesses in that virtualenv against a live server: keys, users, teams and models as the CLI
drives them, with free-form team ids. A missing virtualenv fails loudly."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.factories import CatalogModelFactory

ROOT = Path(__file__).resolve().parents[2]
LITELLM_PYTHON = ROOT / ".venv-litellm" / "bin" / "python"
LITE = ROOT / ".venv-litellm" / "bin" / "lite"
DRIVER = ROOT / "integrations" / "litellm" / "drive_management_client.py"
MASTER_KEY = "sk-master-key-for-tests-0001"
TIMEOUT_S = 240


@pytest.fixture
def served(settings, transactional_db, live_server, tmp_path):
    if not LITELLM_PYTHON.exists():
        pytest.fail(f"{LITELLM_PYTHON} is missing: `make .venv-litellm/.installed` (make test does) builds it.")
    settings.ACCESSCTL_MASTER_KEY = MASTER_KEY
    for name, provider in [("openai/gpt-4o", "openai"), ("openai/gpt-4o-mini", "openai"),
                           ("anthropic/claude-3", "anthropic")]:
        CatalogModelFactory(model_name=name, provider=provider)
    # No network, no ~/.litellm: LiteLLM's client reads its cost map locally and keeps its config here.
    env = {**os.environ, "HOME": str(tmp_path), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_COLOR": "1",
           "COLUMNS": "200"}
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "LITELLM_PROXY_URL", "LITELLM_PROXY_API_KEY"):
        env.pop(name, None)
    return live_server.url, env


def test_litellm_management_client_drives_keys_users_teams_and_models(served):
    base, env = served
    done = subprocess.run([str(LITELLM_PYTHON), str(DRIVER), base, MASTER_KEY], env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    calls = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            calls[entry["call"]] = entry
    print("\n".join(f"{name}: {'ok' if c['ok'] else 'error ' + str(c.get('status'))}" for name, c in calls.items()))

    def ok(call: str):
        assert calls[call]["ok"], calls[call]
        return calls[call]["result"]

    def refused(call: str, status: int) -> None:
        assert not calls[call]["ok"] and calls[call]["status"] == status, calls[call]

    assert ok("http POST /team/new")["team_id"] == "test_team_1a2b3c4d"
    assert ok("http POST /team/new (dashboard)")["team_id"] == "litellm-dashboard"
    assert set(ok("teams.list")) == {"test_team_1a2b3c4d", "litellm-dashboard"}
    page = ok("teams.list_v2")
    assert [t["team_id"] for t in page["teams"]] == ["test_team_1a2b3c4d"] and page["total"] == 1
    assert ok("teams.get_available") == []
    assert ok("users.create_user")["user_id"] == "alice@corp.example"
    assert ok("users.get_user")["user_info"]["teams"] == ["litellm-dashboard"]
    assert ok("users.get_user_v2")["user_id"] == "alice@corp.example"
    assert "alice@corp.example" in ok("users.list_users")
    assert ok("keys.generate")["team_id"] == "test_team_1a2b3c4d"
    assert ok("keys.list") == 1
    assert ok("keys.info") == "test_team_1a2b3c4d"
    assert ok("keys.update")["key_alias"] == "e2e-key-renamed"
    assert ok("models.list (team key)") == ["openai/gpt-4o"]
    assert ok("models.info (team key)") == ["openai/gpt-4o"]
    assert ok("model_groups.info (team key)") == ["openai/gpt-4o"]
    assert ok("models.get (team key)") == "openai/gpt-4o"
    assert ok("keys.delete")["deleted_keys"]
    refused("keys.info (deleted)", 404)
    assert ok("models.list (alice)") == 3  # alice's key: litellm-dashboard's team key, the team allows everything
    assert ok("teams.list (alice)") == ["litellm-dashboard"]
    assert ok("models.list (master)") == ok("models.info (master)") == ok("model_groups.info (master)") == 3
    refused("models.new (unsupported)", 400)
    refused("credentials.list (unsupported)", 400)
    assert ok("users.delete_user") == {"deleted_users": ["alice@corp.example"]}
    assert not calls["users.get_user (deleted)"]["ok"]  # the client raises its NotFoundError on the 404
    assert calls["users.get_user (deleted)"]["error"].startswith("NotFoundError")


def test_lite_cli_lists_teams_models_and_model_groups(served):
    base, env = served
    from orgs.models import Team

    Team.objects.create(team_id="ops.team@eu-1", team_alias="Ops EU")

    def lite(*args: str) -> str:
        done = subprocess.run([str(LITE), "--base-url", base, "--api-key", MASTER_KEY, *args], env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        return done.stdout

    assert "ops.team@eu-1" in lite("teams", "list")
    assert "No available teams to join." in lite("teams", "available")
    info = json.loads(lite("models", "info", "--format", "json"))
    assert [m["model_name"] for m in info] == ["anthropic/claude-3", "openai/gpt-4o", "openai/gpt-4o-mini"]
    groups = json.loads(lite("model-groups", "list", "--format", "json"))
    assert [g["model_group"] for g in groups] == ["anthropic/claude-3", "openai/gpt-4o", "openai/gpt-4o-mini"]
