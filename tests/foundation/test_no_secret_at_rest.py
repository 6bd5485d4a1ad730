"""No secret at rest (SPEC §9): after keys are generated and regenerated — by the services and through the
admin — no column of any row of any table contains a raw secret, not even inside a session."""
from __future__ import annotations

import re

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client
from django.urls import reverse

from keys import services as key_services
from tests.factories import AccessGroupFactory, KeyFactory, OrganizationFactory, TeamFactory, UserFactory
from tests.foundation.html_forms import form_data

pytestmark = pytest.mark.django_db


def _stored_text() -> list[str]:
    """Every value of every row of every table, as text (sessions decoded, since they are encoded)."""
    texts: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - table names from introspection
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, memoryview | bytes):
                        value = bytes(value).decode("utf-8", "replace")
                    texts.append(str(value))
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_data FROM django_session")
        texts.extend(str(SessionStore().decode(data)) for (data,) in cursor.fetchall())
    return texts


def _secret_in_page(html: str) -> str:
    return re.search(r'value="(sk-[A-Za-z0-9_\-]{20,})"', html).group(1)


@pytest.fixture
def secrets_issued(admin_user) -> list[str]:
    """Raw secrets from every way a key gets one: personal, team, with groups, regenerated, custom, admin."""
    org = OrganizationFactory()
    team = TeamFactory(organization=org)
    group = AccessGroupFactory()
    raws = [
        KeyFactory().raw,
        KeyFactory(team=team, user=UserFactory()).raw,
        KeyFactory(team=team, user=None, access_group_ids=[group.pk]).raw,
    ]
    rotated = KeyFactory(key_alias="rotated")
    raws.append(rotated.raw)
    raws.append(key_services.key_regenerate(actor=admin_user, key=rotated)[1])
    raws.append(key_services.key_generate(actor=admin_user, user=admin_user, raw_key="sk-custom-secret-0123456789")[1])
    client = Client()
    client.force_login(admin_user)
    add_url = reverse("admin:keys_virtualkey_add")
    data = form_data(client.get(add_url).content.decode(), "virtualkey_form")
    data.update({"user": str(admin_user.pk), "key_alias": "made-in-admin"})
    raws.append(_secret_in_page(client.post(add_url, data).content.decode()))
    return raws


def test_no_table_column_contains_a_raw_secret(secrets_issued):
    stored = _stored_text()
    leaked = [raw for raw in secrets_issued if any(raw in text for text in stored)]
    assert leaked == []


def test_no_table_column_contains_the_random_part_of_a_secret(secrets_issued):
    stored = _stored_text()
    leaked = [raw for raw in secrets_issued if any(raw[3:] in text for text in stored)]
    assert leaked == []


def test_secret_scan_finds_a_secret_that_is_stored(admin_user):
    """The scan itself works: a secret written into a column on purpose is found."""
    key = KeyFactory()
    key_services.key_update(actor=admin_user, key=key, data={"metadata": {"oops": key.raw}})
    assert any(key.raw in text for text in _stored_text())
