"""Two server processes sharing the configured cache: a key blocked anywhere is refused everywhere next.

Real gunicorn processes on a temporary SQLite database, with the cache a real Redis (unique key prefix)
or the default file cache; the block is a service call from a third process, as a management request
or a `manage.py` command would make it.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
REDIS_DB = 3
MASTER = "sk-test-multiprocess-master"
CREATE_KEY = """
from keys.services import key_generate
from orgs.services import user_create
key, raw = key_generate(actor=None, user=user_create(actor=None, user_id="mp@example.test"), models=["openai/gpt-4o"])
print(raw)
"""
BLOCK_KEY = """
from keys.crypto import hash_secret
from keys.models import VirtualKey
from keys.services import key_block
key_block(actor=None, key=VirtualKey.objects.get(token=hash_secret({raw!r})))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _get(port: int, path: str, raw: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    """GET (or POST, with a JSON body) as a gateway or a management client would."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if raw:
        request.add_header("Authorization", f"Bearer {raw}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_until_up(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else "server exited"
        try:
            if _get(port, "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server on port {port} did not come up")


def _flush_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    for name in client.scan_iter(match=f"{prefix}:*", count=500):
        client.delete(name)


@pytest.fixture(params=["redis", "default-file-cache"])
def deployment(request, tmp_path) -> Iterator[tuple[dict[str, str], list[int]]]:
    """Two gunicorn servers on one database and one cache; yields (environment, ports)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CACHE_URL", "REDIS_URL", "CACHE_DIR")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    prefix = f"test-mp-{uuid.uuid4().hex}"
    env["CACHE_KEY_PREFIX"] = prefix
    env["ACCESSCTL_MASTER_KEY"] = MASTER
    env["ACCESSCTL_DRAIN_SECONDS"] = "0"  # gunicorn reads gunicorn.conf.py from the cwd: no drain on stop here
    if request.param == "redis":
        env["REDIS_URL"] = f"redis://127.0.0.1:6379/{REDIS_DB}"
    else:
        env["CACHE_DIR"] = str(tmp_path / "cache")
    _manage(env, "migrate", "--noinput")
    ports = [_free_port(), _free_port()]
    servers = [
        subprocess.Popen(
            [str(GUNICORN), "accessctl.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--no-control-socket"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    try:
        for port, server in zip(ports, servers, strict=True):
            _wait_until_up(port, server)
        yield env, ports
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=15)
        if request.param == "redis":
            _flush_prefix(prefix)


def test_key_blocked_through_one_process_is_refused_by_the_others_on_the_next_request(deployment):
    env, (port_a, port_b) = deployment
    raw = _manage(env, "shell", "-c", CREATE_KEY).strip().splitlines()[-1]
    check = "/api/v1/authz/check?model=openai/gpt-4o"
    assert [_get(port, check, raw)[0] for port in (port_a, port_b, port_a, port_b)] == [200, 200, 200, 200]

    _manage(env, "shell", "-c", BLOCK_KEY.format(raw=raw))

    for port in (port_b, port_a):
        status, body = _get(port, check, raw)
        assert (status, body["error"]["type"]) == (403, "key_blocked")


def test_key_blocked_through_one_server_is_refused_by_the_other_on_the_next_request(deployment):
    env, (port_a, port_b) = deployment
    raw = _manage(env, "shell", "-c", CREATE_KEY).strip().splitlines()[-1]
    check = "/api/v1/authz/check?model=openai/gpt-4o"
    assert [_get(port, check, raw)[0] for port in (port_a, port_b, port_a, port_b)] == [200, 200, 200, 200]
    deadline = time.monotonic() + 10
    # Once its feed is live, B serves its copy with no read of the shared cache: only the feed can tell it.
    while _get(port_b, "/readyz")[1]["invalidation_feed"] != "live":
        assert time.monotonic() < deadline, "server B's invalidation feed never became live"
        time.sleep(0.01)
    assert _get(port_b, check, raw)[0] == 200

    assert _get(port_a, "/key/block", MASTER, {"key": raw})[0] == 200

    for port in (port_b, port_a):
        status, body = _get(port, check, raw)
        assert (status, body["error"]["type"]) == (403, "key_blocked")
