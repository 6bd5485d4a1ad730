"""POST /api/v1/usage: spend lands atomically on the key's whole path, and a spent budget refuses the next check."""
from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from keys.models import VirtualKey
from orgs.models import AuditEntry, Organization, Team, User
from tests.factories import KeyFactory, OrganizationFactory, TeamFactory, UserFactory

from .conftest import error_type

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"


@pytest.fixture
def gateway():
    """The raw key of a gateway's system user."""
    return KeyFactory(user=UserFactory(is_system=True)).raw


def _path_key(**key_fields):
    org = OrganizationFactory()
    team = TeamFactory(organization=org)
    return KeyFactory(team=team, **key_fields)


def test_usage_adds_spend_to_key_team_organization_and_user(report_usage, gateway):
    key = _path_key()

    response = report_usage(gateway, key=key.raw, model=GPT, spend=0.25, prompt_tokens=10, completion_tokens=5)

    assert response.status_code == 202
    key.refresh_from_db()
    team = Team.objects.get(pk=key.team_id)
    org = Organization.objects.get(pk=team.organization_id)
    user = User.objects.get(pk=key.user_id)
    assert [row.spend for row in (key, team, org, user)] == [0.25, 0.25, 0.25, 0.25]
    assert [row.model_spend for row in (key, team, org, user)] == [{GPT: 0.25}] * 4


def test_usage_answers_what_it_recorded(report_usage, gateway):
    key = KeyFactory(spend=1.0)

    response = report_usage(gateway, key=key.token, model=GPT, spend=0.5, prompt_tokens=10, completion_tokens=5)

    assert response.json() == {
        "key": key.token,
        "model": GPT,
        "spend": 0.5,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "idempotency_key": None,
        "duplicate": False,
        "budget_exceeded": [],
    }


def test_usage_accumulates_per_model_spend(report_usage, gateway):
    key = KeyFactory()

    for model, spend in ((GPT, 0.5), ("x/y", 1.0), (GPT, 0.25)):
        report_usage(gateway, key=key.raw, model=model, spend=spend)

    key.refresh_from_db()
    assert key.spend == 1.75
    assert key.model_spend == {GPT: 0.75, "x/y": 1.0}


def test_usage_by_the_master_key_is_accepted(report_usage, settings):
    settings.ACCESSCTL_MASTER_KEY = "sk-master-key-for-tests"
    key = KeyFactory()

    assert report_usage("sk-master-key-for-tests", key=key.raw, model=GPT, spend=0.1).status_code == 202


def test_usage_by_an_internal_user_answers_403(report_usage):
    caller, key = KeyFactory(), KeyFactory()

    response = report_usage(caller.raw, key=key.raw, model=GPT, spend=0.1)

    assert response.status_code == 403
    assert VirtualKey.objects.get(pk=key.pk).spend == 0.0


def test_usage_by_a_service_account_key_answers_403(report_usage):
    caller, key = KeyFactory(user=None, team=TeamFactory()), KeyFactory()

    assert report_usage(caller.raw, key=key.raw, model=GPT, spend=0.1).status_code == 403


@pytest.mark.parametrize(
    "caller",
    [pytest.param(None, id="no-key"), pytest.param("sk-unknown-secret-0000000000", id="unknown-key")],
)
def test_usage_without_a_known_caller_answers_401(report_usage, caller):
    key = KeyFactory()

    response = report_usage(caller, key=key.raw, model=GPT, spend=0.1)

    assert response.status_code == 401
    assert error_type(response) == "auth_error"


def test_usage_for_an_unknown_key_answers_404_naming_key(report_usage, gateway):
    response = report_usage(gateway, key="sk-unknown-secret-0000000000", model=GPT, spend=0.1)

    assert response.status_code == 404
    assert response.json()["error"]["param"] == "key"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"model": GPT, "spend": 0.1}, "key", id="no-key"),
        pytest.param({"key": "KEY", "spend": 0.1}, "model", id="no-model"),
        pytest.param({"key": "KEY", "model": GPT}, "spend", id="no-spend"),
        pytest.param({"key": "KEY", "model": GPT, "spend": -1}, "spend", id="negative-spend"),
        pytest.param({"key": "KEY", "model": GPT, "spend": "0.1"}, "spend", id="spend-not-a-number"),
        pytest.param({"key": "KEY", "model": GPT, "spend": True}, "spend", id="spend-boolean"),
        pytest.param({"key": "KEY", "model": GPT, "spend": 0.1, "prompt_tokens": -3}, "prompt_tokens",
                     id="negative-prompt-tokens"),
        pytest.param({"key": "KEY", "model": GPT, "spend": 0.1, "completion_tokens": 1.5}, "completion_tokens",
                     id="fractional-completion-tokens"),
    ],
)
def test_usage_bad_input_answers_400_naming_the_field(report_usage, gateway, body, param):
    key = KeyFactory()
    body = {name: (key.raw if value == "KEY" else value) for name, value in body.items()}

    response = report_usage(gateway, **body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_usage_below_every_budget_keeps_the_warm_snapshot(report_usage, gateway, check, committed,
                                                          django_assert_num_queries):
    key = KeyFactory(max_budget=10.0)
    check(key.raw, model=GPT)

    with committed():
        report_usage(gateway, key=key.raw, model=GPT, spend=1.0)

    with django_assert_num_queries(0):
        assert check(key.raw, model=GPT).status_code == 200


@pytest.mark.parametrize(
    ("make_key", "scope"),
    [
        pytest.param(lambda: _path_key(max_budget=1.0), "key", id="key"),
        pytest.param(lambda: KeyFactory(team=TeamFactory(max_budget=1.0)), "team", id="team"),
        pytest.param(lambda: KeyFactory(team=TeamFactory(organization=OrganizationFactory(max_budget=1.0))),
                     "organization", id="organization"),
        pytest.param(lambda: KeyFactory(user=UserFactory(max_budget=1.0)), "user", id="user"),
    ],
)
def test_usage_spending_a_budget_refuses_the_next_check(report_usage, gateway, check, committed, make_key, scope):
    key = make_key()
    assert check(key.raw, model=GPT).status_code == 200

    with committed():
        response = report_usage(gateway, key=key.raw, model=GPT, spend=1.0)

    assert response.json()["budget_exceeded"] == [scope]
    assert error_type(check(key.raw, model=GPT)) == "budget_exceeded"


def test_usage_spending_a_team_budget_refuses_the_other_team_keys(report_usage, gateway, check, committed):
    team = TeamFactory(max_budget=1.0)
    spender, other = KeyFactory(team=team), KeyFactory(team=team)
    assert check(other.raw, model=GPT).status_code == 200

    with committed():
        report_usage(gateway, key=spender.raw, model=GPT, spend=1.5)

    assert error_type(check(other.raw, model=GPT)) == "budget_exceeded"


def test_usage_spending_a_model_budget_refuses_only_that_model(report_usage, gateway, check, committed):
    key = KeyFactory(model_max_budget={GPT: 1.0})
    assert check(key.raw, model=GPT).status_code == 200

    with committed():
        report_usage(gateway, key=key.raw, model=GPT, spend=1.0)

    assert error_type(check(key.raw, model=GPT)) == "budget_exceeded"
    assert check(key.raw, model="x/y").status_code == 200


def test_usage_crossing_a_budget_is_audited_once(report_usage, gateway):
    key = KeyFactory(max_budget=1.0)

    for _ in range(3):
        report_usage(gateway, key=key.raw, model=GPT, spend=0.6)

    assert AuditEntry.objects.filter(action="budget_exceeded", object_id=key.token).count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_usage_concurrent_reports_lose_nothing(client):
    if connection.vendor != "postgresql":
        pytest.skip("row locks under real concurrency need PostgreSQL")
    from keys.services import usage_report

    key = _path_key()
    threads, reports = 8, 10
    errors: list[BaseException] = []

    def report() -> None:
        try:
            for _ in range(reports):
                usage_report(actor=None, key=key.raw, model=GPT, spend=0.5)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=report) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    total = threads * reports * 0.5
    key.refresh_from_db()
    team = Team.objects.get(pk=key.team_id)
    rows = (key, team, Organization.objects.get(pk=team.organization_id), User.objects.get(pk=key.user_id))
    assert [row.spend for row in rows] == [total] * 4
    assert [row.model_spend for row in rows] == [{GPT: total}] * 4
