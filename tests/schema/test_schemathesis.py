"""Property-based run of every operation in `/api/schema/` (schemathesis) against the real handlers.

Authenticated with the master key, so the handlers run rather than the 401 in front of them. For every
generated request (valid and invalid): no response is a 5xx, and every 4xx body has the SPEC §7 error
shape — except the LiteLLM `/v1/access_group*` routes, which keep LiteLLM's `{"detail": ...}`.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from accessctl.wsgi import application

MASTER_KEY = "sk-schemathesis-master-key-0001"
# A fixed seed keeps the cases (and their count) the same from run to run; the examples per operation
# bound the run to about a minute on each database.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"seed": 4, "generation": {"max-examples": 15}, "phases": {"coverage": {"enabled": False}}}
)
DETAIL_SHAPE_PREFIXES = ("/v1/access_group", "/v1/unified_access_group")

schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)
CASES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_case_count():
    yield
    print(f"\nschemathesis: {sum(CASES.values())} cases over {len(CASES)} operations")


@pytest.fixture
def keep_test_connection():
    """Calls go straight to the WSGI handler, which closes "obsolete" connections around each request; the
    test's connection is inside its transaction, so it must stay open (as Django's test client arranges)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def master_key(settings, keep_test_connection):
    settings.ACCESSCTL_MASTER_KEY = MASTER_KEY
    return MASTER_KEY


def assert_error_shape(path: str, status: int, body: object) -> None:
    if path.startswith(DETAIL_SHAPE_PREFIXES):
        assert isinstance(body, dict) and "detail" in body, body
        return
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and isinstance(error["type"], str), error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] == str(status), error


@pytest.mark.django_db
@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
def test_api_never_answers_5xx_and_every_4xx_has_the_error_shape(case, master_key):
    response = case.call(headers={"Authorization": f"Bearer {master_key}"})
    CASES[f"{case.method} {case.path}"] += 1

    assert response.status_code < 500, (response.status_code, response.text[:500])
    if 400 <= response.status_code < 500:
        try:
            body = json.loads(response.content or b"null")
        except ValueError:
            pytest.fail(f"{response.status_code} with a body that is not JSON: {response.text[:200]!r}")
        assert_error_shape(case.path, response.status_code, body)
