"""Liveness and readiness probes, and the Prometheus metrics."""
from __future__ import annotations

import hmac

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView

from accessctl.errors import json_error
from keys.cache import feed_state


def healthz(request) -> JsonResponse:
    """Liveness: answers without touching the database or the cache."""
    return JsonResponse({"status": "ok"})


def readyz(request) -> JsonResponse:
    """Readiness: the database and the cache both answer."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report, never raise
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("readyz", "1", 5)
        checks["cache"] = "ok" if cache.get("readyz") == "1" else "error: read back failed"
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": checks,
        # Informational: a degraded feed costs the check one Redis read, never correctness.
        "invalidation_feed": feed_state(),
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
