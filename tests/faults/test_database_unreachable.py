"""A database that cannot be reached where no view handler stands (opening a write's transaction) answers
503 `no_db_connection`, never a 500 (issue 16: `make bench-faults` saw 500s from writes while the database
was paused)."""
from __future__ import annotations

import pytest
from django.db import OperationalError, transaction

from orgs.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def unreachable_on_begin(monkeypatch):
    def refuse(self):
        raise OperationalError("connection timeout expired")

    monkeypatch.setattr(transaction.Atomic, "__enter__", refuse)


def test_write_whose_transaction_cannot_begin_answers_503(client, settings, unreachable_on_begin):
    settings.ACCESSCTL_MASTER_KEY = "sk-test-master-key-for-503"

    response = client.post(
        "/key/generate", {"user_id": "someone@example.test"}, content_type="application/json",
        HTTP_AUTHORIZATION="Bearer sk-test-master-key-for-503",
    )

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "no_db_connection"


def test_write_whose_transaction_cannot_begin_writes_nothing(client, settings, unreachable_on_begin):
    settings.ACCESSCTL_MASTER_KEY = "sk-test-master-key-for-503"

    client.post(
        "/user/new", {"user_id": "someone@example.test"}, content_type="application/json",
        HTTP_AUTHORIZATION="Bearer sk-test-master-key-for-503",
    )

    assert not User.objects.filter(user_id="someone@example.test").exists()
