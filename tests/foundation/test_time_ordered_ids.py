"""Key ids are UUIDv7 (accessctl.ids.uuid7): made in order, they sort in order, so rows a bulk run reaches in
creation order are neighbours in the primary key's index too."""
from __future__ import annotations

import datetime

import pytest

from accessctl.ids import uuid7
from tests.factories import KeyFactory


def test_ids_made_one_after_another_sort_in_the_order_they_were_made():
    ids = [uuid7() for _ in range(10_000)]

    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_id_is_an_rfc_9562_version_7_uuid():
    made = uuid7()

    assert made.version == 7
    assert made.variant == "specified in RFC 4122"


def test_id_stamped_with_a_time_carries_its_milliseconds():
    at = datetime.datetime(2025, 1, 1, 12, 30, 15, 123456, tzinfo=datetime.UTC)

    made = uuid7(at)

    assert made.int >> 80 == int(at.timestamp() * 1000)


def test_ids_stamped_microseconds_apart_still_sort_by_time():
    base = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)

    ids = [uuid7(base + datetime.timedelta(microseconds=n)) for n in range(2_000)]

    assert ids == sorted(ids)


@pytest.mark.django_db
def test_keys_created_later_have_greater_ids():
    keys = [KeyFactory() for _ in range(5)]

    assert [key.pk for key in keys] == sorted(key.pk for key in keys)
