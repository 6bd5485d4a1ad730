"""Group commit of usage reports: the reports of requests that arrive together go to the database in one
INSERT, and one commit.

A gateway reports once per call, so at gateway rates most of a report's cost was its own statement and
commit (PostgreSQL parses, plans, inserts and flushes the WAL for each). Here the first request to
arrive leads: it writes every report queued by then in one statement on its own connection, wakes the
requests whose reports it wrote, and hands the lead to the first request that queued meanwhile. An
idle server writes each report alone, as before, with no wait; a busy one writes as many per statement
as arrived during the previous one. Each request still answers only once its reports are committed.

A request inside a transaction (a caller's `atomic()`, a test) writes its own reports in its own
transaction: its rows must commit or roll back with it, not with another request's.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import DatabaseError, connection

# (caller, idempotency key) of a report stored with its idempotency key.
Stored = set[tuple[str, str]]
# Writes the rows (each beginning with caller, idempotency key) in one statement; returns those stored
# of the rows that carry an idempotency key.
Writer = Callable[[Sequence[tuple], bool], Stored]


@dataclass(eq=False)
class _Request:
    rows: Sequence[tuple]
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to write the queue, not because its rows are written
    stored: Stored = field(default_factory=set)
    written: bool = False
    error: Exception | None = None


class GroupCommit:
    """One per process: the queue of reports waiting for the leader's next statement."""

    def __init__(self, write: Writer) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._leading = False

    def insert(self, rows: Sequence[tuple], *, idempotent: bool) -> Stored:
        """Store the rows, committed when this returns (with other requests' rows, maybe); raises what
        the statement raised, and then none of its rows are stored."""
        if connection.in_atomic_block or not connection.get_autocommit():
            return self._write(rows, idempotent)
        request = _Request(rows)  # the statement is idempotent if any queued row carries a key
        with self._lock:
            self._queue.append(request)
            leads = not self._leading
            self._leading = True
        if not leads:
            request.done.wait()
            if not request.lead:
                return self._answer(request)
        self._lead()
        return self._answer(request)

    @staticmethod
    def _answer(request: _Request) -> Stored:
        if request.error is not None:
            raise request.error
        return request.stored

    def _lead(self) -> None:
        """Write everything queued (this request's rows among them), then pass the lead on."""
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            self._write_batch(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                else:
                    successor = None
                    self._leading = False
            for request in batch:
                if not request.written and request.error is None:
                    request.error = DatabaseError("the statement holding these reports did not finish")
                request.lead = False
                request.done.set()
            if successor is not None:
                successor.done.set()

    def _write_batch(self, batch: list[_Request]) -> None:
        rows: list[tuple] = []
        owner: dict[tuple[str, str], _Request] = {}  # the first request to use an idempotency key owns it
        for request in batch:
            for row in request.rows:
                caller, idempotency_key = row[0], row[1]
                if idempotency_key is not None:
                    if (caller, idempotency_key) in owner:
                        continue  # a second request with the same key, at the same time: a duplicate
                    owner[(caller, idempotency_key)] = request
                rows.append(row)
        try:
            stored = self._write(rows, bool(owner))
        except Exception as exc:  # noqa: BLE001 - every request of the statement gets its error
            for request in batch:
                request.error = exc
            return
        for pair in stored:
            owner[pair].stored.add(pair)
        for request in batch:
            request.written = True

