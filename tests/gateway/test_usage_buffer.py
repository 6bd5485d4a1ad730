"""POST /api/v1/usage at gateway rates (issue 16, reproduction 6): reports go to a durable buffer and are
applied in batches; lists of reports; idempotency keys; budgets count the spend not yet applied; a crash
of the applier neither loses nor doubles a report."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from keys import usage, usage_apply
from keys.models import UsageBatch, UsageReport, VirtualKey
from keys.services import usage_report
from orgs.models import Organization, Team, User
from tests.factories import KeyFactory, OrganizationFactory, TeamFactory, UserFactory

from .conftest import USAGE_URL, bearer, error_type

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gateway():
    """The raw key of a gateway's system user."""
    return KeyFactory(user=UserFactory(is_system=True)).raw


@pytest.fixture
def applier_stopped(monkeypatch):
    """No applier runs on its own (a broker with no worker): reports stay pending until drained."""
    monkeypatch.setattr(usage, "usage_apply_soon", lambda: None)


def post(client, caller, body, **headers):
    return client.post(USAGE_URL, body, content_type="application/json", **bearer(caller), **headers)


def _path_key(**key_fields):
    org = OrganizationFactory()
    return KeyFactory(team=TeamFactory(organization=org), **key_fields)


def _path_rows(key):
    key = VirtualKey.objects.get(pk=key.pk)
    team = Team.objects.get(pk=key.team_id)
    return key, team, Organization.objects.get(pk=team.organization_id), User.objects.get(pk=key.user_id)


def _spends(key):
    return [row.spend for row in _path_rows(key)]


# --- lists --------------------------------------------------------------------------------------


def test_usage_list_adds_every_report_to_the_path(client, gateway):
    key, other = _path_key(), KeyFactory()
    body = [
        {"key": key.raw, "model": GPT, "spend": 0.25, "prompt_tokens": 3},
        {"key": key.token, "model": "x/y", "spend": 0.5},
        {"key": other.raw, "model": GPT, "spend": 1.0, "completion_tokens": 2},
    ]

    response = post(client, gateway, body)

    assert response.status_code == 202
    answer = response.json()
    assert (answer["reports"], answer["accepted"], answer["duplicates"]) == (3, 3, 0)
    assert [r["spend"] for r in answer["results"]] == [0.25, 0.5, 1.0]
    assert _spends(key) == [0.75] * 4
    assert VirtualKey.objects.get(pk=key.pk).model_spend == {GPT: 0.25, "x/y": 0.5}
    assert VirtualKey.objects.get(pk=other.pk).spend == 1.0


@pytest.mark.parametrize(
    ("bad", "param"),
    [
        pytest.param({"model": GPT, "spend": 0.1}, "[1].key", id="no-key"),
        pytest.param({"key": "KEY", "spend": 0.1}, "[1].model", id="no-model"),
        pytest.param({"key": "KEY", "model": GPT, "spend": -1}, "[1].spend", id="negative-spend"),
        pytest.param({"key": "KEY", "model": GPT, "spend": 0.1, "prompt_tokens": 1.5}, "[1].prompt_tokens",
                     id="fractional-tokens"),
        pytest.param({"key": "KEY", "model": GPT, "spend": 0.1, "idempotency_key": "x" * 129},
                     "[1].idempotency_key", id="idempotency-key-too-long"),
        pytest.param({"key": "KEY", "model": GPT, "spend": 0.1, "idempotency_key": 7}, "[1].idempotency_key",
                     id="idempotency-key-not-a-string"),
        pytest.param("not an object", "[1]", id="not-an-object"),
    ],
)
def test_usage_list_with_a_bad_item_answers_400_naming_it_and_stores_nothing(client, gateway, bad, param):
    key = KeyFactory()
    bad = {name: (key.raw if value == "KEY" else value) for name, value in bad.items()} if isinstance(bad, dict) else bad
    body = [{"key": key.raw, "model": GPT, "spend": 0.5}, bad]

    response = post(client, gateway, body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert UsageReport.objects.count() == 0
    assert VirtualKey.objects.get(pk=key.pk).spend == 0.0


def test_usage_list_with_an_unknown_key_answers_404_naming_it_and_stores_nothing(client, gateway):
    key = KeyFactory()
    body = [{"key": key.raw, "model": GPT, "spend": 0.5}, {"key": "sk-unknown-secret-000000000", "model": GPT,
                                                          "spend": 0.5}]

    response = post(client, gateway, body)

    assert response.status_code == 404
    assert response.json()["error"]["param"] == "[1].key"
    assert UsageReport.objects.count() == 0
    assert VirtualKey.objects.get(pk=key.pk).spend == 0.0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param([], "body", id="empty-list"),
        pytest.param([{"key": "k", "model": GPT, "spend": 0.1}] * (usage.MAX_REPORTS_PER_REQUEST + 1), "body",
                     id="too-many"),
        pytest.param("just a string", "body", id="not-an-object-or-list"),
    ],
)
def test_usage_malformed_body_answers_400(client, gateway, body, param):
    response = post(client, gateway, body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_usage_list_by_an_internal_user_answers_403_and_stores_nothing(client):
    caller, key = KeyFactory(), KeyFactory()

    response = post(client, caller.raw, [{"key": key.raw, "model": GPT, "spend": 0.5}])

    assert response.status_code == 403
    assert UsageReport.objects.count() == 0


# --- idempotency --------------------------------------------------------------------------------


def test_usage_retried_with_the_same_idempotency_key_header_counts_once(client, gateway):
    key = _path_key()
    report = {"key": key.raw, "model": GPT, "spend": 0.5}

    first = post(client, gateway, report, HTTP_IDEMPOTENCY_KEY="call-1")
    retry = post(client, gateway, report, HTTP_IDEMPOTENCY_KEY="call-1")

    assert (first.status_code, first.json()["duplicate"]) == (202, False)
    assert (retry.status_code, retry.json()["duplicate"]) == (202, True)
    assert _spends(key) == [0.5] * 4


def test_usage_retried_list_with_the_same_idempotency_keys_counts_each_once(client, gateway):
    key = KeyFactory()
    body = [{"key": key.raw, "model": GPT, "spend": 0.5, "idempotency_key": f"call-{i}"} for i in range(3)]
    post(client, gateway, body[:2])

    retry = post(client, gateway, body).json()

    assert [r["duplicate"] for r in retry["results"]] == [True, True, False]
    assert (retry["accepted"], retry["duplicates"]) == (1, 2)
    assert VirtualKey.objects.get(pk=key.pk).spend == 1.5


def test_usage_same_idempotency_key_twice_in_one_list_counts_once(client, gateway):
    key = KeyFactory()
    report = {"key": key.raw, "model": GPT, "spend": 0.5, "idempotency_key": "call-1"}

    answer = post(client, gateway, [report, report]).json()

    assert [r["duplicate"] for r in answer["results"]] == [False, True]
    assert VirtualKey.objects.get(pk=key.pk).spend == 0.5


def test_usage_idempotency_keys_are_per_caller(client, gateway):
    other_gateway = KeyFactory(user=UserFactory(is_system=True)).raw
    key = KeyFactory()
    report = {"key": key.raw, "model": GPT, "spend": 0.5, "idempotency_key": "call-1"}

    post(client, gateway, report)
    answer = post(client, other_gateway, report).json()

    assert answer["duplicate"] is False
    assert VirtualKey.objects.get(pk=key.pk).spend == 1.0


def test_usage_header_and_body_idempotency_keys_that_differ_answer_400(client, gateway):
    key = KeyFactory()

    response = post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5, "idempotency_key": "a"},
                    HTTP_IDEMPOTENCY_KEY="b")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "idempotency_key"
    assert UsageReport.objects.count() == 0


def test_usage_idempotency_key_header_on_a_list_answers_400(client, gateway):
    key = KeyFactory()

    response = post(client, gateway, [{"key": key.raw, "model": GPT, "spend": 0.5}], HTTP_IDEMPOTENCY_KEY="a")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


def test_usage_idempotency_key_header_too_long_answers_400(client, gateway):
    key = KeyFactory()

    response = post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5}, HTTP_IDEMPOTENCY_KEY="x" * 129)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_usage_concurrent_duplicates_count_once():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent inserts need PostgreSQL")
    key = _path_key()
    barrier = threading.Barrier(8)
    outcomes, errors = [], []

    def report() -> None:
        try:
            barrier.wait()
            outcomes.append(usage_report(actor=None, key=key.raw, model=GPT, spend=0.5, idempotency_key="same"))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=report) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(outcome.duplicate for outcome in outcomes) == [False] + [True] * 7
    assert _spends(key) == [0.5] * 4


# --- budgets count pending spend ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_key", "scope"),
    [
        pytest.param(lambda: _path_key(max_budget=1.0), "key", id="key"),
        pytest.param(lambda: KeyFactory(team=TeamFactory(max_budget=1.0)), "team", id="team"),
        pytest.param(lambda: KeyFactory(team=TeamFactory(organization=OrganizationFactory(max_budget=1.0))),
                     "organization", id="organization"),
        pytest.param(lambda: KeyFactory(user=UserFactory(max_budget=1.0)), "user", id="user"),
        pytest.param(lambda: KeyFactory(model_max_budget={GPT: 1.0}), "key", id="model-budget"),
    ],
)
def test_usage_pending_spend_reaching_a_budget_refuses_the_next_check(
    client, gateway, check, committed, applier_stopped, make_key, scope
):
    key = make_key()
    first = post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.6})
    assert first.json()["budget_exceeded"] == []
    assert UsageReport.objects.filter(applied_at__isnull=True).count() == 1  # pending: no applier ran
    assert check(key.raw, model=GPT).status_code == 200

    with committed():
        second = post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.6})

    assert second.json()["budget_exceeded"] == [scope]
    assert error_type(check(key.raw, model=GPT)) == "budget_exceeded"


def test_usage_pending_spend_below_the_budget_stays_pending_and_allows(client, gateway, check, applier_stopped):
    key = KeyFactory(max_budget=10.0)

    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.6})
    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.6})

    assert UsageReport.objects.filter(applied_at__isnull=True).count() == 2
    assert check(key.raw, model=GPT).status_code == 200


def test_usage_warm_check_after_reports_runs_no_query(client, gateway, check, committed, django_assert_num_queries):
    key = KeyFactory(max_budget=10.0)
    check(key.raw, model=GPT)

    with committed():
        post(client, gateway, [{"key": key.raw, "model": GPT, "spend": 1.0}] * 3)

    with django_assert_num_queries(0):
        assert check(key.raw, model=GPT).status_code == 200


# --- the applier --------------------------------------------------------------------------------


def _apply_counting_queries() -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        applied = usage_apply.usage_apply_batch()
    return applied, [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("reports", [10, 800])
def test_usage_batch_of_a_hot_key_writes_each_path_row_once(client, gateway, applier_stopped, reports):
    key = _path_key()
    post(client, gateway, [{"key": key.raw, "model": GPT, "spend": 0.01}] * (reports // 2))
    post(client, gateway, [{"key": key.raw, "model": "x/y", "spend": 0.01}] * (reports // 2))

    applied, queries = _apply_counting_queries()

    assert applied == reports
    path_updates = [q for q in queries if q.startswith("UPDATE") and "keys_usagebatch" not in q]
    assert len(path_updates) == 4  # the key, team, organization and user: once each, whatever the count
    assert len(queries) <= 16  # the same for 10 reports as for 800
    assert UsageBatch.objects.get().rows_updated == 4
    total = reports * 0.01
    assert _spends(key) == pytest.approx([total] * 4, abs=1e-9)
    assert VirtualKey.objects.get(pk=key.pk).model_spend == pytest.approx({GPT: total / 2, "x/y": total / 2})
    assert UsageReport.objects.count() == 0


def test_usage_applier_keeps_idempotency_keys_after_applying(client, gateway, applier_stopped):
    key = KeyFactory()
    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5, "idempotency_key": "call-1"})
    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5})

    usage.usage_drain()
    retry = post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5, "idempotency_key": "call-1"})
    usage.usage_drain()

    assert retry.json()["duplicate"] is True
    assert VirtualKey.objects.get(pk=key.pk).spend == 1.0
    assert list(UsageReport.objects.values_list("idempotency_key", flat=True)) == ["call-1"]


def test_usage_purge_forgets_idempotency_keys_past_the_retention(client, gateway, settings):
    key = KeyFactory()
    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5, "idempotency_key": "call-1"})
    settings.USAGE_IDEMPOTENCY_RETENTION_SECONDS = 0

    assert usage_apply.usage_purge() == 1
    assert UsageReport.objects.count() == 0


def test_usage_for_a_key_deleted_before_its_spend_is_applied_still_charges_nothing_twice(
    client, gateway, applier_stopped
):
    key = KeyFactory()
    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5})
    VirtualKey.objects.filter(pk=key.pk).delete()

    assert usage.usage_drain() == (1, False)
    assert UsageReport.objects.count() == 0


# --- real concurrency and crashes (PostgreSQL) ------------------------------------------------


def _pg_dsn() -> str:
    settings = connection.settings_dict
    return (f"host={settings['HOST'] or '127.0.0.1'} port={settings['PORT'] or 5432} "
            f"user={settings['USER'] or 'postgres'} dbname={settings['NAME']}")


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_usage_report_is_accepted_while_the_path_rows_are_locked(client, gateway, applier_stopped):
    """Reproduction 6: a report used to lock the key, team, org and user rows, so every report of a busy
    team queued behind the last. Ingestion now only appends."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    key = _path_key()
    with psycopg.connect(_pg_dsn()) as holder:
        holder.execute("SELECT 1 FROM orgs_team WHERE team_id = %s FOR UPDATE", [key.team_id])
        holder.execute("SELECT 1 FROM keys_virtualkey WHERE id = %s FOR UPDATE", [key.pk])
        answers: list[int] = []
        reporter = threading.Thread(
            target=lambda: (answers.append(post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5})
                                           .status_code), connections.close_all())
        )
        reporter.start()
        reporter.join(timeout=5)
        accepted_while_locked = not reporter.is_alive()
        holder.rollback()
    reporter.join()

    assert accepted_while_locked, "the report waited for the path's row locks"
    assert answers == [202]
    assert UsageReport.objects.filter(applied_at__isnull=True).count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_usage_applier_killed_mid_batch_loses_and_doubles_nothing(applier_stopped):
    if connection.vendor != "postgresql":
        pytest.skip("kills a process holding a PostgreSQL transaction")
    team = TeamFactory(organization=OrganizationFactory())
    keys = [KeyFactory(team=team) for _ in range(3)]
    for i in range(300):
        usage_report(actor=None, key=keys[i % 3].raw, model=GPT, spend=0.25)
    env = {**os.environ, "DATABASE_URL": f"postgres://{connection.settings_dict['USER'] or 'postgres'}@"
           f"{connection.settings_dict['HOST'] or '127.0.0.1'}:{connection.settings_dict['PORT'] or 5432}/"
           f"{connection.settings_dict['NAME']}"}
    with psycopg.connect(_pg_dsn()) as holder:
        # The applier will lock the keys, then wait here for the team row: kill it there, mid-batch.
        holder.execute("SELECT 1 FROM orgs_team WHERE team_id = %s FOR UPDATE", [team.pk])
        applier = subprocess.Popen([sys.executable, "manage.py", "apply_usage"], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_until_blocked(holder, applier, timeout=30)
        finally:
            applier.send_signal(signal.SIGKILL)
            applier.wait()
        holder.rollback()

    assert UsageReport.objects.filter(applied_at__isnull=True).count() == 300  # the batch rolled back
    assert VirtualKey.objects.filter(team=team, spend__gt=0).count() == 0
    assert usage.usage_drain() == (300, False)
    assert usage.usage_drain() == (0, False)
    key_spend = sorted(VirtualKey.objects.filter(team=team).values_list("spend", flat=True))
    assert key_spend == [25.0] * 3
    assert Team.objects.get(pk=team.pk).spend == 75.0
    assert Organization.objects.get(pk=team.organization_id).spend == 75.0
    assert sum(User.objects.filter(pk__in=[k.user_id for k in keys]).values_list("spend", flat=True)) == 75.0


def _wait_until_blocked(holder, process, timeout: float) -> None:
    """Until another backend waits for a lock that `holder` holds (the applier, mid-batch)."""
    deadline = time.monotonic() + timeout
    # Its own autocommit connection: pg_stat_activity is a snapshot per transaction.
    with psycopg.connect(_pg_dsn(), autocommit=True) as observer:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the applier exited: {process.communicate()}")
            row = observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                [holder.info.backend_pid],
            ).fetchone()
            if row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the applier never reached the locked team row")


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_usage_8_by_500_parallel_reports_sum_exactly_with_the_applier_running(applier_stopped):
    if connection.vendor != "postgresql":
        pytest.skip("real concurrency needs PostgreSQL")
    key = _path_key()
    stop = threading.Event()
    errors: list[BaseException] = []

    def report() -> None:
        try:
            for _ in range(500):
                usage_report(actor=None, key=key.raw, model=GPT, spend=0.01)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    def apply_meanwhile() -> None:
        try:
            while not stop.is_set():
                usage.usage_drain()
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    applier = threading.Thread(target=apply_meanwhile)
    applier.start()
    reporters = [threading.Thread(target=report) for _ in range(8)]
    for thread in reporters:
        thread.start()
    for thread in reporters:
        thread.join()
    stop.set()
    applier.join()
    usage.usage_drain()

    assert errors == []
    rows = _path_rows(key)
    assert [row.spend for row in rows] == [40.0] * 4
    assert [row.model_spend for row in rows] == [{GPT: 40.0}] * 4
    assert UsageReport.objects.count() == 0
