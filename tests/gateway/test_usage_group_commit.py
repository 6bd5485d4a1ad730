"""Usage reports that arrive together are written in one statement (keys/usage_commit.py): each request
still answers only once its own reports are committed, learns which of its idempotency keys were stored,
and gets the statement's error if it failed."""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from django.db import OperationalError, connections, transaction

from keys.usage_commit import GroupCommit

pytestmark = pytest.mark.django_db(transaction=True)  # autocommit, as a request outside any transaction


class Writer:
    """Records each statement's rows; the first statement waits until `release` is set."""

    def __init__(self, fail: bool = False) -> None:
        self.statements: list[list[tuple]] = []
        self.started, self.release = threading.Event(), threading.Event()
        self.fail = fail
        self.stored_before: set[tuple[str, str]] = set()

    def __call__(self, rows: Sequence[tuple], idempotent: bool) -> set[tuple[str, str]]:
        self.statements.append(list(rows))
        if len(self.statements) == 1:
            self.started.set()
            assert self.release.wait(5)
        if self.fail:
            raise OperationalError("the database went away")
        fresh = {(r[0], r[1]) for r in rows if r[1] is not None} - self.stored_before
        self.stored_before |= fresh
        return fresh


def closing(target):
    """A thread's target that closes the thread's database connection when done (else the test database
    cannot be dropped)."""

    def run(*args, **kwargs):
        try:
            target(*args, **kwargs)
        finally:
            connections.close_all()

    return run


def in_threads(commit: GroupCommit, batches: list[list[tuple]]) -> tuple[list[threading.Thread], list[object]]:
    """Insert each batch from a thread of its own (started); the threads, and the list that will hold each
    one's result or the exception it raised."""
    results: list[object] = [None] * len(batches)

    def run(i: int) -> None:
        try:
            results[i] = commit.insert(batches[i], idempotent=any(r[1] for r in batches[i]))
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=closing(run), args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    return threads, results


def wait_until_queued(commit: GroupCommit, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(commit._queue) < count:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_lone_report_is_written_at_once_in_its_own_statement():
    writer = Writer()
    writer.release.set()
    commit = GroupCommit(writer)

    assert commit.insert([("master", "k1", "row")], idempotent=True) == {("master", "k1")}
    assert writer.statements == [[("master", "k1", "row")]]


def test_reports_arriving_during_a_statement_are_written_together_in_the_next():
    writer = Writer()
    commit = GroupCommit(writer)
    first = threading.Thread(target=closing(commit.insert), args=([("master", None, "r0")],), kwargs={"idempotent": False})
    first.start()
    assert writer.started.wait(5)
    threads, results = in_threads(commit, [[("master", None, f"r{i}")] for i in range(1, 6)])
    wait_until_queued(commit, 5)

    writer.release.set()
    first.join(5)
    for thread in threads:
        thread.join(5)

    assert len(writer.statements) == 2
    assert sorted(writer.statements[1]) == [("master", None, f"r{i}") for i in range(1, 6)]
    assert results == [set()] * 5


def test_each_request_learns_only_its_own_stored_idempotency_keys():
    writer = Writer()
    writer.stored_before = {("user:gw", "old")}
    commit = GroupCommit(writer)
    first = threading.Thread(target=closing(commit.insert), args=([("master", None, "r0")],), kwargs={"idempotent": False})
    first.start()
    assert writer.started.wait(5)
    threads, results = in_threads(commit, [
        [("user:gw", "a", "r1"), ("user:gw", "old", "r2")],
        [("user:gw", "b", "r3")],
        [("master", "a", "r4")],
    ])
    wait_until_queued(commit, 3)

    writer.release.set()
    first.join(5)
    for thread in threads:
        thread.join(5)

    assert results == [{("user:gw", "a")}, {("user:gw", "b")}, {("master", "a")}]


def test_two_requests_with_one_idempotency_key_at_once_store_it_once_for_the_first():
    writer = Writer()
    commit = GroupCommit(writer)
    first = threading.Thread(target=closing(commit.insert), args=([("master", None, "r0")],), kwargs={"idempotent": False})
    first.start()
    assert writer.started.wait(5)
    threads, results = in_threads(commit, [[("user:gw", "same", "r1")]])
    wait_until_queued(commit, 1)
    later, later_results = in_threads(commit, [[("user:gw", "same", "r2")]])
    wait_until_queued(commit, 2)

    writer.release.set()
    for thread in [first, *threads, *later]:
        thread.join(5)

    assert writer.statements[1] == [("user:gw", "same", "r1")]
    assert results == [{("user:gw", "same")}] and later_results == [set()]


def test_a_failed_statement_fails_every_request_it_held_and_the_next_one_runs():
    writer = Writer(fail=True)
    commit = GroupCommit(writer)
    first_result: list[object] = []

    def first() -> None:
        try:
            commit.insert([("master", None, "r0")], idempotent=False)
        except OperationalError as exc:
            first_result.append(exc)

    leader = threading.Thread(target=closing(first))
    leader.start()
    assert writer.started.wait(5)
    threads, results = in_threads(commit, [[("master", None, "r1")], [("master", None, "r2")]])
    wait_until_queued(commit, 2)

    writer.release.set()
    for thread in [leader, *threads]:
        thread.join(5)

    assert len(first_result) == 1
    assert all(isinstance(result, OperationalError) for result in results)
    assert len(writer.statements) == 2
    writer.fail = False
    assert commit.insert([("master", "k", "r3")], idempotent=True) == {("master", "k")}


def test_a_request_inside_a_transaction_writes_its_own_rows_in_it():
    writer = Writer()
    writer.release.set()
    commit = GroupCommit(writer)

    with transaction.atomic():
        assert commit.insert([("master", "k", "r")], idempotent=True) == {("master", "k")}

    assert commit._queue == [] and not commit._leading
