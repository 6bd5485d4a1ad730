"""The production WSGI handler serves the gateway's per-call routes around the middleware chain
(accessctl/fast_lane.py), and keeps what the chain did for them: the Host check, the security headers
and HTTPS redirect, the database lane's 503, Django's exception handling. Driven with WSGI environments,
as gunicorn calls it (the test client has a handler of its own)."""
from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import signals
from django.db import OperationalError, close_old_connections
from django.test import RequestFactory

from accessctl import lanes
from accessctl.fast_lane import FastLaneHandler
from keys.api import usage_reports
from tests.factories import KeyFactory, UserFactory

from .conftest import CHECK_URL, USAGE_URL, bearer

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(method: str, path: str, body: Any = None, **meta: str) -> Answer:
    """One request through the production handler, as a WSGI server makes it."""
    factory = RequestFactory()
    if method == "GET":
        request = factory.get(path, body or {}, **meta)
    else:
        request = factory.post(path, json.dumps(body), content_type="application/json", **meta)
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.update(status=status, headers=headers)

    # As the test client does: the request signals must not close the test's connection (its transaction).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        response = FastLaneHandler()(request.environ, start_response)
        body = b"".join(response)
        response.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return Answer(started["status"], started["headers"], body)


@pytest.fixture
def sessions_opened(monkeypatch) -> list[str]:
    """The paths SessionMiddleware saw: what went through the middleware chain."""
    seen: list[str] = []
    original = SessionMiddleware.process_request
    monkeypatch.setattr(SessionMiddleware, "process_request",
                        lambda self, request: seen.append(request.path) or original(self, request))
    return seen


def test_check_through_the_fast_lane_answers_as_through_the_whole_stack(client):
    key = KeyFactory(models=[GPT])

    fast = call("POST", CHECK_URL, {"model": GPT}, **bearer(key.raw))
    refused = call("POST", CHECK_URL, {"model": "other/model"}, **bearer(key.raw))

    stack = client.post(CHECK_URL, {"model": GPT}, content_type="application/json", **bearer(key.raw))
    assert (fast.status_code, fast.json()) == (200, stack.json())
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "key_model_access_denied"


def test_check_takes_no_middleware_and_other_paths_take_them_all(sessions_opened):
    key = KeyFactory(models=[GPT])

    call("GET", CHECK_URL, {"model": GPT}, **bearer(key.raw))
    call("GET", "/healthz")

    assert sessions_opened == ["/healthz"]


def test_fast_lane_answers_carry_the_security_headers_of_the_stack():
    key = KeyFactory(models=[GPT])

    answer = call("GET", CHECK_URL, {"model": GPT}, **bearer(key.raw))

    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Referrer-Policy"] == "same-origin"


def test_fast_lane_refuses_a_host_outside_allowed_hosts():
    key = KeyFactory(models=[GPT])

    answer = call("GET", CHECK_URL, {"model": GPT}, HTTP_HOST="evil.example", **bearer(key.raw))

    assert answer.status_code == 400


def test_fast_lane_redirects_to_https_when_the_deployment_requires_it(settings):
    settings.SECURE_SSL_REDIRECT = True
    key = KeyFactory(models=[GPT])

    answer = call("GET", CHECK_URL, {"model": GPT}, **bearer(key.raw))

    assert answer.status_code == 301 and answer.headers["Location"].startswith("https://")


def test_usage_waits_for_the_database_lane_and_gets_503_when_it_stays_full(settings):
    settings.ACCESSCTL_DB_LANE, settings.ACCESSCTL_DB_LANE_WAIT_SECONDS = 1, 0.05
    gateway = KeyFactory(user=UserFactory(is_system=True))
    key = KeyFactory()
    held, release = threading.Event(), threading.Event()

    def hold_the_lane() -> None:
        with lanes.database_lane():
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_lane)
    holder.start()
    assert held.wait(5)
    try:
        answer = call("POST", USAGE_URL, {"key": key.raw, "model": GPT, "spend": 0.5}, **bearer(gateway.raw))
    finally:
        release.set()
        holder.join(5)

    assert answer.status_code == 503 and answer.json()["error"]["type"] == "no_db_connection"


def test_database_unreachable_in_a_fast_route_is_a_503_not_a_500(monkeypatch):
    gateway = KeyFactory(user=UserFactory(is_system=True))

    def unreachable(**_: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(usage_reports, "_reporter", lambda request: unreachable())

    answer = call("POST", USAGE_URL, {"key": "sk-x", "model": GPT, "spend": 0.5}, **bearer(gateway.raw))

    assert answer.status_code == 503 and answer.json()["error"]["type"] == "no_db_connection"


def test_an_unexpected_error_in_a_fast_route_is_the_json_500_of_the_stack(monkeypatch):
    gateway = KeyFactory(user=UserFactory(is_system=True))
    monkeypatch.setattr(usage_reports, "_reporter", lambda request: 1 / 0)

    answer = call("POST", USAGE_URL, {"key": "sk-x", "model": GPT, "spend": 0.5}, **bearer(gateway.raw))

    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "internal_server_error"
    assert b"ZeroDivisionError" not in answer.body


def test_usage_report_through_the_fast_lane_is_stored():
    gateway = KeyFactory(user=UserFactory(is_system=True))
    key = KeyFactory()

    answer = call("POST", USAGE_URL, {"key": key.raw, "model": GPT, "spend": 0.5}, **bearer(gateway.raw))

    assert answer.status_code == 202 and answer.json()["spend"] == 0.5
