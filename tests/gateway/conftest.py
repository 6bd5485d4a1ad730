"""Fixtures of the hot-path tests: calling the check, the model list and usage as a gateway would."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

CHECK_URL = "/api/v1/authz/check"
MODELS_URL = "/v1/models"
USAGE_URL = "/api/v1/usage"


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def check(client: Client) -> Callable[..., Any]:
    """POST /api/v1/authz/check with the key as bearer; `model=` etc. go in the JSON body."""

    def _check(raw: str, **resources: str) -> Any:
        return client.post(CHECK_URL, resources, content_type="application/json", **bearer(raw))

    return _check


@pytest.fixture
def list_models(client: Client) -> Callable[[str], Any]:
    def _list(raw: str, url: str = MODELS_URL) -> Any:
        return client.get(url, **bearer(raw))

    return _list


@pytest.fixture
def report_usage(client: Client) -> Callable[..., Any]:
    def _report(caller_raw: str | None, **body: Any) -> Any:
        headers = bearer(caller_raw) if caller_raw else {}
        return client.post(USAGE_URL, body, content_type="application/json", **headers)

    return _report


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a write's on-commit work (the cache invalidation), as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def listed(response: Any) -> list[str]:
    return [entry["id"] for entry in response.json()["data"]]


def error_type(response: Any) -> str | None:
    return response.json().get("error", {}).get("type")
