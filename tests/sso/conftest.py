"""An OpenID Connect provider (tests/sso/provider.py) started as its own process on a free port, and
the helpers that log in through it without a browser (the browser test drives the same flow)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

CLIENT_ID = "accessctl-admin"
CLIENT_SECRET = "test-client-secret-0001"
PASSWORD = "idp-password-1"
USERS = {
    "alice": {"email": "alice@acme.test", "name": "Alice", "groups": ["acme-admins"]},
    "bob": {"email": "bob@acme.test", "name": "Bob", "groups": ["acme-members", "ml-team-admins"]},
    "root": {"email": "root@acme.test", "name": "Root", "groups": ["platform-admins"]},
    "mallory-signature": {"email": "m1@acme.test", "groups": ["platform-admins"], "flaw": "signature"},
    "mallory-audience": {"email": "m2@acme.test", "groups": ["platform-admins"], "flaw": "audience"},
    "mallory-expired": {"email": "m3@acme.test", "groups": ["platform-admins"], "flaw": "expired"},
}


@dataclass
class Provider:
    url: str
    users_file: Path

    def set_user(self, username: str, **changes) -> None:
        users = json.loads(self.users_file.read_text())
        users[username].update(changes)
        self.users_file.write_text(json.dumps(users))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def provider_process(tmp_path_factory) -> Iterator[Provider]:
    users_file = tmp_path_factory.mktemp("idp") / "users.json"
    users_file.write_text(json.dumps({name: {"password": PASSWORD, **user} for name, user in USERS.items()}))
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("provider.py")), "--port", str(port), "--users", str(users_file),
         "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET],
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(f"{url}/.well-known/openid-configuration", timeout=1).raise_for_status()
            break
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the test OIDC provider did not start")
            time.sleep(0.1)
    try:
        yield Provider(url, users_file)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def provider(provider_process) -> Iterator[Provider]:
    """The provider with its users as USERS says (a test may change them)."""
    original = provider_process.users_file.read_text()
    yield provider_process
    provider_process.users_file.write_text(original)


def sso_settings(settings, provider: Provider, role_map: dict) -> None:
    settings.ACCESSCTL_OIDC = {
        "issuer": provider.url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "groups_claim": "groups",
        "role_map": role_map,
    }


def sso_login(client, provider: Provider, username: str, password: str = PASSWORD):
    """Start at /sso/login/, sign in on the provider's form, follow its redirect back to the callback."""
    start = client.get("/sso/login/?next=/admin/")
    assert start.status_code == 302, start.content
    params = {k: v[0] for k, v in parse_qs(urlparse(start["Location"]).query).items()}
    answer = requests.post(f"{provider.url}/authorize", data={**params, "username": username, "password": password},
                           allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlparse(answer.headers["Location"])
    return client.get(f"{back.path}?{back.query}")
