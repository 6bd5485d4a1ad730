"""Amounts stay finite and bounded, the dashboard survives any stored numbers, usage keeps recording,
and the gateway's query-string check is exact: one value per parameter, names matched as sent."""
from __future__ import annotations

import pytest
from django.db.models import F
from django.test import Client
from django.urls import reverse

from accessctl.amounts import MAX_AMOUNT
from keys.models import VirtualKey
from keys.services import usage_report
from orgs.models import Team
from tests.factories import AdminFactory, KeyFactory
from tests.hygiene.conftest import client_for, refusal

pytestmark = pytest.mark.django_db


def _admin_index() -> int:
    client = Client()
    client.force_login(AdminFactory())
    return client.get(reverse("admin:index")).status_code


def test_dashboard_with_a_tiny_budget_and_a_large_spend_answers_200(master, world):
    response = client_for(master).post("/key/update", {"key": world.key.token, "max_budget": 1e-300}, format="json")
    assert response.status_code == 200
    response = client_for(master).post("/key/update", {"key": world.key.token, "spend": 1e10}, format="json")
    assert response.status_code == 200

    assert _admin_index() == 200


def test_dashboard_survives_spend_stored_before_amounts_were_bounded(world):
    # Rows written by an older version: the largest float, next to a tiny cap.
    VirtualKey.objects.filter(pk=world.key.pk).update(spend=1.7e308, max_budget=1e-300)
    Team.objects.filter(pk=world.team.pk).update(spend=1e308, max_budget=5e-324)

    assert _admin_index() == 200


def test_usage_report_of_1e308_is_a_400_naming_spend_and_records_nothing(master, world):
    response = client_for(master).post(
        "/api/v1/usage", {"key": world.key.raw, "model": "openai/gpt-4o", "spend": 1e308}, format="json"
    )

    assert refusal(response) == (400, "spend")
    world.key.refresh_from_db()
    assert world.key.spend == 0 and world.key.model_spend == {}


def test_usage_reports_at_the_maximum_keep_recording(master, world):
    for _ in range(3):
        response = client_for(master).post(
            "/api/v1/usage", {"key": world.key.raw, "model": "openai/gpt-4o", "spend": MAX_AMOUNT}, format="json"
        )
        assert response.status_code == 202, response.content  # stored; applied at once in eager mode

    world.key.refresh_from_db()
    assert world.key.spend == 3 * MAX_AMOUNT
    assert world.key.model_spend == {"openai/gpt-4o": 3 * MAX_AMOUNT}
    assert _admin_index() == 200


def test_usage_on_a_key_whose_model_spend_was_stored_huge_keeps_recording(world):
    """A row left near the float maximum by an older version: the sum saturates instead of becoming an
    infinity no database JSON can hold, and the per-model cap stays spent."""
    VirtualKey.objects.filter(pk=world.key.pk).update(
        spend=F("spend") + 1.7e308, model_spend={"openai/gpt-4o": 1.7e308}, model_max_budget={"openai/gpt-4o": 1.0}
    )

    for _ in range(2):
        usage_report(actor=None, key=world.key.raw, model="openai/gpt-4o", spend=MAX_AMOUNT)

    world.key.refresh_from_db()
    assert world.key.model_spend["openai/gpt-4o"] == pytest.approx(1.7e308)


# --- GET /api/v1/authz/check ----------------------------------------------------------------------


def _get_check(raw: str, query: str):
    return Client().get("/api/v1/authz/check?" + query, HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("model=openai/gpt-4o&model=anthropic/claude", id="two-values"),
        pytest.param("model=anthropic/claude&model=openai/gpt-4o", id="allowed-one-last"),
        pytest.param("model=openai/gpt-4o&mod%65l=anthropic/claude", id="second-name-percent-encoded"),
        pytest.param("agent_id=a&agent_id=a", id="same-value-twice"),
    ],
)
def test_check_query_with_a_repeated_parameter_is_a_400_naming_it(world, query):
    status, param = refusal(_get_check(world.key.raw, query))

    assert status == 400 and param in ("model", "agent_id")


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("model=%20openai/gpt-4o", id="leading-space"),
        pytest.param("model=openai/gpt-4o+", id="trailing-plus-space"),
        pytest.param("model=openai/gpt-4o%0A", id="trailing-newline"),
    ],
)
def test_check_query_matches_the_name_exactly_without_trimming(world, query):
    assert _get_check(world.key.raw, "model=openai/gpt-4o").status_code == 200

    response = _get_check(world.key.raw, query)

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "key_model_access_denied"


def test_check_body_matches_the_name_exactly_without_trimming(world):
    response = Client().post("/api/v1/authz/check", {"model": " openai/gpt-4o "}, content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {world.key.raw}")

    assert response.status_code == 403


def test_check_query_warm_still_runs_no_database_query(world, django_assert_num_queries):
    _get_check(world.key.raw, "model=openai/gpt-4o")
    with django_assert_num_queries(0):
        assert _get_check(world.key.raw, "model=openai/gpt-4o").status_code == 200


def test_key_models_and_a_key_named_with_spaces_are_stored_trimmed(master, world):
    # Names are trimmed where they are written, so exact matching at the check loses nothing.
    key = KeyFactory(user=world.member, team=world.team, models=[" openai/gpt-4o "])
    assert key.models == ["openai/gpt-4o"]
