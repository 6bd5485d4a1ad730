"""POST /api/v1/usage at gateway rates (issue 16): what one report costs, the memo of resolved keys and what
its staleness can and cannot do, the applier trigger, the applier's exact set-based sums, and requests that
share an inline apply."""
from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keys import cache as snapshot_cache
from keys import tasks, usage, usage_apply
from keys.models import UsageBatch, UsageReport, VirtualKey
from keys.services import usage_report
from orgs.models import AuditEntry, Organization, Team, User
from tests.factories import KeyFactory, OrganizationFactory, TeamFactory, UserFactory

from .conftest import USAGE_URL, bearer, error_type

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"


@pytest.fixture(autouse=True)
def fresh_memo():
    usage.forget_resolved_keys()
    yield
    usage.forget_resolved_keys()


@pytest.fixture
def gateway():
    return KeyFactory(user=UserFactory(is_system=True)).raw


@pytest.fixture
def applier_stopped(monkeypatch):
    monkeypatch.setattr(usage, "usage_apply_soon", lambda: None)


def post(client, caller, body):
    return client.post(USAGE_URL, body, content_type="application/json", **bearer(caller))


def _path_key(**key_fields):
    return KeyFactory(team=TeamFactory(organization=OrganizationFactory()), **key_fields)


# --- what one report costs ----------------------------------------------------------------------


def test_usage_report_on_a_path_without_budget_is_one_insert(client, gateway, applier_stopped):
    key = _path_key()
    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.1})  # resolves the key once

    with CaptureQueriesContext(connection) as queries:
        response = post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.1, "idempotency_key": "c-2"})

    assert response.status_code == 202
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    assert UsageReport.objects.filter(applied_at__isnull=True).count() == 2


def test_usage_list_over_many_keys_resolves_them_in_one_query(client, gateway, applier_stopped):
    keys = [KeyFactory() for _ in range(20)]
    post(client, gateway, {"key": keys[0].raw, "model": GPT, "spend": 0.1})  # the caller's snapshot, warm
    usage.forget_resolved_keys()

    with CaptureQueriesContext(connection) as queries:
        response = post(client, gateway, [{"key": k.raw, "model": GPT, "spend": 0.1} for k in keys])

    assert response.status_code == 202
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT", "INSERT"]


def test_usage_report_on_a_budgeted_path_reads_pending_and_applied_spend_once(client, gateway, applier_stopped):
    key = _path_key(max_budget=10.0)
    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.1})

    with CaptureQueriesContext(connection) as queries:
        post(client, gateway, [{"key": key.raw, "model": GPT, "spend": 0.1}] * 50)

    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT", "SELECT", "SELECT"]


# --- the memo of resolved keys ------------------------------------------------------------------


def test_usage_for_a_key_deleted_after_it_was_resolved_is_dropped_by_the_applier(client, gateway, applier_stopped):
    key = KeyFactory()
    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5})
    VirtualKey.objects.filter(pk=key.pk).delete()

    response = post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5})

    assert response.status_code == 202  # within USAGE_KEY_CACHE_SECONDS this process still knows the key
    assert usage.usage_drain() == (2, False)
    assert UsageReport.objects.count() == 0


def test_usage_for_a_deleted_key_answers_404_once_the_memo_expired(client, gateway, settings, applier_stopped):
    settings.USAGE_KEY_CACHE_SECONDS = 0
    key = KeyFactory()
    post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5})
    VirtualKey.objects.filter(pk=key.pk).delete()

    response = post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.5})

    assert response.status_code == 404
    assert response.json()["error"]["param"] == "key"


def test_usage_budget_set_after_the_key_was_resolved_is_still_enforced_by_the_applier(
    client, gateway, check, committed
):
    key = _path_key()
    with committed():
        post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.6})
    VirtualKey.objects.filter(pk=key.pk).update(max_budget=1.0)  # the memo still says: no budget
    snapshot_cache.invalidate_tokens([key.token])

    with committed():
        response = post(client, gateway, {"key": key.raw, "model": GPT, "spend": 0.6})

    assert response.json()["budget_exceeded"] == []  # ingestion did not count it ...
    assert AuditEntry.objects.filter(action="budget_exceeded", object_id=key.token).count() == 1  # ... the applier did
    assert error_type(check(key.raw, model=GPT)) == "budget_exceeded"


def test_usage_for_an_old_secret_after_its_grace_period_answers_404(client, gateway, applier_stopped):
    key = KeyFactory()
    old_token = key.token
    VirtualKey.objects.filter(pk=key.pk).update(token="f" * 64, previous_token=old_token,
                                                previous_token_expires=timezone.now())

    response = post(client, gateway, {"key": old_token, "model": GPT, "spend": 0.5})

    assert response.status_code == 404


# --- the applier trigger (with a broker) ----------------------------------------------------------


def test_usage_trigger_queues_one_applier_run_per_half_delay_per_process(monkeypatch, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.USAGE_APPLY_DELAY_SECONDS = 60.0
    queued = []
    monkeypatch.setattr(tasks.apply_usage, "apply_async", lambda **options: queued.append(options))
    monkeypatch.setattr(usage_apply, "_quiet_until", 0.0)
    usage_apply.cache.delete(usage_apply.APPLY_QUEUED_FLAG)

    for _ in range(5):
        usage_apply.usage_apply_soon()

    assert queued == [{"countdown": 60.0}]
    monkeypatch.setattr(usage_apply, "_quiet_until", 0.0)  # half the delay later
    usage_apply.cache.delete(usage_apply.APPLY_QUEUED_FLAG)  # the run started
    usage_apply.usage_apply_soon()
    assert len(queued) == 2


# --- the applier --------------------------------------------------------------------------------


def test_usage_sums_are_decimal_exact(client, gateway, applier_stopped):
    key = _path_key()
    post(client, gateway, [{"key": key.raw, "model": GPT, "spend": spend} for spend in (0.1, 0.2, 0.3)])

    usage.usage_drain()

    row = VirtualKey.objects.get(pk=key.pk)
    assert row.spend == 0.6  # not 0.6000000000000001, the floats added as floats
    assert row.model_spend == {GPT: 0.6}
    assert Team.objects.get(pk=key.team_id).spend == 0.6


def test_usage_batch_over_many_keys_writes_each_table_once(client, gateway, applier_stopped):
    team = TeamFactory(organization=OrganizationFactory())
    keys = [KeyFactory(team=team) for _ in range(30)]
    post(client, gateway, [{"key": k.raw, "model": GPT, "spend": 0.01 * (i + 1)} for i, k in enumerate(keys)])

    with CaptureQueriesContext(connection) as queries:
        assert usage_apply.usage_apply_batch() == 30

    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")
              and "keys_usagebatch" not in q["sql"]]
    if connection.vendor == "postgresql":
        assert len(writes) == 4  # one UPDATE … FROM (VALUES …) per table
    spends = dict(VirtualKey.objects.filter(team=team).values_list("pk", "spend"))
    assert [spends[k.pk] for k in keys] == [round(0.01 * (i + 1), 2) for i in range(30)]
    assert Team.objects.get(pk=team.pk).spend == 4.65
    assert Organization.objects.get(pk=team.organization_id).spend == 4.65
    assert UsageBatch.objects.get().reports == 30


def test_usage_retried_report_is_counted_once_after_it_was_applied(client, gateway, applier_stopped):
    key = KeyFactory()
    report = {"key": key.raw, "model": GPT, "spend": 0.5, "idempotency_key": "call-9"}
    post(client, gateway, [report])
    usage.usage_drain()

    retry = post(client, gateway, [report, {**report, "idempotency_key": "call-10"}]).json()
    usage.usage_drain()

    assert [r["duplicate"] for r in retry["results"]] == [True, False]
    assert VirtualKey.objects.get(pk=key.pk).spend == 1.0


# --- requests sharing an inline apply (no broker) -----------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_usage_concurrent_requests_share_inline_applies_and_leave_nothing_pending():
    if connection.vendor != "postgresql":
        pytest.skip("real concurrency needs PostgreSQL")
    key = _path_key()
    errors: list[BaseException] = []

    def report() -> None:
        try:
            for _ in range(50):
                usage_report(actor=None, key=key.raw, model=GPT, spend=0.01)
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
    assert UsageReport.objects.filter(applied_at__isnull=True).count() == 0  # no drain after the threads
    key.refresh_from_db()
    team = Team.objects.get(pk=key.team_id)
    rows = (key, team, Organization.objects.get(pk=team.organization_id), User.objects.get(pk=key.user_id))
    assert [row.spend for row in rows] == [4.0] * 4
