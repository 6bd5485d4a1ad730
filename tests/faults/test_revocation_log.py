"""The pieces behind "a revocation is never lost", in-process: the invalidation log, the repeated block,
negative caching of unknown keys, the cache's circuit breaker and the database lane."""
from __future__ import annotations

import pytest
from django.db import DatabaseError

from accessctl import lanes
from keys import cache as snapshot_cache
from keys import crypto, revocations
from keys import services as key_services
from keys.breaker import CircuitBreaker
from keys.models import Invalidation, VirtualKey
from tests.factories import KeyFactory, UserFactory
from tests.gateway.conftest import error_type

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"


@pytest.fixture
def log(monkeypatch) -> revocations.RevocationLog:
    """This process's log reader, read by the test (`log.read_once()`) instead of a thread."""
    return snapshot_cache._log


def _lose_invalidations(monkeypatch) -> None:
    """The shared cache never hears of an invalidation (as when Redis is cut off from the writer)."""
    monkeypatch.setattr(snapshot_cache.feed, "delete_and_announce", lambda *a, **k: None)
    monkeypatch.setattr(snapshot_cache, "_forget", lambda names: None)  # the writer is another process


def test_a_write_notes_the_keys_it_invalidated_in_the_database(committed):
    key = KeyFactory(models=[GPT])

    with committed():
        key_services.key_block(actor=None, key=key)

    notes = [tokens for tokens in Invalidation.objects.values_list("tokens", flat=True) if key.token in tokens]
    assert len(notes) == 1


def test_a_block_the_cache_never_heard_of_is_refused_once_the_log_is_read(check, committed, monkeypatch, log):
    key = KeyFactory(models=[GPT])
    log.read_once()
    assert check(key.raw, model=GPT).status_code == 200
    assert check(key.raw, model=GPT).status_code == 200  # served from this process's copy
    _lose_invalidations(monkeypatch)

    with committed():
        key_services.key_block(actor=None, key=key)
    assert check(key.raw, model=GPT).status_code == 200  # the stale copy: only the log knows
    log.read_once()

    response = check(key.raw, model=GPT)
    assert (response.status_code, error_type(response)) == (403, "key_blocked")


def test_a_stale_shared_entry_left_by_a_lost_delete_is_refused_by_every_process(check, committed, monkeypatch, log):
    key = KeyFactory(models=[GPT])
    log.read_once()
    assert check(key.raw, model=GPT).status_code == 200
    _lose_invalidations(monkeypatch)
    with committed():
        key_services.key_block(actor=None, key=key)
    snapshot_cache._forget_all()  # another process: no copy of its own, only the shared (stale) entry
    log.read_once()

    response = check(key.raw, model=GPT)
    assert (response.status_code, error_type(response)) == (403, "key_blocked")


def test_a_repeated_block_invalidates_again(check, committed, monkeypatch):
    key = KeyFactory(models=[GPT])
    assert check(key.raw, model=GPT).status_code == 200
    VirtualKey.objects.filter(pk=key.pk).update(blocked=True)  # blocked, but the cache was never told
    assert check(key.raw, model=GPT).status_code == 200

    with committed():
        key_services.key_block(actor=None, key=key)

    response = check(key.raw, model=GPT)
    assert (response.status_code, error_type(response)) == (403, "key_blocked")


def test_a_note_naming_many_keys_names_every_key(log):
    revocations.write([f"token-{n}" for n in range(revocations.MAX_NAMES_PER_NOTE + 1)])

    assert Invalidation.objects.latest("id").everything
    log.read_once()
    assert not log.fresh("any-token", 0)


def test_a_copy_loaded_after_the_note_is_fresh(log):
    revocations.write(["token-a"])
    log.read_once()

    assert not log.fresh("token-a", 0)
    assert log.fresh("token-a", log.tag())
    assert log.fresh("token-b", 0)


def test_the_log_is_live_after_a_read_and_off_when_not_polled(log, settings):
    settings.ACCESSCTL_REVOCATION_POLL_SECONDS = 0
    assert log.state() == "off"
    log.read_once()
    assert log.live()


# --- reproduction 3: unknown keys ------------------------------------------------------------------


def test_an_unknown_key_is_looked_up_once_then_refused_from_memory(check, django_assert_num_queries, log):
    raw = crypto.generate_secret()
    log.read_once()  # as every serving process does: its word lets a copy be served without a shared read
    assert check(raw, model=GPT).status_code == 401

    with django_assert_num_queries(0):
        response = check(raw, model=GPT)

    assert (response.status_code, error_type(response)) == (401, "auth_error")


def test_a_key_created_with_a_secret_refused_before_is_allowed_at_once(check, committed):
    raw = crypto.generate_secret()
    assert check(raw, model=GPT).status_code == 401

    with committed():
        key_services.key_generate(actor=None, user=UserFactory(), models=[GPT], raw_key=raw)

    assert check(raw, model=GPT).status_code == 200


def test_a_key_regenerated_to_a_secret_refused_before_is_allowed_at_once(check, committed):
    key = KeyFactory(models=[GPT])
    raw = crypto.generate_secret()
    assert check(raw, model=GPT).status_code == 401

    with committed():
        key_services.key_regenerate(actor=None, key=key, new_raw_key=raw)

    assert check(raw, model=GPT).status_code == 200


def test_a_cold_check_with_the_database_lane_full_is_a_503_not_a_wait(check, settings):
    settings.ACCESSCTL_DB_LANE = 1
    with lanes.database_lane():  # another request holds the only place
        response = check(crypto.generate_secret(), model=GPT)

    assert (response.status_code, error_type(response)) == (503, "no_db_connection")


def test_a_management_request_with_the_database_lane_full_is_a_503(client, settings, admin_user):
    settings.ACCESSCTL_DB_LANE = 1
    client.force_login(admin_user)
    with lanes.database_lane():
        response = client.get("/api/v1/keys")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "no_db_connection"


# --- reproduction 5: the breaker --------------------------------------------------------------------


def test_the_breaker_skips_the_cache_after_a_failure_then_tries_once():
    now = [0.0]
    breaker = CircuitBreaker("test", open_seconds=1.0, clock=lambda: now[0])
    assert breaker.allow() and breaker.state() == "closed"

    breaker.failed()
    assert (breaker.state(), breaker.allow()) == ("open", False)
    now[0] = 1.5
    assert breaker.state() == "half-open"
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.succeeded()
    assert (breaker.state(), breaker.allow()) == ("closed", True)


def test_checks_skip_a_dead_cache_and_answer_from_the_log_checked_copies(check, settings, log,
                                                                         django_assert_num_queries):
    key = KeyFactory(models=[GPT])
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    settings.ACCESSCTL_INVALIDATION_FEED = False
    log.read_once()
    assert check(key.raw, model=GPT).status_code == 200  # the cache fails: the breaker opens

    assert snapshot_cache.cache_breaker_state() == "open"
    with django_assert_num_queries(0):
        assert check(key.raw, model=GPT).status_code == 200  # no cache call, no query: the log vouches


def test_a_failed_cold_load_raises_a_database_error_for_the_503(monkeypatch):
    def fail(token):
        raise DatabaseError("down")

    monkeypatch.setattr(snapshot_cache, "token_known", fail)  # the cold load's first query
    monkeypatch.setattr(snapshot_cache, "key_with_path", fail)
    with pytest.raises(DatabaseError):
        snapshot_cache.get_snapshot("0" * 64)
