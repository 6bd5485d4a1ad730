"""The snapshot cache: race-safe invalidation, and correct answers with the cache down."""
from __future__ import annotations

import pytest
from django.core.cache import cache as django_cache
from redis.exceptions import ConnectionError

from keys import cache as snapshot_cache
from keys import services as key_services
from tests.factories import KeyFactory

from .conftest import error_type

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"
CLOSED_PORT_REDIS = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1: every cache call fails
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
}


@pytest.fixture
def cache_down(settings):
    """Point the cache at a closed port, and make sure it really fails."""
    settings.CACHES = CLOSED_PORT_REDIS
    with pytest.raises(ConnectionError):
        django_cache.get("probe")


def test_snapshot_loaded_before_a_write_is_not_served_after_its_invalidation(monkeypatch, committed):
    key = KeyFactory()
    load = snapshot_cache.load_snapshot

    def load_then_lose_the_race(token):
        stale = load(token)  # read before the write commits...
        with committed():  # ...the write commits and invalidates...
            key_services.key_block(actor=None, key=key)
        return stale  # ...and the slow reader stores what it read

    monkeypatch.setattr(snapshot_cache, "load_snapshot", load_then_lose_the_race)
    assert snapshot_cache.get_snapshot(key.token).blocked is False  # the racing reader's own answer
    monkeypatch.setattr(snapshot_cache, "load_snapshot", load)

    assert snapshot_cache.get_snapshot(key.token).blocked is True


def test_snapshot_stored_late_with_an_old_generation_is_never_served(committed):
    key = KeyFactory()
    stale = snapshot_cache.get_snapshot(key.token)
    generation = django_cache.get(snapshot_cache.generation_key(key.token))
    with committed():
        key_services.key_block(actor=None, key=key)

    django_cache.set(snapshot_cache.cache_key(key.token), (generation, stale))  # a slow reader's late store
    snapshot_cache._local.clear()  # as another process sees it

    assert snapshot_cache.get_snapshot(key.token).blocked is True


def test_local_copy_is_not_served_once_another_process_invalidated(django_assert_num_queries):
    key = KeyFactory()
    snapshot_cache.get_snapshot(key.token)

    django_cache.delete(snapshot_cache.generation_key(key.token))  # another process's invalidation

    with django_assert_num_queries(2):  # the token's probe, then the key's path
        snapshot_cache.get_snapshot(key.token)


def test_snapshot_of_an_unknown_token_leaves_nothing_in_the_cache():
    snapshot_cache.get_snapshot("0" * 64)

    assert django_cache.get_many(
        [snapshot_cache.cache_key("0" * 64), snapshot_cache.generation_key("0" * 64)]
    ) == {}


def test_check_with_the_cache_down_answers_from_the_database(check, cache_down):
    key = KeyFactory(models=[GPT])

    assert check(key.raw, model=GPT).status_code == 200
    assert error_type(check(key.raw, model="x/y")) == "key_model_access_denied"


def test_check_with_the_cache_down_refuses_a_key_blocked_meanwhile(check, cache_down, committed):
    key = KeyFactory()
    assert check(key.raw, model=GPT).status_code == 200

    with committed():  # the invalidation fails quietly; the write stands
        key_services.key_block(actor=None, key=key)

    assert error_type(check(key.raw, model=GPT)) == "key_blocked"


def test_model_list_with_the_cache_down_answers_from_the_database(list_models, cache_down):
    key = KeyFactory(models=[GPT])

    response = list_models(key.raw)

    assert response.status_code == 200
    assert [entry["id"] for entry in response.json()["data"]] == [GPT]
