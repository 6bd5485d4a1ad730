"""The invalidation feed: every invalidation is also announced to every serving process, so a process can
serve its own copy of a snapshot without a round trip to the shared cache. On Redis, a pub/sub channel
(`InvalidationFeed`, below); on the default file cache, a shared sequence in mapped memory
(`SequenceFeed`); on other caches, nothing (each check proves its copy with a shared read).

Why: with a shared cache, proving a local copy current costs one read of its generation per check, and
on Redis that round trip was most of a warm check's cost. With the feed, a process applies whatever has
arrived on its subscription before serving a copy (a non-blocking poll of one socket, a few
microseconds).

Revocation: the writer deletes the shared entries and publishes in one MULTI/EXEC, after commit and
before its own request answers. Redis writes a published message to every subscriber's socket in the
same pass of its event loop that answers the publisher, so on one host any request that arrives after
the write's response finds the message already waiting on its process's socket, and the poll applies it
first: the next request is refused. Across hosts the message races the client's next request over the
network; whatever delays it (a lost segment waiting for retransmission, a partition) also delays the
PING answers queued behind it, so no process serves a copy for more than LIVENESS_SECONDS (200 ms) after
a write without having applied it. Deployments that need the strict bound across hosts under network
faults turn subscribing off (ACCESSCTL_INVALIDATION_FEED=false): one Redis read per check.

Copies are trusted only while the subscription is known to be whole:
- after Redis confirmed the subscription (copies held before that are dropped: nothing published while
  this process was not subscribed can reach it);
- while a PING this process sent within the last LIVENESS_SECONDS has been answered (the answer proves
  that everything published before the PING has arrived); a PING left unanswered that long drops the
  subscription for a new one;
- never after a connection error or a reconnect, until a new confirmation;
- and each copy for at most keys.cache.LOCAL_TRUST_SECONDS between shared reads, which bounds what a
  writer that does not publish (an older release during a rolling deploy) can leave behind.
Otherwise `current()` is False and the cache proves each copy with a shared read, as without a feed.
"""
from __future__ import annotations

import contextlib
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

CHANNEL = "authz:invalidations"
FLUSH = "*"  # the message that drops every copy (large invalidations: one short message, not a list)
# A message stays far below the 64 KB Redis writes to one client in one pass of its event loop (a larger
# one could reach a subscriber a pass later than the publisher's answer). 500 tokens ≈ 32 KB.
MAX_NAMES_PER_MESSAGE = 500
# A PING every 50 ms while requests come in; copies are trusted while one sent in the last 200 ms was
# answered (see above). An idle process's first request after 200 ms costs one shared read.
PING_INTERVAL_SECONDS = 0.05
LIVENESS_SECONDS = 0.2
PARTIAL_MESSAGE_SECONDS = 0.05
RESUBSCRIBE_AFTER_SECONDS = 1.0
_PING = "accessctl-feed"
CLIENT_NAME = "accessctl-feed"
_REDIS_BACKENDS = ("django_redis.cache.RedisCache",)
_DEFAULT_CLIENT = "django_redis.client.DefaultClient"
_DELETE_BATCH = 1000
# Deletes ARGV[1] .. each line of ARGV[2]. Only on a single server (`_redis_client`), where a script may
# name keys it was not given in KEYS.
_DELETE_PREFIXED = """
local deleted = 0
for name in string.gmatch(ARGV[2], "[^\\n]+") do
  deleted = deleted + redis.call("DEL", ARGV[1] .. name)
end
return deleted
"""
_PROBE_KEY = "authz:probe"


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

    def probe(self, timeout: float = LIVENESS_SECONDS) -> bool:
        """`current()`, after waiting up to `timeout` for a PING sent now to be answered: an idle process
        has sent none lately, which makes it not current without anything being wrong. Not for the hot
        path (it may wait); for the readiness probe."""
        deadline = self._clock() + timeout
        while True:
            if self.current():
                return True
            if self._pubsub is None or self._clock() >= deadline:
                return False
            time.sleep(0.005)  # not a blocking read: request threads poll the same socket

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
        connection = self._pubsub.connection
        # Read only once something has arrived, then allow the rest of a message a moment: a message
        # split across TCP segments must not read as a timeout (which would drop the subscription).
        while connection.can_read(timeout=0):
            message = self._pubsub.get_message(timeout=PARTIAL_MESSAGE_SECONDS)
            if message is not None:
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


class SequenceFeed:
    """The feed of the default single-host deployment (the file cache): an 8-byte invalidation sequence
    in the cache's directory, mapped into every process's memory. A writer overwrites it with a random
    value after deleting the shared entries and before its request answers; a process that reads a value
    other than the one it last saw drops every copy. A read is one comparison of mapped memory, and the
    page cache makes a write visible to every process of the host at once: next-request strict.
    """

    def __init__(self, path: str, *, on_reset: Callable[[], None]) -> None:
        self._path = path
        self._on_reset = on_reset
        self._map: mmap.mmap | None = None
        self._seen: bytes | None = None

    def current(self) -> bool:
        try:
            if self._map is None:
                self._map = _map_sequence(self._path)
            value = self._map[:_SEQUENCE_BYTES]
        except (OSError, ValueError) as exc:
            logger.warning("invalidation sequence unreadable (%s); proving each copy with a shared read", exc)
            self.close()
            return False
        if value != self._seen:
            self._on_reset()  # something was invalidated somewhere: no copy is known to be current
            self._seen = value
        return True

    def close(self) -> None:
        mapped, self._map, self._seen = self._map, None, None
        if mapped is not None:
            mapped.close()


_SEQUENCE_BYTES = 8
SEQUENCE_FILE = "authz-invalidations.seq"  # not *.djcache: the file cache's clear() and culling leave it


def _sequence_path() -> str | None:
    """The invalidation sequence of the default cache, when it is the file cache (one host)."""
    config = settings.CACHES.get("default", {})
    if config.get("BACKEND") != "django.core.cache.backends.filebased.FileBasedCache":
        return None
    return os.path.join(config["LOCATION"], SEQUENCE_FILE)


def _open_sequence(path: str) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if os.fstat(fd).st_size < _SEQUENCE_BYTES:
        os.pwrite(fd, os.urandom(_SEQUENCE_BYTES), 0)
    return fd


def _map_sequence(path: str) -> mmap.mmap:
    fd = _open_sequence(path)
    try:
        return mmap.mmap(fd, _SEQUENCE_BYTES, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


def bump_sequence() -> None:
    """On the file cache: tell every process of the host to drop its copies (after the shared entries were
    deleted). No-op on other caches. Raises when the file cannot be written, like the delete before it."""
    path = _sequence_path()
    if path is None:
        return
    fd = _open_sequence(path)
    try:
        os.pwrite(fd, os.urandom(_SEQUENCE_BYTES), 0)
    finally:
        os.close(fd)


def _redis_client() -> Any:
    """The default cache's Redis client, or None when invalidations cannot be published on it: not Redis,
    or a client (sharded, Sentinel, cluster) whose publish does not reach one server's subscribers."""
    config = settings.CACHES.get("default", {})
    if config.get("BACKEND") not in _REDIS_BACKENDS:
        return None
    if config.get("OPTIONS", {}).get("CLIENT_CLASS", _DEFAULT_CLIENT) != _DEFAULT_CLIENT:
        return None
    import redis
    from django_redis import get_redis_connection

    client = get_redis_connection("default")  # the primary, when LOCATION also lists replicas
    return client if type(client.connection_pool) is redis.ConnectionPool else None


Feed = InvalidationFeed | SequenceFeed


class ProcessFeed:
    """This process's feed for the configured cache: built on first use, rebuilt when the settings change
    (tests) and forgotten in a forked child (the parent's socket is not the child's to read)."""

    def __init__(self, *, on_names: Callable[[list[str]], None], on_reset: Callable[[], None]) -> None:
        self._on_names = on_names
        self._on_reset = on_reset
        # (settings it was built for, feed): one attribute, so a reader never pairs a feed with other settings
        self._built: tuple[tuple[Any, Any], Feed | None] = ((None, None), None)
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def current(self) -> bool:
        """True when this process's copies may be served without a shared read (see InvalidationFeed)."""
        feed = self._get()
        return feed is not None and feed.current()

    def state(self, *, probe: bool = False) -> str:
        """For the readiness probe: "off" (a cache without a feed, or turned off), "live", or "degraded"
        (each check proves its copy with a shared read until the feed is whole again). With `probe`, an
        idle feed is proven first (a PING answered within LIVENESS_SECONDS), so idleness is not degradation."""
        feed = self._get()
        if feed is None:
            return "off"
        if probe and isinstance(feed, InvalidationFeed):
            return "live" if feed.probe() else "degraded"
        return "live" if feed.current() else "degraded"

    def enabled(self) -> bool:
        return self._get() is not None

    def _get(self) -> Feed | None:
        caches, enabled = settings.CACHES, getattr(settings, "ACCESSCTL_INVALIDATION_FEED", True)
        (built_caches, built_enabled), feed = self._built
        if caches is built_caches and enabled == built_enabled:
            return feed
        with self._lock:
            (built_caches, built_enabled), feed = self._built
            if caches is not built_caches or enabled != built_enabled:
                if feed is not None:
                    feed.close()
                feed = self._build() if enabled else None
                self._built = ((caches, enabled), feed)
            return feed

    def _build(self) -> Feed | None:
        path = _sequence_path()
        if path is not None:
            return SequenceFeed(path, on_reset=self._on_reset)
        client = _redis_client()
        if client is None:
            return None
        pool = client.connection_pool
        return InvalidationFeed(
            lambda: _subscriber(pool), channel_name(), on_names=self._on_names, on_reset=self._on_reset
        )

    def _forget(self) -> None:
        self._built, self._lock = ((None, None), None), threading.Lock()


# Connection settings that belong to the pool they were made for, not to a connection of our own.
_POOL_OWN = {"maint_notifications_pool_handler", "maint_notifications_config", "himport_registry", "retry",
             "client_name"}


def _subscriber(pool: Any) -> Any:
    """A client for the subscription, reaching Redis as the cache does (address, database, password, TLS,
    timeouts), but with no sleeping retries: on the request path a failure must fall back at once."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options = {k: v for k, v in pool.connection_kwargs.items() if k not in _POOL_OWN and not k.startswith("orig_")}
    own_pool = redis.ConnectionPool(
        connection_class=pool.connection_class,
        max_connections=1,
        retry=Retry(NoBackoff(), 0),
        client_name=f"{CLIENT_NAME}-{os.getpid()}",  # findable in CLIENT LIST (operators, tests)
        **options,
    )
    return redis.Redis(connection_pool=own_pool)


def channel_name() -> str:
    """The channel of this deployment (the cache's key prefix and version keep deployments apart)."""
    from django.core.cache import cache

    return cache.make_key(CHANNEL)


def delete_and_announce(cache_keys: Sequence[str], names: Sequence[str]) -> None:
    """Delete these shared entries, then tell every process to drop its copies of `names`.

    On Redis the delete and the message go in one MULTI/EXEC (never one without the other), published
    whether or not this process subscribes (the setting only turns subscribing off); on the file cache
    the sequence is overwritten after the delete; elsewhere there is only the delete. Raises on a cache
    failure.
    """
    from django.core.cache import cache

    client = _redis_client()
    if client is None:
        for start in range(0, len(cache_keys), _DELETE_BATCH):
            cache.delete_many(cache_keys[start : start + _DELETE_BATCH])
        bump_sequence()
        return
    pipe = client.pipeline(transaction=True)
    prefix = cache.make_key("")
    joined = "\n".join(cache_keys)
    if cache.make_key(_PROBE_KEY) == prefix + _PROBE_KEY and joined.count("\n") == len(cache_keys) - 1:
        # The keys as one argument, prefixed and deleted by the server: a bulk batch's 10,000 keys cost the
        # writer one join instead of 10,000 make_key calls and as many encoded command arguments.
        pipe.eval(_DELETE_PREFIXED, 0, prefix, joined)
    else:  # a custom KEY_FUNCTION, or a key holding a newline: key by key
        make_key = cache.make_key  # bound once: through the proxy it is a lookup per key
        for start in range(0, len(cache_keys), _DELETE_BATCH):
            pipe.delete(*[make_key(key) for key in cache_keys[start : start + _DELETE_BATCH]])
    if names:
        pipe.publish(channel_name(), FLUSH if len(names) > MAX_NAMES_PER_MESSAGE else "\n".join(names))
    pipe.execute()


def delete_all_and_announce(pattern: str) -> None:
    """Delete every shared entry matching `pattern` (on Redis only those; elsewhere the whole cache, which
    is ours), then tell every process to drop all its copies. Raises on a cache failure."""
    from django.core.cache import cache

    if hasattr(cache, "delete_pattern"):  # django-redis: never the rest of a database it may share
        cache.delete_pattern(pattern)
    else:
        cache.clear()
    client = _redis_client()
    if client is not None:
        client.publish(channel_name(), FLUSH)
    bump_sequence()
