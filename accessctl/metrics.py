"""Prometheus counters of the control plane (SPEC §10) and the per-minute check counts the admin charts.

Counting on the hot path stays in-process: a Prometheus counter increment is a lock and an addition
(the labelled children are resolved once and kept), and the chart's per-bucket counts are added to a
process-local dict that is written to the shared cache once per minute per process, never once per check.

Several worker processes (gunicorn): set `PROMETHEUS_MULTIPROC_DIR` to an empty directory before the
server starts (`make serve` does, under /dev/shm); each process then keeps its counters in a memory-mapped
file there and `/metrics` adds them up (prometheus_client's multiprocess mode; `gunicorn.conf.py`
removes a dead worker's live files). Without it, each process reports only its own counts.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from django.core.cache import cache
from prometheus_client import Counter

CHECKS = Counter(
    "accessctl_authz_checks",
    "Authorization checks answered, by decision and the denial's reason type (allowed: reason=none).",
    ["decision", "reason"],
)
SNAPSHOT_LOOKUPS = Counter(
    "accessctl_snapshot_cache_lookups", "Key snapshot lookups by the check, by result (hit or miss).", ["result"]
)
INVALIDATIONS = Counter(
    "accessctl_cache_invalidations",
    "Authorization cache invalidations: snapshots dropped (kind=token), whole-cache drops (kind=all), catalog.",
    ["kind"],
)
USAGE_REPORTS = Counter("accessctl_usage_reports", "Usage reports recorded, by outcome.", ["outcome"])
BULK_ROWS = Counter("accessctl_bulk_job_rows", "Rows processed by bulk assignment batches, by operation.", ["operation"])

_check_children: dict[tuple[str, str], Any] = {}
_HIT = SNAPSHOT_LOOKUPS.labels("hit")
_MISS = SNAPSHOT_LOOKUPS.labels("miss")


def check_answered(reason: str | None) -> None:
    """Count one check: `reason` is the denial's type, None when allowed."""
    decision = "allowed" if reason is None else "denied"
    child = _check_children.get((decision, reason or "none"))
    if child is None:
        child = _check_children.setdefault((decision, reason or "none"), CHECKS.labels(decision, reason or "none"))
    child.inc()
    _chart.add(decision)


def snapshot_lookup(loaded: bool) -> None:
    (_MISS if loaded else _HIT).inc()


def invalidated(kind: str, count: int = 1) -> None:
    INVALIDATIONS.labels(kind).inc(count)


def usage_reported(outcome: str) -> None:
    USAGE_REPORTS.labels(outcome).inc()


def bulk_rows(operation: str, count: int) -> None:
    BULK_ROWS.labels(operation).inc(count)


# --- the admin's chart: allowed and denied checks per bucket, the last day --------------------------

BUCKET_SECONDS = 600  # ten minutes: 144 bars a day
CHART_BUCKETS = 144
CHART_TTL_SECONDS = 26 * 3600
_CHART_KEY = "metrics:checks:{bucket}:{decision}"
FLUSH_SECONDS = 60


class _ChartCounts:
    """Counts per (bucket, decision) in this process, added to the shared cache at most once a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], int] = {}
        self._flush_after = 0.0

    def add(self, decision: str) -> None:
        now = time.time()
        key = (int(now) // BUCKET_SECONDS, decision)
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1
            due = now >= self._flush_after
            if due:
                self._flush_after = now + FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for (bucket, decision), count in pending.items():
            name = _CHART_KEY.format(bucket=bucket, decision=decision)
            try:
                cache.add(name, 0, CHART_TTL_SECONDS)
                cache.incr(name, count)  # atomic on Redis; the file cache may lose a racing increment
            except Exception:  # noqa: BLE001 - the chart is informational; a cache outage drops its counts
                pass


_chart = _ChartCounts()


def chart_series(now: float | None = None) -> list[dict[str, Any]]:
    """The last day's buckets, oldest first: `{"start": epoch seconds, "allowed": n, "denied": n}`.
    This process's unwritten counts are written first; other processes' within a minute."""
    _chart.flush()
    last = int(now if now is not None else time.time()) // BUCKET_SECONDS
    buckets = range(last - CHART_BUCKETS + 1, last + 1)
    names = [_CHART_KEY.format(bucket=b, decision=d) for b in buckets for d in ("allowed", "denied")]
    try:
        found = cache.get_many(names)
    except Exception:  # noqa: BLE001
        found = {}
    return [
        {
            "start": b * BUCKET_SECONDS,
            "allowed": int(found.get(_CHART_KEY.format(bucket=b, decision="allowed"), 0)),
            "denied": int(found.get(_CHART_KEY.format(bucket=b, decision="denied"), 0)),
        }
        for b in buckets
    ]
