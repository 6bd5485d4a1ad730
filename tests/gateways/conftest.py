"""Real gateways in front of accessctl: the real programs, started once per session.

accessctl is gunicorn on a PostgreSQL database of its own (next to the test database, on the same server)
and the machine's Redis (under a key prefix of its own). In front of it: the LiteLLM proxy (from
`.venv-litellm`, which `make test` builds) with integrations/litellm/accessctl_litellm.py, and Debian's
nginx with integrations/nginx/. The tests drive them as their users do: the `openai` SDK and plain HTTP,
and accessctl's own API with its master key. A missing LiteLLM or nginx fails the tests, never skips them.

These tests run in the PostgreSQL pass of `make test` (the servers they start need PostgreSQL and Redis
whatever database the pass tests); the SQLite pass skips them.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
PLUGIN_DIR = ROOT / "integrations" / "litellm"
REDIS_DB = 7
MOCK_TEXT = "mocked by LiteLLM"
# The proxy's models (and accessctl's catalog); LiteLLM prices each call from these costs per token.
MODELS = ("openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "mistral/mistral-small")
INPUT_COST, OUTPUT_COST = 0.00001, 0.00002  # the mock's 10 prompt + 20 completion tokens cost 0.0005

SETUP = """
import json
from accessgroups.services import catalog_upsert
from keys.services import key_generate
from orgs.services import user_create
for name in {models!r}:
    catalog_upsert(actor=None, kind="model", data={{"model_name": name, "provider": name.split("/")[0], "active": True}})
gateway = user_create(actor=None, user_id="litellm-gateway@system.test", is_system=True)
_, raw = key_generate(actor=None, user=gateway, key_alias="litellm-usage-reporter")
print(json.dumps({{"usage_key": raw}}))
"""

# Applied by the modules that start accessctl (a conftest's own pytestmark marks nothing).
postgres_pass_only = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="gateway end-to-end tests run in the PostgreSQL pass of `make test` (they start gunicorn on PostgreSQL)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:g} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, by its group id only."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGCONT)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Accessctl:
    """accessctl served by gunicorn; `api()` calls it with the master key (as an operator's client would)."""

    def __init__(self, env: dict[str, str], workdir: Path):
        self.env, self.workdir = env, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.master = env["ACCESSCTL_MASTER_KEY"]
        self.process: subprocess.Popen | None = None

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def start(self) -> None:
        log = self.workdir / "gunicorn.log"
        self.process = subprocess.Popen(
            [str(GUNICORN), "accessctl.wsgi:application", "--bind", f"127.0.0.1:{self.port}", "--workers", "2",
             "--no-control-socket", "--log-level", "warning"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=log.open("a"), start_new_session=True,
        )
        wait_for(f"{self.url}/healthz", self.process, log)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def pause(self) -> None:
        """Freeze every gunicorn process: connections are accepted by the kernel and never answered."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def api(self, method: str, path: str, body: dict | None = None, bearer: str | None = None, **params) -> Any:
        response = requests.request(
            method, self.url + path, json=body, params=params or None, timeout=15,
            headers={"Authorization": f"Bearer {bearer or self.master}"},
        )
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json() if response.content else None

    def check(self, key: str, model: str) -> requests.Response:
        return requests.post(
            f"{self.url}/api/v1/authz/check", json={"model": model}, timeout=5,
            headers={"Authorization": f"Bearer {key}"},
        )

    # --- what an operator creates in accessctl ----------------------------------------------------------

    def organization(self, **fields) -> str:
        body = {"organization_alias": f"org-{uuid.uuid4().hex[:8]}", **fields}
        return self.api("POST", "/organization/new", body)["organization_id"]

    def team(self, **fields) -> str:
        return self.api("POST", "/team/new", {"team_alias": f"team-{uuid.uuid4().hex[:8]}", **fields})["team_id"]

    def user(self) -> str:
        user_id = f"user-{uuid.uuid4().hex[:8]}@example.test"
        self.api("POST", "/user/new", {"user_id": user_id})
        return user_id

    def key(self, **fields) -> str:
        """A new virtual key (the raw secret); with a fresh owner unless `user_id` is given."""
        fields.setdefault("user_id", self.user())
        return self.api("POST", "/key/generate", fields)["key"]

    def spend(self, kind: str, ident: str) -> float:
        """`spend` of a key (raw), team, organization or user, as accessctl's info routes report it."""
        param = {"key": "key", "team": "team_id", "organization": "organization_id", "user": "user_id"}[kind]
        body = self.api("GET", f"/{kind}/info", **{param: ident})
        info = body.get("info", body) if kind == "key" else body
        if kind == "team":
            info = body.get("team_info", body)
        elif kind == "user":
            info = body.get("user_info", body)
        return float(info["spend"])


@pytest.fixture(scope="session")
def accessctl(tmp_path_factory) -> Iterator[Accessctl]:
    """accessctl on gunicorn + PostgreSQL + Redis, with the catalog and a system user's usage key."""
    import psycopg
    import redis

    workdir = tmp_path_factory.mktemp("accessctl")
    test_url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    database = f"{test_url.path.lstrip('/') or 'accessctl'}_gateways"
    admin_url = urllib.parse.urlunsplit(test_url._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    prefix = f"test-gateways-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k not in ("CACHE_URL", "CACHE_DIR", "CELERY_BROKER_URL")}
    env.update({
        "DATABASE_URL": urllib.parse.urlunsplit(test_url._replace(path=f"/{database}")),
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "CACHE_KEY_PREFIX": prefix,
        "ACCESSCTL_MASTER_KEY": f"sk-gateways-master-{uuid.uuid4().hex}",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    })
    server = Accessctl(env, workdir)
    try:
        server.manage("migrate", "--noinput")
        server.usage_key = json.loads(server.manage("shell", "-c", SETUP.format(models=MODELS)).splitlines()[-1])[
            "usage_key"
        ]
        server.start()
        yield server
    finally:
        server.stop()
        client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
        for name in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(name)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


LITELLM_CONFIG = """
model_list:
{models}
general_settings:
  custom_auth: accessctl_litellm.user_api_key_auth
  master_key: {master}
litellm_settings:
  callbacks: accessctl_litellm.usage_reporter
  telemetry: false
"""
MODEL_ENTRY = """  - model_name: {name}
    litellm_params:
      model: openai/{name}
      api_key: no-provider-account
      mock_response: "{text}"
    model_info:
      input_cost_per_token: {input}
      output_cost_per_token: {output}
"""


class LiteLLMProxy:
    def __init__(self, url: str, master: str, process: subprocess.Popen, log: Path):
        self.url, self.master, self.process, self.log = url, master, process, log

    def client(self, key: str):
        """The official openai SDK pointed at the proxy; no retries, so each call is one request."""
        import openai

        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=30)

    def post(self, path: str, key: str | None, data: bytes | str, headers: dict | None = None) -> requests.Response:
        headers = {"Content-Type": "application/json", **(headers or {})}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return requests.post(self.url + path, data=data, headers=headers, timeout=30)


@pytest.fixture(scope="session")
def litellm_proxy(accessctl, tmp_path_factory) -> Iterator[LiteLLMProxy]:
    """The real LiteLLM proxy with the accessctl plugin, its models answered by mock_response."""
    if not LITELLM.exists():
        pytest.fail(f"{LITELLM} is missing: build it with `make .venv-litellm/.installed` (make test does).")
    workdir = tmp_path_factory.mktemp("litellm")
    master = f"sk-litellm-master-{uuid.uuid4().hex}"
    entries = "".join(
        MODEL_ENTRY.format(name=name, text=MOCK_TEXT, input=INPUT_COST, output=OUTPUT_COST) for name in MODELS
    )
    config = workdir / "config.yaml"
    config.write_text(LITELLM_CONFIG.format(models=entries, master=master))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env.update({
        "PYTHONPATH": str(PLUGIN_DIR),
        "ACCESSCTL_URL": accessctl.url,
        "ACCESSCTL_USAGE_KEY": accessctl.usage_key,
        "ACCESSCTL_TIMEOUT": "1.0",
        "ACCESSCTL_USAGE_BACKOFF": "0.2",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
    })
    log = workdir / "litellm.log"
    process = subprocess.Popen(
        [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        cwd=workdir, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health/liveliness", process, log, seconds=120)
        yield LiteLLMProxy(f"http://127.0.0.1:{port}", master, process, log)
    finally:
        stop(process)


def eventually(probe, *, seconds: float = 15, interval: float = 0.1):
    """Poll `probe()` until it returns a truthy value (usage may be applied asynchronously)."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds:g} s (last value {value!r})")
        time.sleep(interval)
