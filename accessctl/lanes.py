"""The database lane: at most ACCESSCTL_DB_LANE requests of a process wait on the database at once.

A threaded server (gunicorn gthread, `make serve`) runs requests that need the database next to checks
answered from memory. If the database hangs, every request that touched it hangs too; without a bound
they would take every thread, and the checks, which need no database, would queue behind them. The lane
keeps `threads - ACCESSCTL_DB_LANE` threads for them: a request that cannot enter the lane within
ACCESSCTL_DB_LANE_WAIT_SECONDS gets a 503 (`no_db_connection`), like one the database refused.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from accessctl.errors import error_body

# Answered from memory (or taking the lane themselves, on a cold cache): never wait for the lane here.
FREE_PATHS = frozenset({"/healthz", "/readyz", "/api/v1/authz/check", "/v1/models", "/models"})


class LaneFull(DatabaseError):
    """The database lane stayed full for ACCESSCTL_DB_LANE_WAIT_SECONDS (the database is slow or hung)."""


_built: tuple[int, threading.BoundedSemaphore | None] = (0, None)
_build_lock = threading.Lock()


def _semaphore() -> threading.BoundedSemaphore | None:
    global _built
    size = settings.ACCESSCTL_DB_LANE
    if _built[0] != size:
        with _build_lock:
            if _built[0] != size:
                _built = (size, threading.BoundedSemaphore(size) if size > 0 else None)
    return _built[1]


@contextlib.contextmanager
def database_lane(wait: float | None = None) -> Iterator[None]:
    """Hold a place in the lane while using the database; raises LaneFull if none frees up in time."""
    semaphore = _semaphore()
    if semaphore is None:
        yield
        return
    if not semaphore.acquire(timeout=settings.ACCESSCTL_DB_LANE_WAIT_SECONDS if wait is None else wait):
        raise LaneFull("the database is not answering: every place in the database lane is taken")
    try:
        yield
    finally:
        semaphore.release()


class DatabaseLaneMiddleware:
    """Every request but the probes and the gateway's memory-served ones waits for a place in the lane."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in FREE_PATHS or _semaphore() is None:
            return self.get_response(request)
        try:
            with database_lane():
                return self.get_response(request)
        except LaneFull as exc:
            return unavailable(str(exc))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return unreachable_database(exception)


def unavailable(message: str = "The database is unavailable.") -> JsonResponse:
    """SPEC §7's 503 `no_db_connection`."""
    return JsonResponse(error_body(message, "no_db_connection", None, 503), status=503)


def unreachable_database(exception: Exception) -> HttpResponse | None:
    """A database that cannot be reached where no handler of ours stands — opening a write's transaction,
    committing it, the admin — or a full lane is a 503 `no_db_connection`, never a 500: the client
    retries, and nothing was written (the transaction never began, or was rolled back)."""
    if isinstance(exception, LaneFull):
        return unavailable(str(exception))
    if isinstance(exception, (OperationalError, InterfaceError)):
        return unavailable()
    return None
