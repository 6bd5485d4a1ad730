"""Bad input is a 400 naming the field, never a 500 or a database error (cases schemathesis found)."""
from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest

from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"model_max_budget": {"openai/gpt-4o": [1]}}, "model_max_budget", id="per-model cap a list"),
        pytest.param({"model_max_budget": {"openai/gpt-4o": -1}}, "model_max_budget", id="per-model cap negative"),
        pytest.param({"tpm_limit": 2**70}, "tpm_limit", id="limit beyond the column"),
        pytest.param({"max_parallel_requests": 2**40}, "max_parallel_requests", id="parallel beyond the column"),
        pytest.param({"user_role": "root"}, "user_role", id="unknown role"),
    ],
)
def test_user_create_with_bad_budget_fields_is_a_400_naming_the_field(master, client_for, body, param):
    response = client_for(master).post("/api/v1/users/", {"user_id": "u@x.test", **body}, format="json")

    assert response.status_code == 400
    assert error_of(response)["param"] == param


def test_body_that_is_not_an_object_is_a_400(master, client_for):
    response = client_for(master).post("/api/v1/teams/", [1, 2], format="json")

    assert response.status_code == 400
    assert error_of(response)["param"] == "body"


def test_body_that_is_not_json_is_a_400(master, client_for):
    response = client_for(master).post("/api/v1/teams/", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["param"] == "body"


def test_form_body_with_too_many_fields_is_a_400(master, client_for):
    form = urlencode({f"f{i}": "x" for i in range(1500)})

    response = client_for(master).post("/api/v1/teams/", form, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert error_of(response)["param"] == "body"


def test_audit_filter_with_an_unusual_utc_offset_is_answered(master, client_for):
    response = client_for(master).get("/api/v1/audit-log/?created_before=" + quote("0118-11-27T23:53:55+22:39"))

    assert response.status_code == 200


def test_audit_filter_falling_off_the_calendar_in_utc_is_a_400(master, client_for):
    response = client_for(master).get("/api/v1/audit-log/?created_after=" + quote("0001-01-01T00:00:00+05:00"))

    assert response.status_code == 400
    assert error_of(response)["param"] == "created_after"


def test_unknown_page_is_a_404_in_the_error_shape(master, client_for):
    response = client_for(master).get("/api/v1/teams/?page=99")

    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found_error"
