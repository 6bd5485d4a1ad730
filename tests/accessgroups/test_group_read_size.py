"""A group's reads do not grow with its keys (issue 17): the same group read on every route (LiteLLM's,
REST, the admin) at 1,000 and at 50,000 keys answers the same size with the same number of queries."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection, transaction
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accessgroups.models import AccessGroup
from accessgroups.services import sync_all
from tests.accessgroups.scale import insert_keys
from tests.factories import AccessGroupFactory, AdminFactory, OrganizationFactory, TeamFactory

pytestmark = pytest.mark.django_db

MASTER_KEY = "sk-master-key-for-group-scale-0001"
IN_SYNC = {"teams": [], "keys": [], "groups": []}
SMALL, LARGE = 1_000, 50_000
# The admin's change page of a group, whatever its number of keys: the session, its user, the group, the
# teams inline's rows and their count, and the admin's own lookup; never a query per key.
ADMIN_GROUP_PAGE_QUERIES = 6


def routes(group: AccessGroup) -> dict[str, str]:
    detail = f"/v1/access_group/{group.pk}"
    return {
        "litellm list": "/v1/access_group",
        "litellm detail": detail,
        "unified list": "/v1/unified_access_group",
        "unified detail": f"/v1/unified_access_group/{group.pk}",
        "rest list": "/api/v1/access-groups/",
        "rest detail": f"/api/v1/access-groups/{group.pk}/",
        "rest keys page": f"/api/v1/access-groups/{group.pk}/keys/?page_size=50",
        "admin change page": reverse("admin:accessgroups_accessgroup_change", args=[group.pk]),
        "admin list": reverse("admin:accessgroups_accessgroup_changelist"),
    }


def measure(group: AccessGroup, api: Client, admin: Client) -> dict[str, tuple[int, int, bytes]]:
    """Per route: (response bytes, queries, body)."""
    found = {}
    for name, url in routes(group).items():
        client = admin if name.startswith("admin") else api
        client.get(url)  # warm: the caller's key, the session and the catalog are cached after the first read
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (name, response.content[:300])
        found[name] = (len(response.content), len(queries), response.content)
    return found


@pytest.fixture(scope="module")
def growing_group(django_db_setup, django_db_blocker) -> Iterator[dict[str, dict]]:
    """One group read on every route at 1,000 keys, then again once it holds 50,000. The rows live in one
    transaction for the whole module, rolled back at its end."""
    with django_db_blocker.unblock(), override_settings(ACCESSCTL_MASTER_KEY=MASTER_KEY):
        outer = transaction.atomic()
        outer.__enter__()
        try:
            org = OrganizationFactory()
            first, rest = TeamFactory(organization=org), TeamFactory(organization=org)
            group = AccessGroupFactory(access_group_name="everyone")
            api = Client(HTTP_AUTHORIZATION=f"Bearer {MASTER_KEY}")
            admin = Client()
            admin.force_login(AdminFactory(user_id="scale-admin@example.test"))
            insert_keys(SMALL, team=first, group=group, start=0)
            small = measure(group, api, admin)
            insert_keys(LARGE - SMALL, team=rest, group=group, start=SMALL)
            group.refresh_from_db()
            large = measure(group, api, admin)
            yield {"small": small, "large": large, "group": group, "in_sync": sync_all(repair=False)}
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.mark.parametrize("route", list(routes(AccessGroup(pk="00000000-0000-0000-0000-000000000000"))))
def test_group_read_size_does_not_grow_from_1000_to_50000_keys(growing_group, route):
    small_size, _, _ = growing_group["small"][route]
    large_size, _, _ = growing_group["large"][route]
    # The same response but for the count's digits ("1000" → "50000", "1,000" → "50,000").
    assert large_size - small_size <= 4
    assert large_size < 100_000


@pytest.mark.parametrize("route", list(routes(AccessGroup(pk="00000000-0000-0000-0000-000000000000"))))
def test_group_read_query_count_does_not_grow_from_1000_to_50000_keys(growing_group, route):
    assert growing_group["large"][route][1] == growing_group["small"][route][1]


def test_group_at_50000_keys_says_it_is_truncated_and_counts_them(growing_group):
    import json

    body = json.loads(growing_group["large"]["litellm detail"][2])
    assert body["assigned_key_count"] == LARGE
    assert body["assigned_key_ids_truncated"] is True
    assert body["assigned_key_ids"] == [] and body["assigned_keys"] == []
    assert body["assigned_keys_url"] == f"/api/v1/access-groups/{growing_group['group'].pk}/keys/"


def test_group_at_50000_keys_is_in_sync(growing_group):
    assert growing_group["in_sync"] == IN_SYNC


def test_admin_group_page_at_50000_keys_shows_counts_and_links_to_the_key_list(growing_group):
    size, queries, page = growing_group["large"]["admin change page"]
    group = growing_group["group"]
    assert queries == ADMIN_GROUP_PAGE_QUERIES
    link = f'{reverse("admin:keys_virtualkey_changelist")}?access_group={group.pk}'
    assert f'<a href="{link}">50,000 keys</a>'.encode() in page
    assert b"0" * 60 not in page  # no key token is shown inline


