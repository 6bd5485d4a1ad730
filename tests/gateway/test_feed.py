"""The invalidation feed (keys/feed.py): on Redis, a warm check makes no round trip, and an invalidation
published by any process is applied by every other before its next check. Real Redis throughout."""
from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.core.cache import cache as django_cache
from django.core.cache.backends.filebased import FileBasedCache
from django_redis.cache import RedisCache

from keys import cache as snapshot_cache
from keys import feed
from keys.models import VirtualKey
from tests.factories import KeyFactory

from .conftest import REDIS_URL, error_type, until_current

GPT = "openai/gpt-4o"


@pytest.fixture
def server(redis_server) -> redis.Redis:
    return redis_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def copies() -> dict[str, str]:
    """What a process holds: name → copy."""
    return {}


@pytest.fixture
def channel() -> str:
    return f"test-feed-{uuid.uuid4().hex}"


@pytest.fixture
def make_feed(copies, clock, channel) -> Iterator[Callable[..., feed.InvalidationFeed]]:
    made: list[feed.InvalidationFeed] = []

    def _make(url: str = REDIS_URL) -> feed.InvalidationFeed:
        instance = feed.InvalidationFeed(
            lambda: redis.Redis.from_url(url, socket_connect_timeout=0.2, client_name=channel),
            channel,
            on_names=lambda names: [copies.pop(name, None) for name in names],
            on_reset=copies.clear,
            clock=clock,
        )
        made.append(instance)
        return instance

    yield _make
    for instance in made:
        instance.close()


def kill_clients(server: redis.Redis, name_prefix: str) -> int:
    """Close the server side of every connection named so: a network failure, as the process sees it."""
    killed = 0
    for client in server.client_list():
        if client["name"].startswith(name_prefix):
            server.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


def test_copies_held_before_the_subscription_is_confirmed_are_dropped(make_feed, copies):
    copies.update(a="old", b="old")

    until_current(make_feed().current)

    assert copies == {}


def test_published_names_are_dropped_by_the_next_poll_without_waiting(make_feed, copies, server, channel):
    subscription = make_feed()
    until_current(subscription.current)
    copies.update(a="1", b="2", c="3")

    server.publish(channel, "a\nc")

    # The next poll that finds the message on the socket applies it (on loopback it is there at once, but a
    # loaded machine may deliver it a poll or two later).
    until_current(lambda: subscription.current() and copies == {"b": "2"})
    assert copies == {"b": "2"}


def test_flush_message_drops_every_copy(make_feed, copies, server, channel):
    subscription = make_feed()
    until_current(subscription.current)
    copies.update(a="1", b="2")

    server.publish(channel, feed.FLUSH)

    until_current(lambda: subscription.current() and copies == {})
    assert copies == {}


def test_feed_stops_being_current_when_pings_stop_being_answered(make_feed, clock, monkeypatch):
    subscription = make_feed()
    until_current(subscription.current)
    monkeypatch.setattr(subscription._pubsub, "ping", lambda *args: None)  # a connection gone silent

    clock.now += feed.LIVENESS_SECONDS + 0.01

    assert subscription.current() is False


def test_answer_read_after_an_idle_spell_does_not_make_the_feed_current(make_feed, clock):
    subscription = make_feed()
    until_current(subscription.current)
    clock.now += feed.PING_INTERVAL_SECONDS
    assert subscription.current() is True  # sends a PING; its answer waits on the socket

    clock.now += 10 * feed.LIVENESS_SECONDS  # idle: nothing read for a long time

    assert subscription.current() is False  # the answer proves only what was published before the PING
    until_current(subscription.current)  # the PING just sent is answered at once


def test_ping_unanswered_too_long_drops_the_subscription_and_every_copy(make_feed, copies, clock, monkeypatch):
    subscription = make_feed()
    until_current(subscription.current)
    monkeypatch.setattr(subscription._pubsub, "ping", lambda *args: None)  # a connection gone silent
    clock.now += feed.PING_INTERVAL_SECONDS
    subscription.current()  # the PING that will never be answered
    copies.update(a="1")

    clock.now += feed.LIVENESS_SECONDS + 0.01
    assert subscription.current() is False
    clock.now += feed.RESUBSCRIBE_AFTER_SECONDS
    until_current(subscription.current)

    assert copies == {}


def test_lost_connection_is_not_current_until_resubscribed_and_drops_every_copy(
    make_feed, copies, clock, server, channel
):
    subscription = make_feed()
    until_current(subscription.current)
    copies.update(a="1")

    assert kill_clients(server, channel) == 1
    server.publish(channel, "a")  # lost: nobody is subscribed

    assert subscription.current() is False
    assert subscription.current() is False  # no resubscription before the back-off
    clock.now += feed.RESUBSCRIBE_AFTER_SECONDS
    until_current(subscription.current)
    assert copies == {}


def split_proxy() -> int:
    """A TCP proxy to Redis that delivers the server's larger writes in 1,448-byte segments 2 ms apart,
    as a real network does; returns its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(source: socket.socket, target: socket.socket, split: bool) -> None:
        try:
            while data := source.recv(65536):
                if not split or len(data) <= 4000:
                    target.sendall(data)
                    continue
                for start in range(0, len(data), 1448):
                    target.sendall(data[start : start + 1448])
                    time.sleep(0.002)
        except OSError:
            pass

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", 6379))
            threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, True), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_message_arriving_in_several_segments_is_applied_without_losing_the_subscription(
    make_feed, copies, server, channel
):
    subscription = make_feed(f"redis://127.0.0.1:{split_proxy()}/5")
    until_current(subscription.current)
    names = [uuid.uuid4().hex * 2 for _ in range(feed.MAX_NAMES_PER_MESSAGE)]  # about 32 KB
    copies.update({names[0]: "1", names[-1]: "2", "other": "3"})

    server.publish(channel, "\n".join(names))
    deadline = time.monotonic() + 2
    while names[-1] in copies and time.monotonic() < deadline:
        assert subscription.current() is True  # never dropped while the message trickles in
        time.sleep(0.001)

    assert copies == {"other": "3"}


def test_unreachable_redis_is_not_current_and_is_retried_at_a_pace(make_feed, clock, monkeypatch):
    attempts = []
    subscription = make_feed("redis://127.0.0.1:1/0")  # nothing listens on port 1
    connect = subscription._connect
    monkeypatch.setattr(subscription, "_connect", lambda: attempts.append(1) or connect())

    assert subscription.current() is False
    assert subscription.current() is False
    assert len(attempts) == 1
    clock.now += feed.RESUBSCRIBE_AFTER_SECONDS
    assert subscription.current() is False
    assert len(attempts) == 2


# The snapshot cache on Redis, through the check, as a gateway calls it.


@pytest.fixture
def warm(check, redis_cache) -> Callable[[str], None]:
    """Check until this process's copy is served from the feed (cold read, then a confirmed subscription)."""

    def _warm(raw: str) -> None:
        assert check(raw, model=GPT).status_code == 200
        until_current()
        assert check(raw, model=GPT).status_code == 200

    return _warm


def record_reads(monkeypatch, backend: type) -> list[str]:
    """Every read a cache backend makes from its store, by method name."""
    reads: list[str] = []
    for method in ("get", "get_many", "has_key"):
        original = getattr(backend, method)
        monkeypatch.setattr(
            backend, method, lambda self, *a, _m=method, _o=original, **k: reads.append(_m) or _o(self, *a, **k)
        )
    return reads


@pytest.fixture
def cache_reads(monkeypatch) -> list[str]:
    """Every read the Django cache makes from Redis."""
    return record_reads(monkeypatch, RedisCache)


def another_process_invalidates(server: redis.Redis, token: str) -> None:
    """What a write's commit does in another process: delete the shared entries, then publish the token."""
    server.delete(django_cache.make_key(snapshot_cache.cache_key(token)))
    server.delete(django_cache.make_key(snapshot_cache.generation_key(token)))
    server.publish(feed.channel_name(), token)


def block_without_invalidating(key: VirtualKey) -> None:
    """The database changes; this process hears nothing (the invalidation comes from elsewhere)."""
    VirtualKey.objects.filter(pk=key.pk).update(blocked=True)


@pytest.mark.django_db
def test_warm_check_on_redis_reads_nothing_from_redis_and_runs_no_query(
    check, warm, cache_reads, django_assert_num_queries
):
    key = KeyFactory()
    warm(key.raw)
    cache_reads.clear()

    with django_assert_num_queries(0):
        assert check(key.raw, model=GPT).status_code == 200

    assert cache_reads == []


@pytest.mark.django_db
def test_copy_is_served_until_another_process_publishes_the_invalidation(check, warm, server):
    key = KeyFactory()
    warm(key.raw)
    block_without_invalidating(key)
    assert check(key.raw, model=GPT).status_code == 200  # the copy, as expected without an invalidation

    another_process_invalidates(server, key.token)

    response = check(key.raw, model=GPT)
    assert response.status_code == 403
    assert error_type(response) == "key_blocked"


@pytest.mark.django_db
def test_invalidation_lost_with_the_subscription_is_still_seen_on_the_next_check(check, warm, server):
    key = KeyFactory()
    warm(key.raw)
    assert kill_clients(server, feed.CLIENT_NAME) >= 1
    block_without_invalidating(key)

    another_process_invalidates(server, key.token)  # published to nobody: this process is disconnected

    response = check(key.raw, model=GPT)
    assert response.status_code == 403
    assert error_type(response) == "key_blocked"


@pytest.mark.django_db
def test_copy_loaded_across_an_invalidation_another_thread_applied_is_not_kept(redis_cache, server, monkeypatch):
    key = KeyFactory()
    until_current()
    load = snapshot_cache.load_snapshot

    def load_while_another_thread_applies_an_invalidation(token):
        stale = load(token)  # read before the write...
        block_without_invalidating(key)
        another_process_invalidates(server, token)  # ...which commits and is announced...
        assert snapshot_cache._feed.current()  # ...and another thread's request applies the message
        return stale

    monkeypatch.setattr(snapshot_cache, "load_snapshot", load_while_another_thread_applies_an_invalidation)
    assert snapshot_cache.get_snapshot(key.token).blocked is False  # the racing reader's own answer
    monkeypatch.setattr(snapshot_cache, "load_snapshot", load)

    assert snapshot_cache.get_snapshot(key.token).blocked is True


@pytest.mark.django_db
def test_copy_is_proven_again_after_the_trust_period_when_nothing_was_published(
    check, warm, server, monkeypatch
):
    key = KeyFactory()
    warm(key.raw)
    block_without_invalidating(key)
    # A writer that deletes but does not publish (a release from before the feed, mid rolling deploy).
    server.delete(django_cache.make_key(snapshot_cache.generation_key(key.token)))
    assert check(key.raw, model=GPT).status_code == 200  # still within the trust period

    now = snapshot_cache._now()
    monkeypatch.setattr(snapshot_cache, "_now", lambda: now + snapshot_cache.LOCAL_TRUST_SECONDS + 0.01)

    assert check(key.raw, model=GPT).status_code == 403


@pytest.mark.django_db
def test_invalidations_are_published_even_where_subscribing_is_turned_off(settings, redis_cache):
    settings.ACCESSCTL_INVALIDATION_FEED = False
    subscriber = redis.Redis.from_url(REDIS_URL).pubsub()
    subscriber.subscribe(feed.channel_name())
    assert subscriber.get_message(timeout=1)["type"] == "subscribe"

    snapshot_cache.invalidate_tokens(["a" * 64])

    assert subscriber.get_message(timeout=1)["data"] == b"a" * 64
    subscriber.close()


@pytest.mark.django_db
def test_feed_is_off_for_a_redis_client_whose_publish_reaches_no_single_server(settings, redis_cache):
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "OPTIONS": {"CLIENT_CLASS": "django_redis.client.ShardClient"}}
    }

    assert snapshot_cache.feed_state() == "off"


@pytest.mark.django_db
def test_write_whose_affected_keys_cannot_be_resolved_drops_every_snapshot(check, warm, monkeypatch, committed):
    from django.db import DatabaseError

    from keys import services as key_services

    key, other = KeyFactory(), KeyFactory()
    warm(key.raw)
    warm(other.raw)

    def database_gone(affects):
        raise DatabaseError("connection lost after commit")

    monkeypatch.setattr(snapshot_cache, "affected_tokens", database_gone)
    monkeypatch.setattr(snapshot_cache, "_forget_all", lambda: None)  # the writer is another process
    with committed():
        key_services.key_block(actor=None, key=key)

    assert check(key.raw, model=GPT).status_code == 403
    assert check(other.raw, model=GPT).status_code == 200


@pytest.mark.django_db
def test_feed_turned_off_proves_each_copy_with_one_shared_read(check, settings, redis_cache, server, cache_reads):
    settings.ACCESSCTL_INVALIDATION_FEED = False
    key = KeyFactory()
    assert check(key.raw, model=GPT).status_code == 200
    cache_reads.clear()
    assert check(key.raw, model=GPT).status_code == 200
    assert cache_reads == ["get"]
    block_without_invalidating(key)

    server.delete(django_cache.make_key(snapshot_cache.generation_key(key.token)))  # no publish

    assert check(key.raw, model=GPT).status_code == 403


@pytest.mark.django_db
def test_invalidating_many_keys_publishes_one_flush_message(redis_cache, server):
    subscriber = server.pubsub()
    subscriber.subscribe(feed.channel_name())
    assert subscriber.get_message(timeout=1)["type"] == "subscribe"

    snapshot_cache.invalidate_tokens(f"{n:064x}" for n in range(feed.MAX_NAMES_PER_MESSAGE + 1))
    snapshot_cache.invalidate_tokens(["a" * 64, "b" * 64])

    assert subscriber.get_message(timeout=1)["data"] == feed.FLUSH.encode()
    assert subscriber.get_message(timeout=1)["data"] == f"{'a' * 64}\n{'b' * 64}".encode()
    subscriber.close()


def stored_generations(server: redis.Redis, tokens: list[str]) -> list[bool]:
    return [bool(server.exists(django_cache.make_key(snapshot_cache.generation_key(t)))) for t in tokens]


@pytest.mark.django_db
def test_invalidating_a_bulk_batch_deletes_every_generation_and_nothing_else(redis_cache, server):
    tokens = [f"{n:064x}" for n in range(feed.MAX_NAMES_PER_MESSAGE * 3)]
    kept = "f" * 64
    for token in [*tokens, kept]:
        django_cache.set(snapshot_cache.generation_key(token), "g", 60)

    snapshot_cache.invalidate_tokens(tokens)

    assert not any(stored_generations(server, tokens))
    assert stored_generations(server, [kept]) == [True]


@pytest.mark.django_db
def test_invalidation_under_a_custom_key_function_deletes_key_by_key(redis_cache, server, settings):
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_FUNCTION": "tests.gateway.test_feed.reversed_key"}
    }
    tokens = [f"{n:064x}" for n in range(3)]
    stored = [reversed_key(snapshot_cache.generation_key(t), redis_cache, 1) for t in tokens]
    for token in tokens:
        django_cache.set(snapshot_cache.generation_key(token), "g", 60)
    assert all(server.exists(name) for name in stored)

    snapshot_cache.invalidate_tokens(tokens)

    assert not any(server.exists(name) for name in stored)


def reversed_key(key: str, key_prefix: str, version: int) -> str:
    """A key function under which no common prefix exists: keys end, not start, with the prefix."""
    return f"{key}:{version}:{key_prefix}"


@pytest.mark.django_db
def test_readyz_reports_the_feed_live_once_subscribed(client, redis_cache):
    until_current()

    assert client.get("/readyz").json()["invalidation_feed"] == "live"


# The default deployment: the file cache and its shared invalidation sequence.


@pytest.fixture
def file_cache_reads(monkeypatch) -> list[str]:
    """Every read the Django cache makes from its files."""
    return record_reads(monkeypatch, FileBasedCache)


@pytest.mark.django_db
def test_warm_check_on_the_file_cache_reads_no_cache_file(check, file_cache, file_cache_reads):
    key = KeyFactory()
    assert check(key.raw, model=GPT).status_code == 200
    file_cache_reads.clear()

    assert check(key.raw, model=GPT).status_code == 200

    assert file_cache_reads == []


@pytest.mark.django_db
def test_file_cache_copy_is_served_until_another_process_bumps_the_sequence(check, file_cache):
    key = KeyFactory()
    assert check(key.raw, model=GPT).status_code == 200
    block_without_invalidating(key)
    assert check(key.raw, model=GPT).status_code == 200  # the copy, as expected without an invalidation

    # Another process's invalidation: the shared entries deleted, then the sequence overwritten.
    django_cache.delete_many([snapshot_cache.cache_key(key.token), snapshot_cache.generation_key(key.token)])
    feed.bump_sequence()

    assert check(key.raw, model=GPT).status_code == 403


@pytest.mark.django_db
def test_file_cache_invalidation_bumps_the_sequence_file(file_cache):
    sequence = Path(file_cache) / feed.SEQUENCE_FILE
    snapshot_cache.invalidate_tokens(["a" * 64])
    before = sequence.read_bytes()

    snapshot_cache.invalidate_tokens(["b" * 64])

    assert len(before) == 8
    assert sequence.read_bytes() != before


@pytest.mark.django_db
def test_file_cache_clear_keeps_the_sequence_file(file_cache):
    snapshot_cache.invalidate_tokens(["a" * 64])

    django_cache.clear()

    assert (Path(file_cache) / feed.SEQUENCE_FILE).exists()


@pytest.mark.django_db
def test_unwritable_sequence_falls_back_to_a_shared_read_per_check(check, file_cache, file_cache_reads, monkeypatch):
    monkeypatch.setattr(feed, "_map_sequence", lambda path: (_ for _ in ()).throw(PermissionError(path)))
    key = KeyFactory()
    assert check(key.raw, model=GPT).status_code == 200
    file_cache_reads.clear()

    assert check(key.raw, model=GPT).status_code == 200

    assert file_cache_reads == ["get"]
    assert snapshot_cache.feed_state() == "degraded"


@pytest.mark.django_db
def test_readyz_reports_the_file_cache_feed_live(client, file_cache):
    assert client.get("/readyz").json()["invalidation_feed"] == "live"
