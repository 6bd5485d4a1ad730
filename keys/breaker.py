"""A circuit breaker for a dependency the hot path can do without (the shared cache).

Closed, calls go through. A failure opens it: for `open_seconds` the callers skip the dependency and use
their fallback at once (no socket timeout per call). Then it is half-open: one caller at a time tries
it, and its success closes the breaker, its failure opens it again. So a dead or hung Redis costs one
timeout per `open_seconds` per process, not one per request.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(self, name: str, *, open_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None: closed
        self._probe_started: float | None = None  # the half-open trial in flight, if any
        self.failures = 0  # calls that failed (for metrics)
        self.opened = 0  # times the breaker opened (for metrics)

    def allow(self) -> bool:
        """May this call use the dependency? Always report its outcome (`succeeded` / `failed`)."""
        if self._open_until is None:
            return True
        now = self._clock()
        with self._lock:
            if self._open_until is None:
                return True
            if now < self._open_until:
                return False
            # Half-open: one trial at a time; a trial that never reported (its thread died) expires.
            if self._probe_started is not None and now - self._probe_started < 10 * self.open_seconds:
                return False
            self._probe_started = now
            return True

    def succeeded(self) -> None:
        if self._open_until is None:
            return
        with self._lock:
            self._open_until = self._probe_started = None

    def failed(self) -> None:
        with self._lock:
            self.failures += 1
            if self._open_until is None:
                self.opened += 1
            self._open_until = self._clock() + self.open_seconds
            self._probe_started = None

    def state(self) -> str:
        """"closed", "open" (calls skip the dependency) or "half-open" (the next call tries it)."""
        until = self._open_until
        if until is None:
            return CLOSED
        return OPEN if self._clock() < until else HALF_OPEN

    def reset(self) -> None:
        """Close it (tests, and a change of settings: a new dependency)."""
        with self._lock:
            self._open_until = self._probe_started = None
