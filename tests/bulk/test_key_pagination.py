"""Key listing at scale: keyset cursors, page/size without OFFSET scans, bounded or estimated counts."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keys.models import VirtualKey
from keys.pagination import encode_cursor, estimated_count, page_slice
from tests.accessgroups.scale import insert_keys
from tests.factories import AdminFactory, KeyFactory, TeamFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_key():
    return KeyFactory(user=AdminFactory())


@pytest.fixture
def keys(admin_key):
    team = TeamFactory()
    return [admin_key, *(KeyFactory(team=team, user=None) for _ in range(6))]


def newest_first(keys) -> list[str]:
    return [k.token for k in sorted(keys, key=lambda k: (-k.created_at.timestamp(), str(k.pk)))]


def get(client, key, url, params=None):
    return client.get(url, params or {}, HTTP_AUTHORIZATION=f"Bearer {key.raw}")


def test_keys_cursor_pages_walk_every_key_once_newest_first(client, admin_key, keys):
    seen, url, params = [], "/api/v1/keys/", {"page_size": 3}
    while url:
        body = get(client, admin_key, url, params).json()
        seen += [row["token"] for row in body["results"]]
        url, params = body["next"], None
    assert seen == newest_first(keys)


def test_keys_cursor_walks_more_keys_sharing_one_creation_time_than_a_drf_cursor_could(client, admin_key):
    # Why keys/pagination.py is not DRF's CursorPagination: DRF positions a cursor on the first ordering
    # field only and steps over rows that share its value by an offset it caps at 1,000 (offset_cutoff),
    # so past 1,000 keys stamped with one time (an import, a scripted batch) its pages repeat rows.
    # Ours seeks on (created_at, id).
    insert_keys(1_600, team=TeamFactory())
    VirtualKey.objects.exclude(pk=admin_key.pk).update(created_at=admin_key.created_at)
    seen, url, params = [], "/api/v1/keys/", {"page_size": 500}
    for _page in range(10):  # 4 pages; DRF's cursor would hand out `next` links for ever
        body = get(client, admin_key, url, params).json()
        seen += [row["token"] for row in body["results"]]
        url, params = body["next"], None
        if url is None:
            break
    assert url is None and len(seen) == len(set(seen)) == 1_601


def test_keys_cursor_previous_link_returns_the_page_before(client, admin_key, keys):
    first = get(client, admin_key, "/api/v1/keys/", {"page_size": 3}).json()
    second = get(client, admin_key, first["next"]).json()
    back = get(client, admin_key, second["previous"]).json()
    assert [r["token"] for r in back["results"]] == [r["token"] for r in first["results"]]
    assert first["previous"] is None


def test_keys_cursor_reports_the_count(client, admin_key, keys):
    assert get(client, admin_key, "/api/v1/keys/", {"page_size": 2}).json()["count"] == len(keys)


@pytest.mark.parametrize("cursor", [pytest.param("%%%", id="not-base64"), pytest.param("e30", id="empty-object"),
                                    pytest.param(encode_cursor(["yesterday", "x"]), id="bad-values")])
def test_keys_cursor_malformed_refused_naming_cursor(client, admin_key, keys, cursor):
    response = get(client, admin_key, "/api/v1/keys/", {"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "cursor"


def test_keys_cursor_page_costs_the_same_queries_at_any_depth(client, admin_key, keys):
    first = get(client, admin_key, "/api/v1/keys/", {"page_size": 2}).json()
    with CaptureQueriesContext(connection) as at_start:
        get(client, admin_key, "/api/v1/keys/", {"page_size": 2})
    third_page = get(client, admin_key, first["next"]).json()["next"]
    with CaptureQueriesContext(connection) as deeper:
        get(client, admin_key, third_page)
    assert len(deeper) == len(at_start)


def test_key_list_pages_cover_every_key_once(client, admin_key, keys):
    seen = []
    for page in (1, 2, 3):
        body = get(client, admin_key, "/key/list", {"page": page, "size": 3}).json()
        seen += body["keys"]
        assert (body["total_count"], body["total_pages"], body["current_page"]) == (len(keys), 3, page)
    assert seen == newest_first(keys)


def test_key_list_next_page_seeks_instead_of_offset(client, admin_key, keys):
    get(client, admin_key, "/key/list", {"page": 1, "size": 3})
    with CaptureQueriesContext(connection) as page_two:
        body = get(client, admin_key, "/key/list", {"page": 2, "size": 3}).json()
    assert body["keys"] == newest_first(keys)[3:6]
    assert not any("OFFSET" in q["sql"] for q in page_two.captured_queries)


def test_page_slice_jump_without_a_boundary_matches_offset_rows(keys):
    qs = VirtualKey.objects.order_by("-created_at", "id")
    assert [k.pk for k in page_slice(qs, page=3, size=2).rows] == [k.pk for k in qs[4:6]]


def test_page_slice_jump_reuses_the_nearest_earlier_boundary(keys):
    qs = VirtualKey.objects.order_by("-created_at", "id")
    page_slice(qs, page=1, size=2)
    window = page_slice(qs, page=3, size=2)
    assert [k.pk for k in window.rows] == [k.pk for k in qs[4:6]]


def test_page_slice_unseekable_ordering_falls_back_to_offset(keys):
    qs = VirtualKey.objects.order_by("key_alias", "id")  # key_alias is nullable: no seek
    assert [k.pk for k in page_slice(qs, page=2, size=3).rows] == [k.pk for k in qs[3:6]]


@pytest.mark.parametrize("bad", [pytest.param({"page": 0, "size": 5}, id="page-0"),
                                 pytest.param({"page": 1, "size": 0}, id="size-0")])
def test_page_slice_non_positive_page_or_size_refused(bad):
    from accessctl.errors import InvalidInput

    with pytest.raises(InvalidInput):
        page_slice(VirtualKey.objects.all(), **bad)


def test_estimated_count_small_list_is_exact(keys):
    assert estimated_count(VirtualKey.objects.filter(team__isnull=False)) == len(keys) - 1


def test_estimated_count_large_filtered_list_counted_once_then_cached(keys, django_assert_num_queries):
    filtered = VirtualKey.objects.filter(team__isnull=False)
    with django_assert_num_queries(2):  # the bounded count overflows; the exact count is cached
        assert estimated_count(filtered, exact_below=2) == len(keys) - 1
    with django_assert_num_queries(1):
        assert estimated_count(filtered, exact_below=2) == len(keys) - 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_class.reltuples is PostgreSQL's statistic")
def test_estimated_count_unfiltered_large_table_reads_the_statistics(keys, django_assert_num_queries):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE keys_virtualkey")
    with django_assert_num_queries(1):
        assert estimated_count(VirtualKey.objects.all(), exact_below=2) == len(keys)
