"""Budget resets: windows snap to boundaries, spend returns to zero, and nothing reported concurrently is lost."""
from __future__ import annotations

import datetime
import threading
import time

import pytest
from django.core.cache import cache
from django.db import connection
from django.db.models import F

from keys.authz import authorize
from keys.cache import cache_key, get_snapshot
from keys.models import VirtualKey
from keys.services import usage_report
from keys.tasks import KEY_SCOPE, key_budget_reset
from orgs import tasks as budget_tasks
from orgs.models import AuditEntry, Budget, Organization, Team, User
from orgs.tasks import ORGANIZATION_SCOPE, TEAM_SCOPE, USER_SCOPE, budget_reset_all, reset_batch
from tests.factories import KeyFactory, OrganizationFactory, TeamFactory, UserFactory

UTC = datetime.UTC
# A Saturday afternoon: the next midnight, Monday and 1st of the month are all different days.
NOW = datetime.datetime(2025, 3, 15, 13, 45, 30, tzinfo=UTC)
PAST = NOW - datetime.timedelta(minutes=1)
FUTURE = NOW + datetime.timedelta(minutes=1)


def make_due(row, *, spend: float, duration: str, reset_at: datetime.datetime | None) -> None:
    """Put a row in the state a budget window leaves it in (spend so far, window end)."""
    model = type(row)
    if isinstance(row, Organization):
        Budget.objects.filter(pk=row.budget_id).update(budget_duration=duration, budget_reset_at=reset_at)
        model.objects.filter(pk=row.pk).update(spend=spend, model_spend={"openai/gpt-4o": spend})
        return
    model.objects.filter(pk=row.pk).update(
        spend=spend, model_spend={"openai/gpt-4o": spend}, budget_duration=duration, budget_reset_at=reset_at
    )


def window_end(row) -> datetime.datetime | None:
    if isinstance(row, Organization):
        return Budget.objects.get(pk=row.budget_id).budget_reset_at
    return type(row).objects.get(pk=row.pk).budget_reset_at


def spend_of(row) -> tuple[float, dict]:
    fresh = type(row).objects.get(pk=row.pk)
    return fresh.spend, fresh.model_spend


SCOPES = [
    pytest.param(lambda: KeyFactory(), id="key"),
    pytest.param(lambda: TeamFactory(), id="team"),
    pytest.param(lambda: OrganizationFactory(), id="organization"),
    pytest.param(lambda: UserFactory(), id="user"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "duration, next_reset",
    [
        pytest.param("1d", datetime.datetime(2025, 3, 16, tzinfo=UTC), id="1d-next-midnight"),
        pytest.param("7d", datetime.datetime(2025, 3, 17, tzinfo=UTC), id="7d-next-monday"),
        pytest.param("30d", datetime.datetime(2025, 4, 1, tzinfo=UTC), id="30d-first-of-next-month"),
        pytest.param("1mo", datetime.datetime(2025, 4, 1, tzinfo=UTC), id="1mo-first-of-next-month"),
    ],
)
@pytest.mark.parametrize("make", SCOPES)
def test_budget_reset_due_window_zeroes_spend_and_snaps_next_window(make, duration, next_reset):
    row = make()
    make_due(row, spend=12.5, duration=duration, reset_at=PAST)
    budget_reset_all(now=NOW)
    assert spend_of(row) == (0.0, {})
    assert window_end(row) == next_reset


@pytest.mark.django_db
@pytest.mark.parametrize("make", SCOPES)
def test_budget_reset_window_not_ended_keeps_spend(make):
    row = make()
    make_due(row, spend=3.0, duration="1d", reset_at=FUTURE)
    budget_reset_all(now=NOW)
    assert spend_of(row)[0] == 3.0
    assert window_end(row) == FUTURE


@pytest.mark.django_db
def test_budget_reset_without_duration_never_resets():
    key = KeyFactory()
    VirtualKey.objects.filter(pk=key.pk).update(spend=4.0, budget_reset_at=PAST)
    key_budget_reset(now=NOW)
    assert spend_of(key)[0] == 4.0


@pytest.mark.django_db
def test_budget_reset_unscheduled_window_is_scheduled_without_reset():
    key = KeyFactory()
    make_due(key, spend=2.0, duration="1h", reset_at=None)
    key_budget_reset(now=NOW)
    assert spend_of(key)[0] == 2.0
    assert window_end(key) == datetime.datetime(2025, 3, 15, 14, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_budget_reset_reruns_change_nothing():
    key = KeyFactory()
    make_due(key, spend=5.0, duration="1d", reset_at=PAST)
    key_budget_reset(now=NOW)
    VirtualKey.objects.filter(pk=key.pk).update(spend=1.0)  # spend of the new window
    assert key_budget_reset(now=NOW) == 0
    assert spend_of(key)[0] == 1.0


@pytest.mark.django_db
def test_budget_reset_writes_one_audit_entry_per_batch_with_the_old_spend():
    keys = [KeyFactory() for _ in range(3)]
    for key in keys:
        make_due(key, spend=7.0, duration="1d", reset_at=PAST)
    first = reset_batch(KEY_SCOPE, now=NOW, limit=2)
    assert len(first) == 2
    assert len(reset_batch(KEY_SCOPE, now=NOW, limit=2, after=first[-1])) == 1
    entries = list(AuditEntry.objects.filter(action="budget_reset", object_type="key"))
    assert len(entries) == 2
    assert {token for e in entries for token in e.before} == {k.token for k in keys}
    assert all(v["spend"] == 7.0 for e in entries for v in e.before.values())


@pytest.mark.django_db
def test_budget_reset_lets_an_exhausted_key_through_on_the_next_check(django_capture_on_commit_callbacks):
    key = KeyFactory(max_budget=10.0)
    make_due(key, spend=10.0, duration="1d", reset_at=PAST)
    assert authorize(get_snapshot(key.token), now=NOW, model="openai/gpt-4o").type == "budget_exceeded"
    with django_capture_on_commit_callbacks(execute=True):
        key_budget_reset(now=NOW)
    assert cache.get(cache_key(key.token)) is None
    assert authorize(get_snapshot(key.token), now=NOW, model="openai/gpt-4o")


@pytest.mark.django_db
def test_budget_reset_of_a_team_drops_its_keys_snapshots(django_capture_on_commit_callbacks):
    team = TeamFactory()
    key = KeyFactory(team=team, user=None)
    make_due(team, spend=1.0, duration="1d", reset_at=PAST)
    get_snapshot(key.token)
    with django_capture_on_commit_callbacks(execute=True):
        budget_tasks.reset_due_budgets(TEAM_SCOPE, now=NOW)
    assert cache.get(cache_key(key.token)) is None


@pytest.mark.django_db
@pytest.mark.parametrize("rows", [pytest.param(1, id="one-row"), pytest.param(6, id="six-rows")])
def test_budget_reset_query_count_per_batch_pinned(django_assert_num_queries, rows):
    for _ in range(rows):
        make_due(UserFactory(), spend=1.0, duration="7d", reset_at=PAST)
    # One batch: savepoint, lock and read, UPDATE spend, UPDATE windows, audit entry, release.
    with django_assert_num_queries(6):
        budget_tasks.reset_due_budgets(USER_SCOPE, now=NOW, limit=10)


@pytest.mark.django_db
def test_budget_reset_of_an_organization_moves_its_budget_window():
    org = OrganizationFactory()
    make_due(org, spend=9.0, duration="1mo", reset_at=PAST)
    budget_tasks.reset_due_budgets(ORGANIZATION_SCOPE, now=NOW)
    org.refresh_from_db()
    assert (org.spend, Budget.objects.get(pk=org.budget_id).budget_reset_at) == (
        0.0, datetime.datetime(2025, 4, 1, tzinfo=UTC))


@pytest.mark.django_db
def test_budget_reset_invalid_duration_leaves_the_row_alone():
    user = UserFactory()
    make_due(user, spend=2.0, duration="fortnight", reset_at=PAST)
    budget_tasks.reset_due_budgets(USER_SCOPE, now=NOW)
    fresh = User.objects.get(pk=user.pk)
    assert (fresh.spend, fresh.budget_reset_at) == (2.0, PAST)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="races two connections on row locks; SQLite has one writer lock and no row locks")
def test_budget_reset_racing_a_usage_report_loses_nothing(monkeypatch):
    team = TeamFactory()
    key = KeyFactory(team=team, user=None)
    make_due(key, spend=10.0, duration="1d", reset_at=PAST)
    reported = threading.Event()
    errors: list[BaseException] = []

    def report() -> None:
        try:
            usage_report(actor=None, key=key.token, model="openai/gpt-4o", spend=2.5)
            reported.set()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            from django.db import connection as thread_connection

            thread_connection.close()

    reporter = threading.Thread(target=report)
    real_next_window = budget_tasks._next_window

    def next_window_while_a_report_arrives(duration, now):
        # The reset has locked and read the row: a usage report arrives now, from another connection.
        if not reporter.is_alive() and not reported.is_set():
            reporter.start()
            time.sleep(0.3)
            assert not reported.is_set(), "the report must wait for the reset's row lock"
        return real_next_window(duration, now)

    monkeypatch.setattr(budget_tasks, "_next_window", next_window_while_a_report_arrives)
    key_budget_reset(now=NOW)
    reporter.join(timeout=10)
    assert not errors and reported.is_set()
    assert spend_of(key) == (2.5, {"openai/gpt-4o": 2.5})
    assert Team.objects.get(pk=team.pk).spend == 2.5


@pytest.mark.django_db
def test_budget_reset_subtracts_observed_spend_when_spend_moves_under_it(monkeypatch):
    """Spend that lands after the reset read the row survives: the reset subtracts what it read, not "= 0"."""
    key = KeyFactory()
    make_due(key, spend=10.0, duration="1d", reset_at=PAST)
    real_next_window = budget_tasks._next_window

    def late_increment(duration, now):
        # Same connection, inside the reset's transaction: spend moves after it was read.
        VirtualKey.objects.filter(pk=key.pk).update(spend=F("spend") + 1.25)
        return real_next_window(duration, now)

    monkeypatch.setattr(budget_tasks, "_next_window", late_increment)
    key_budget_reset(now=NOW)
    assert spend_of(key)[0] == 1.25
