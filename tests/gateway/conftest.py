"""Fixtures of the hot-path tests: calling the check, the model list and usage as a gateway would."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.test import Client

from keys import cache as snapshot_cache

CHECK_URL = "/api/v1/authz/check"
MODELS_URL = "/v1/models"
USAGE_URL = "/api/v1/usage"
REDIS_URL = "redis://127.0.0.1:6379/5"


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


@pytest.fixture
def redis_server() -> redis.Redis:
    """The machine's Redis; its absence fails the tests that need it (never skips them)."""
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    return client


@pytest.fixture
def redis_cache(settings, redis_server) -> Iterator[str]:
    """The default cache on the real Redis (with its invalidation feed), under a key prefix of the test's
    own; yields the prefix."""
    prefix = f"test-gw-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": prefix}
    }
    yield prefix
    for name in redis_server.scan_iter(match=f"{prefix}:*", count=500):
        redis_server.delete(name)


def until_current(is_current: Callable[[], bool] = lambda: snapshot_cache._feed.current()) -> None:
    """Poll until the feed's subscription is confirmed and answered a ping (microseconds on loopback)."""
    deadline = time.monotonic() + 5
    while not is_current():
        assert time.monotonic() < deadline, "the invalidation feed never became current"
        time.sleep(0.001)


@pytest.fixture
def file_cache(settings, tmp_path) -> str:
    """The default deployment's file cache (with its invalidation sequence), in a directory of the test's own."""
    location = str(tmp_path / "cache")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": location}
    }
    return location
