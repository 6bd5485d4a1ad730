"""Debian's nginx with integrations/nginx/ in front of a tiny upstream, asking the real accessctl.

nginx runs as this test's own process (its own prefix, config and free ports), never as the system's
service. Two servers share the recipe: one strips the client's Authorization header, one keeps it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from .conftest import ROOT, free_port, postgres_pass_only, stop

pytestmark = postgres_pass_only

RECIPE = ROOT / "integrations" / "nginx"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GPT = "openai/gpt-4o"
MINI = "openai/gpt-4o-mini"

CONFIG = """
worker_processes 1;
error_log @PREFIX@/error.log warn;
pid @PREFIX@/nginx.pid;
user root root;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path @PREFIX@/client_body;
    proxy_temp_path @PREFIX@/proxy;
    fastcgi_temp_path @PREFIX@/fastcgi;
    uwsgi_temp_path @PREFIX@/uwsgi;
    scgi_temp_path @PREFIX@/scgi;
    include @RECIPE@/accessctl-http.conf;

    upstream accessctl { server 127.0.0.1:@ACCESSCTL@; keepalive 8; }
    upstream llm { server 127.0.0.1:@UPSTREAM@; }

    server {
        listen 127.0.0.1:@STRIP@;
        include @RECIPE@/accessctl-server.conf;
        location / {
            include @RECIPE@/accessctl-protect.conf;
            proxy_pass http://llm;
        }
    }
    server {
        listen 127.0.0.1:@KEEP@;
        include @RECIPE@/accessctl-server.conf;
        set $accessctl_keep_authorization on;
        location / {
            include @RECIPE@/accessctl-protect.conf;
            proxy_pass http://llm;
        }
    }
}
"""


class Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible server in miniature: records what reached it and answers 200."""

    seen: list[dict] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Upstream.seen.append({"path": self.path, "headers": dict(self.headers), "body": body.decode()})
        payload = json.dumps({"upstream": "reached"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


class Nginx:
    def __init__(self, strip: str, keep: str):
        self.strip, self.keep = strip, keep

    def post(self, key: str | None, *, model_header: str | None = None, path: str = "/v1/chat/completions",
             keep: bool = False, headers: dict | None = None) -> requests.Response:
        headers = dict(headers or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if model_header is not None:
            headers["X-Model"] = model_header
        base = self.keep if keep else self.strip
        return requests.post(base + path, json={"messages": []}, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def nginx(accessctl, upstream, tmp_path_factory) -> Iterator[Nginx]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is missing: install Debian's nginx with `make nginx` (make test does).")
    prefix = tmp_path_factory.mktemp("nginx")
    strip, keep = free_port(), free_port()
    config = CONFIG
    for name, value in {"PREFIX": prefix, "RECIPE": RECIPE, "ACCESSCTL": accessctl.port, "UPSTREAM": upstream,
                        "STRIP": strip, "KEEP": keep}.items():
        config = config.replace(f"@{name}@", str(value))
    (prefix / "nginx.conf").write_text(config)
    log = prefix / "error.log"
    test = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(log)],
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(log), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        _wait_listening(strip, process, log)
        yield Nginx(f"http://127.0.0.1:{strip}", f"http://127.0.0.1:{keep}")
    finally:
        stop(process)


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port}: {log.read_text()}")


@pytest.fixture(autouse=True)
def _fresh_upstream_log():
    Upstream.seen.clear()


def test_allowed_request_reaches_the_upstream_with_the_keys_identity(nginx, accessctl):
    org = accessctl.organization()
    team = accessctl.team(organization_id=org)
    user = accessctl.user()
    key = accessctl.key(user_id=user, team_id=team, models=[GPT], key_alias=f"nginx-{team[:8]}")

    response = nginx.post(key, model_header=GPT)

    assert response.status_code == 200 and response.json() == {"upstream": "reached"}
    (seen,) = Upstream.seen
    assert seen["headers"]["X-Accessctl-User-Id"] == user
    assert seen["headers"]["X-Accessctl-Team-Id"] == team
    assert seen["headers"]["X-Accessctl-Organization-Id"] == org
    assert seen["headers"]["X-Accessctl-Key-Alias"] == f"nginx-{team[:8]}"
    assert seen["headers"]["X-Accessctl-Model"] == GPT
    assert "Authorization" not in seen["headers"]  # stripped by default


def test_authorization_is_forwarded_when_the_server_keeps_it(nginx, accessctl):
    key = accessctl.key(models=[GPT])

    assert nginx.post(key, model_header=GPT, keep=True).status_code == 200

    assert Upstream.seen[0]["headers"]["Authorization"] == f"Bearer {key}"


def test_identity_headers_sent_by_the_client_never_reach_the_upstream(nginx, accessctl):
    user = accessctl.user()
    key = accessctl.key(user_id=user, models=[GPT])

    nginx.post(key, model_header=GPT, headers={"X-Accessctl-User-Id": "admin", "X-Accessctl-Team-Id": "t"})

    headers = Upstream.seen[0]["headers"]
    assert headers["X-Accessctl-User-Id"] == user
    assert "X-Accessctl-Team-Id" not in headers


def test_model_in_the_path_is_checked(nginx, accessctl):
    key = accessctl.key(models=[GPT])

    allowed = nginx.post(key, path="/openai/deployments/openai%2Fgpt-4o/chat/completions")
    refused = nginx.post(key, path="/openai/deployments/openai%2Fgpt-4o-mini/chat/completions")

    assert allowed.status_code == 200
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "key_model_access_denied"
    assert len(Upstream.seen) == 1


def test_refused_request_is_403_with_accessctls_body_and_never_reaches_the_upstream(nginx, accessctl):
    key = accessctl.key(models=[GPT])

    response = nginx.post(key, model_header=MINI)

    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == {
        "message": f"Key not allowed to access model '{MINI}'.", "type": "key_model_access_denied",
        "param": "model", "code": "403",
    }
    assert Upstream.seen == []


def test_unknown_key_is_401_with_accessctls_body(nginx):
    response = nginx.post("sk-unknown-to-accessctl", model_header=GPT)

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "auth_error"
    assert Upstream.seen == []


def test_no_key_is_401(nginx):
    assert nginx.post(None, model_header=GPT).status_code == 401
    assert Upstream.seen == []


@pytest.mark.parametrize(
    "model_header",
    [pytest.param(None, id="no-model"), pytest.param("gpt&model=other", id="query-injection"),
     pytest.param("a b", id="space")],
)
def test_missing_or_unsafe_model_is_400_and_never_reaches_the_upstream(nginx, accessctl, model_header):
    key = accessctl.key(models=["*"])

    response = nginx.post(key, model_header=model_header)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
    assert Upstream.seen == []


def test_key_blocked_in_accessctl_is_refused_on_the_next_request(nginx, accessctl):
    key = accessctl.key(models=[GPT])
    assert nginx.post(key, model_header=GPT).status_code == 200

    accessctl.api("POST", "/key/block", {"key": key})

    response = nginx.post(key, model_header=GPT)
    assert response.status_code == 403 and response.json()["error"]["type"] == "key_blocked"
    assert len(Upstream.seen) == 1


def test_accessctl_unreachable_is_503_and_never_reaches_the_upstream(nginx, accessctl):
    key = accessctl.key(models=[GPT])
    accessctl.pause()
    try:
        response = nginx.post(key, model_header=GPT)
    finally:
        accessctl.resume()

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "accessctl_unavailable"
    assert Upstream.seen == []
    assert nginx.post(key, model_header=GPT).status_code == 200
