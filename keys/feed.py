"""The invalidation feed: with a Redis cache, every invalidation is also published on a channel that each
serving process subscribes to, so a process can serve its own copy of a snapshot without a round trip.

Why: with a shared cache, proving a local copy current costs one read of its generation per check, and
on Redis that round trip was most of a warm check's cost. With the feed, a process applies whatever has
arrived on its subscription before serving a copy (a non-blocking poll of one socket, a few
microseconds). Revocation stays next-request strict: the writer deletes the shared entries, then
publishes, both before its own request answers (after commit, in the services); Redis writes a published
message to every subscriber's socket in the same pass of its event loop that answers the publisher, so
any request that arrives after the write's response finds the message already waiting on its process's
socket, and the poll applies it first.

Copies are trusted only while the subscription is known to be whole:
- after Redis confirmed the subscription (copies held before that are dropped: nothing published while
  this process was not subscribed can reach it);
- while a PING this process sent within the last LIVENESS_SECONDS has been answered (the answer proves
  that everything published before the PING has arrived), so a connection that silently stopped
  delivering cannot hide an invalidation for longer than that; a PING left unanswered that long drops
  the subscription for a new one;
- never after a connection error or a reconnect, until a new confirmation.
Otherwise `current()` is False and the cache proves each copy with a shared read, as without a feed.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

CHANNEL = "authz:invalidations"
FLUSH = "*"  # the message that drops every copy (large invalidations: one short message, not a list)
# A message stays far below the 64 KB Redis writes to one client in one pass of its event loop (a larger
# one could reach a subscriber a pass later than the publisher's answer). 500 tokens ≈ 32 KB.
MAX_NAMES_PER_MESSAGE = 500
PING_INTERVAL_SECONDS = 0.25
LIVENESS_SECONDS = 1.0
RESUBSCRIBE_AFTER_SECONDS = 1.0
_PING = "accessctl-feed"
CLIENT_NAME = "accessctl-feed"
_REDIS_BACKENDS = ("django_redis.cache.RedisCache",)


class FeedSilent(Exception):
    """The subscription's connection stopped answering."""


class InvalidationFeed:
    """One process's subscription to the invalidation channel.

    `on_names(names)` drops those local copies, `on_reset()` drops them all. Thread-safe: one lock around
    the subscription (requests of a threaded server poll in turn; a poll is a few microseconds).
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        channel: str,
        *,
        on_names: Callable[[list[str]], None],
        on_reset: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._on_names = on_names
        self._on_reset = on_reset
        self._clock = clock
        self._lock = threading.Lock()
        self._pubsub: Any = None
        self._confirmed = False
        self._ping_sent_at: float | None = None  # the unanswered PING, if any
        self._proven_at = float("-inf")  # when the last answered PING was sent
        self._subscribe_at = float("-inf")

    def current(self) -> bool:
        """Apply every invalidation that has arrived; True when the local copies may be served as they are."""
        with self._lock:
            try:
                return self._poll()
            except Exception as exc:  # noqa: BLE001 - any failure: distrust the copies, resubscribe later
                logger.warning("authorization invalidation feed lost (%s); proving each copy with a shared read", exc)
                self.close()
                return False

    def close(self) -> None:
        """Drop the subscription (its connection too); the next poll after the back-off subscribes again."""
        pubsub, self._pubsub, self._confirmed = self._pubsub, None, False
        if pubsub is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone either way
                pubsub.close()

    def _poll(self) -> bool:
        now = self._clock()
        if self._pubsub is None:
            if now < self._subscribe_at:
                return False
            self._subscribe(now)
        while (message := self._pubsub.get_message(timeout=0)) is not None:
            self._apply(message)
        if not self._confirmed:
            return False
        if self._ping_sent_at is None:
            if now - self._proven_at >= PING_INTERVAL_SECONDS:
                self._pubsub.ping(_PING)
                self._ping_sent_at = now
        elif now - self._ping_sent_at > LIVENESS_SECONDS:
            raise FeedSilent(f"no answer to a PING in {LIVENESS_SECONDS} s")
        return now - self._proven_at <= LIVENESS_SECONDS

    def _subscribe(self, now: float) -> None:
        self._subscribe_at = now + RESUBSCRIBE_AFTER_SECONDS  # a failing Redis is retried at this pace
        pubsub = self._connect().pubsub()
        pubsub.subscribe(self._channel)  # confirmed by a message, applied by a later poll
        # A reconnect inside the client (it may reconnect on its own) resubscribes after a gap in which
        # messages were lost: distrust everything until that new subscription is confirmed.
        pubsub.connection.register_connect_callback(self._reconnected)
        pubsub.ping(_PING)  # answered after the confirmation: proves the subscription from `now` on
        self._pubsub, self._confirmed = pubsub, False
        self._ping_sent_at, self._proven_at = now, float("-inf")

    def _reconnected(self, connection: Any) -> None:
        self._confirmed = False

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            data = message["data"].decode()
            if data == FLUSH:
                self._on_reset()
            else:
                self._on_names(data.split("\n"))
        elif kind == "pong" and self._ping_sent_at is not None:
            # Dated by when the PING was sent, not when its answer is read: an answer read late, after
            # an idle spell, proves nothing about what was published since.
            self._proven_at, self._ping_sent_at = self._ping_sent_at, None
        elif kind == "subscribe":
            self._on_reset()  # copies from before the subscription may have missed invalidations
            self._confirmed = True
        else:  # unsubscribe: nothing arrives any more
            self._confirmed = False


def _redis_location() -> str | None:
    """The Redis URL of the default cache, or None when the cache is not Redis or the feed is off."""
    if not getattr(settings, "ACCESSCTL_INVALIDATION_FEED", True):
        return None
    config = settings.CACHES.get("default", {})
    if config.get("BACKEND") not in _REDIS_BACKENDS:
        return None
    location = config.get("LOCATION")
    if isinstance(location, list | tuple):  # a primary and its replicas: publish and subscribe on the primary
        location = location[0]
    return location or None


class ProcessFeed:
    """This process's feed for the configured cache: built on first use, rebuilt when the settings change
    (tests) and forgotten in a forked child (the parent's socket is not the child's to read)."""

    def __init__(self, *, on_names: Callable[[list[str]], None], on_reset: Callable[[], None]) -> None:
        self._on_names = on_names
        self._on_reset = on_reset
        self._config: tuple[Any, Any] = (None, None)
        self._feed: InvalidationFeed | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def current(self) -> bool:
        """True when this process's copies may be served without a shared read (see InvalidationFeed)."""
        feed = self._get()
        return feed is not None and feed.current()

    def state(self) -> str:
        """For the readiness probe: "off" (no Redis, or turned off), "live", or "degraded" (each check
        proves its copy with a shared read until the subscription is whole again)."""
        feed = self._get()
        if feed is None:
            return "off"
        return "live" if feed.current() else "degraded"

    def _get(self) -> InvalidationFeed | None:
        config = (settings.CACHES, getattr(settings, "ACCESSCTL_INVALIDATION_FEED", True))
        if config[0] is self._config[0] and config[1] == self._config[1]:
            return self._feed
        with self._lock:
            if config[0] is not self._config[0] or config[1] != self._config[1]:
                if self._feed is not None:
                    self._feed.close()
                self._config, self._feed = config, self._build()
            return self._feed

    def _build(self) -> InvalidationFeed | None:
        location = _redis_location()
        if location is None:
            return None
        return InvalidationFeed(
            lambda: _client(location), channel_name(), on_names=self._on_names, on_reset=self._on_reset
        )

    def _forget(self) -> None:
        self._config, self._feed, self._lock = (None, None), None, threading.Lock()


def _client(location: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options = settings.CACHES["default"].get("OPTIONS", {})
    return redis.Redis.from_url(
        location,
        socket_connect_timeout=options.get("SOCKET_CONNECT_TIMEOUT", 0.5),
        socket_timeout=options.get("SOCKET_TIMEOUT", 0.5),
        retry=Retry(NoBackoff(), 0),  # no sleeping retries on the request path: a failure falls back at once
        client_name=f"{CLIENT_NAME}-{os.getpid()}",  # findable in CLIENT LIST (operators, tests)
    )


def channel_name() -> str:
    """The channel of this deployment (the cache's key prefix and version keep deployments apart)."""
    from django.core.cache import cache

    return cache.make_key(CHANNEL)


def publish(names: Iterable[str]) -> None:
    """Tell every subscribed process to drop these copies (after the shared entries were deleted).

    No-op unless the cache is Redis. Raises on a cache failure, like the delete before it.
    """
    if _redis_location() is None:
        return
    names = list(names)
    if not names:
        return
    from django_redis import get_redis_connection

    client = get_redis_connection("default")
    if len(names) > MAX_NAMES_PER_MESSAGE:
        client.publish(channel_name(), FLUSH)
    else:
        client.publish(channel_name(), "\n".join(names))
