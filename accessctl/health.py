"""Liveness and readiness probes, and the Prometheus metrics.

/readyz answers within ACCESSCTL_READY_TIMEOUT_SECONDS whatever its dependencies do: the database probe
runs in a thread of its own (a hung database holds that thread, not the request; while it is held, the
next probe reports the timeout at once instead of piling up), the cache probe is bounded by the cache's
socket timeouts. While the server drains (SIGTERM received, see gunicorn.conf.py) it says 503 first, so
the load balancer stops sending before the server stops accepting.
"""
from __future__ import annotations

import hmac
import os
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.http import HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView

from accessctl.errors import json_error
from keys.cache import cache_answered, cache_breaker_state, cache_failed, feed_state, log_state


def healthz(request) -> JsonResponse:
    """Liveness: answers without touching the database or the cache."""
    return JsonResponse({"status": "ok"})


def draining() -> bool:
    """SIGTERM received: finish what is in flight, take no new traffic from the load balancer."""
    path = settings.ACCESSCTL_DRAIN_FILE
    return bool(path) and os.path.exists(path)


def _select_one() -> None:
    # In a transaction: on SQLite (IMMEDIATE transactions) that takes the write lock, so a database that
    # cannot take writes (a lock held too long) is not ready either.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")


class _DatabaseProber:
    """One probe in flight at a time, in a daemon thread with its own (persistent) connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Future | None = None
        self._pid = 0

    def start(self) -> Future | str:
        """A probe in flight (its future), or the error to report at once."""
        with self._lock:
            if self._pid != os.getpid():  # a forked worker: the parent's thread is not here
                self._pid, self._pending = os.getpid(), None
            if self._pending is not None and not self._pending.done():
                return "error: timeout (the previous probe is still waiting)"
            future: Future = Future()
            self._pending = future
        threading.Thread(target=self._run, args=(future,), name="accessctl-ready-probe", daemon=True).start()
        return future

    @staticmethod
    def outcome(future: Future | str, timeout: float) -> str:
        if isinstance(future, str):
            return future
        try:
            future.result(timeout=timeout)
        except FutureTimeout:
            return "error: timeout"
        except Exception as exc:  # noqa: BLE001 - report, never raise
            return f"error: {type(exc).__name__}"
        return "ok"

    @staticmethod
    def _run(future: Future) -> None:
        try:
            _select_one()
            future.set_result(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
            connection.close()
            future.set_exception(exc)


_prober = _DatabaseProber()


def _inline_database_check() -> str:
    try:
        _select_one()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - report, never raise
        return f"error: {type(exc).__name__}"


def _cache_check() -> str:
    try:
        cache.set("readyz", "1", 5)
        if cache.get("readyz") != "1":
            return "error: read back failed"
    except Exception as exc:  # noqa: BLE001
        cache_failed()  # the checks skip the cache from now on, as if one of them had failed
        return f"error: {type(exc).__name__}"
    cache_answered()  # the cache is back: the checks use it again without waiting for their own probe
    return "ok"


def readyz(request) -> JsonResponse:
    """Readiness: not draining, and the database and the cache both answer in time."""
    started = time.monotonic()
    budget = settings.ACCESSCTL_READY_TIMEOUT_SECONDS
    in_thread = settings.ACCESSCTL_READY_PROBE_THREAD
    database = _prober.start() if in_thread else None
    cache_result = _cache_check()  # bounded by the cache's socket timeouts
    if in_thread:
        database_result = _prober.outcome(database, max(0.05, budget - (time.monotonic() - started)))
    else:
        database_result = _inline_database_check()
    checks = {"database": database_result, "cache": cache_result}
    is_draining = draining()
    ready = not is_draining and all(v == "ok" for v in checks.values())
    body = {
        "status": "draining" if is_draining else "ok" if ready else "unavailable",
        "checks": checks,
        # Informational: a degraded feed or an open breaker costs the check a read, never correctness.
        "invalidation_feed": feed_state(),
        "invalidation_log": log_state(),
        "cache_breaker": cache_breaker_state(),
    }
    return JsonResponse(body, status=200 if ready else 503)



def metrics(request) -> HttpResponse:
    """Prometheus exposition (django-prometheus's export view, every worker's counters in multiprocess
    mode). With `ACCESSCTL_METRICS_TOKEN` set, only `Authorization: Bearer <token>` may read it;
    without, it is open: serve it on an internal network only."""
    token = settings.ACCESSCTL_METRICS_TOKEN
    if token:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            response = json_error("The metrics need `Authorization: Bearer <ACCESSCTL_METRICS_TOKEN>`.",
                                  "auth_error", 401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return ExportToDjangoView(request)
