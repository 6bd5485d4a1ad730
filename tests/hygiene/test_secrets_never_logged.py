"""No log line carries a key secret or the master key, at any level, from any logger — Django's request
log, our own, and gunicorn's access log — and no answer echoes a secret back."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from accessctl.redaction import MASTER_KEY_SHOWN, redact
from tests.hygiene.conftest import client_for

pytestmark = pytest.mark.django_db

UNKNOWN_SECRET = "sk-unknown-secret-for-the-logs-0123456789"


def all_log_text(caplog) -> str:
    """Every record's message and traceback, as any handler would write them."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)  # every level, every logger
    return caplog


def test_secret_in_a_path_that_answers_4xx_is_masked_in_the_request_log(master, world, logs):
    response = client_for(master).get(f"/api/v1/keys/{UNKNOWN_SECRET}/")

    assert response.status_code == 404
    text = all_log_text(logs)
    assert "/api/v1/keys/sk-...6789/" in text  # django.request logged the path, masked
    assert UNKNOWN_SECRET not in text


def test_secret_in_a_query_string_is_masked_in_the_request_log(master, world, logs):
    response = client_for(master).get("/key/info", {"key": UNKNOWN_SECRET})

    assert response.status_code == 404
    assert UNKNOWN_SECRET not in all_log_text(logs)


def test_secrets_in_a_body_and_a_header_never_reach_a_log(master, world, logs):
    client_for(master).post("/key/delete", {"keys": [UNKNOWN_SECRET, world.key.raw]}, format="json")
    client_for(UNKNOWN_SECRET).get("/key/list")
    client_for(world.key.raw).post("/api/v1/authz/check", {"model": "anthropic/claude"}, format="json")

    text = all_log_text(logs)
    assert UNKNOWN_SECRET not in text and world.key.raw not in text and master not in text


def test_an_exception_carrying_a_secret_is_logged_masked(logs):
    try:
        raise ValueError(f"bad key {UNKNOWN_SECRET}")
    except ValueError:
        logging.getLogger("accessctl.test").exception("while handling %s", UNKNOWN_SECRET)

    text = all_log_text(logs)
    assert "bad key sk-...6789" in text and "while handling sk-...6789" in text
    assert UNKNOWN_SECRET not in text


def test_the_master_key_is_replaced_even_without_the_sk_prefix(settings, logs):
    settings.ACCESSCTL_MASTER_KEY = "plain-master-key-without-prefix"

    logging.getLogger("accessctl.test").warning("Authorization: Bearer %s", "plain-master-key-without-prefix")

    assert all_log_text(logs).endswith(f"Authorization: Bearer {MASTER_KEY_SHOWN}")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("GET /api/v1/keys/sk-abcdefghijklmnop1234/ 404", "GET /api/v1/keys/sk-...1234/ 404", id="path"),
        pytest.param("/key/info?key=sk-abcdefghijklmnop1234&x=1", "/key/info?key=sk-...1234&x=1", id="query"),
        pytest.param('{"keys": ["sk-abcdefghijklmnop1234"]}', '{"keys": ["sk-...1234"]}', id="json"),
        pytest.param("Bearer sk-short", "Bearer sk-...", id="short-secret"),
        pytest.param("no secret here", "no secret here", id="unchanged"),
    ],
)
def test_redact_masks_every_secret_in_a_text(text, shown):
    assert redact(text) == shown


# --- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        pytest.param("get", "/key/info", None, id="key-info"),
        pytest.param("post", "/key/update", {"max_budget": 5.0}, id="key-update"),
        pytest.param("post", "/key/delete", None, id="key-delete"),
    ],
)
def test_key_routes_answer_a_secret_with_its_hash(master, world, method, route, body):
    raw = world.key.raw
    client = client_for(master)
    if route == "/key/info":
        response = client.get(route, {"key": raw})
    elif route == "/key/delete":
        response = client.post(route, {"keys": [raw]}, format="json")
    else:
        response = client.post(route, {"key": raw, **body}, format="json")

    assert response.status_code == 200, response.content
    assert raw not in response.content.decode()
    assert world.key.token in response.content.decode()


# --- gunicorn's access log (make serve) ---------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
PLAIN_MASTER = "plain-master-key-for-gunicorn-0001"  # no sk- prefix: only the exact match hides it
ACCESS_FORMAT = '%(h)s "%(r)s" %(s)s "%(f)s" "%({authorization}i)s" "%({x-api-key}i)s"'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory) -> Iterator[tuple[str, Path, Path]]:
    """gunicorn as `make serve` runs it, with an access log in a file (and one naming headers)."""
    directory = tmp_path_factory.mktemp("gunicorn")
    env = {
        **os.environ, "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}", "ACCESSCTL_MASTER_KEY": PLAIN_MASTER,
        "CACHE_URL": "", "REDIS_URL": "", "CELERY_BROKER_URL": "", "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "DEBUG",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    port, access, errors = _free_port(), directory / "access.log", directory / "error.log"
    process = subprocess.Popen(
        [str(GUNICORN), "accessctl.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--access-logfile", str(access), "--access-logformat", ACCESS_FORMAT, "--error-logfile", str(errors),
         "--log-level", "debug", "--no-control-socket"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {errors.read_text()[-2000:]}")
            time.sleep(0.1)
        yield base, access, errors
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_gunicorn_access_and_error_logs_carry_no_secret(gunicorn):
    base, access, errors = gunicorn
    master = {"Authorization": f"Bearer {PLAIN_MASTER}"}
    minted = requests.post(base + "/key/generate", json={}, headers=master, timeout=10).json()["key"]
    secret_headers = {"Authorization": f"Bearer {minted}", "Referer": f"{base}/key/info?key={minted}",
                      "X-Api-Key": minted}
    requests.get(f"{base}/api/v1/keys/{minted}/", headers=master, timeout=10)  # secret in the path
    requests.get(f"{base}/api/v1/keys/{UNKNOWN_SECRET}/", headers=master, timeout=10)  # 404
    requests.get(f"{base}/key/info", params={"key": minted}, headers=master, timeout=10)  # in the query
    requests.get(f"{base}/key/info", params={"key": UNKNOWN_SECRET}, headers=master, timeout=10)
    requests.get(f"{base}/api/v1/authz/check", params={"model": "openai/gpt-4o"}, headers=secret_headers, timeout=10)
    requests.post(f"{base}/key/delete", json={"keys": [minted]}, headers=master, timeout=10)  # in the body
    time.sleep(0.5)  # gunicorn writes the access line after the response

    logged = access.read_text() + errors.read_text()
    assert access.read_text().count("\n") >= 7  # the log really was written
    assert "/api/v1/keys/sk-...6789/" in logged and "Bearer [master key]" in logged
    for secret in (minted, UNKNOWN_SECRET, PLAIN_MASTER):
        assert secret not in logged
