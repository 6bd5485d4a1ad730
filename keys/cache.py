"""The per-key decision snapshot cache and the catalog cache, with race-safe invalidation (SPEC §6).

Every cached value is stored as `(generation, value)` next to a generation key. A read is a hit only
when both are present and the generations are equal; invalidation deletes both. A cold read claims a
generation *before* it loads from the database, so a reader that loaded rows from before a write cannot
make its stale value current after that write's invalidation: the invalidation removed (or a later
reader replaced) the generation it claimed, and generations are random, so they never match again.

Each process also keeps the values it has read, tagged with their generation. On Redis and on the file
cache, every invalidation is also announced to every process (`keys.feed`), and while this process's
feed is whole it serves its copies with no shared read at all. Otherwise it serves a copy only after
reading the shared generation and finding it unchanged: one small shared read (no transfer or
unpickling of the snapshot). Either way an invalidation anywhere reaches every process on its next
request.

What the cache may have missed, the database still says: every invalidation is also noted in the
invalidation log (`keys.revocations`), and every value carries the log position it was loaded at; a
value a later note names is never served (a lost delete, a partition, a paused Redis). The shared cache
sits behind a circuit breaker: while it is out of reach, copies are served on the log's word alone, and
what is missing is loaded from the database, with no socket timeout per check.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.cache import cache
from django.db import DatabaseError
from django.db.models import Q

from accessctl import metrics
from accessctl.lanes import database_lane
from accessgroups.models import AccessGroup, CatalogModel, KeyAccessGroup, TeamAccessGroup
from orgs.models import Organization, Team, User

from . import feed, revocations
from .authz import KeySnapshot, build_snapshot
from .breaker import CLOSED, CircuitBreaker
from .models import VirtualKey
from .selectors import key_rows, key_with_path, token_known

if TYPE_CHECKING:
    from accessctl.events import Affects

logger = logging.getLogger(__name__)

SNAPSHOT_TTL_SECONDS = 300  # bounds staleness if an invalidation and its note are both lost (README)
GENERATION_TTL_SECONDS = 2 * SNAPSHOT_TTL_SECONDS  # outlives the values it tags; expiry only causes a miss
CATALOG_TTL_SECONDS = 300
COLD_LANE_WAIT_SECONDS = 0.2
_SNAPSHOT = "authz:snap:"
_GENERATION = "authz:gen:"
_CATALOG = "catalog:models"

T = TypeVar("T")


def cache_key(token: str) -> str:
    """The cache key of a token's snapshot."""
    return _SNAPSHOT + token


def generation_key(name: str) -> str:
    return _GENERATION + name


def load_snapshot(token: str) -> KeySnapshot | None:
    """Build the snapshot from the database (the cold path: two queries). None for an unknown token.

    Takes a place in the database lane (accessctl.lanes) for a short while only: on a hung database a cold
    check fails fast (LaneFull, a DatabaseError) instead of taking a thread the warm checks need."""
    with database_lane(wait=COLD_LANE_WAIT_SECONDS):
        key = key_with_path(token)
        if key is None:
            return None
        return build_snapshot(key_rows(key))


def _claim_generation(name: str, seen: Any) -> Any:
    """The generation a value loaded from now on will be tagged with (None if the cache fails)."""
    if seen is not None:
        return seen
    fresh = uuid.uuid4().hex
    try:
        if cache.add(generation_key(name), fresh, GENERATION_TTL_SECONDS):
            return fresh
        return cache.get(generation_key(name))  # another reader claimed first; share its generation
    except Exception:  # noqa: BLE001 - a cache failure only means "do not store"
        return None


# name → (generation, value, when it was last proven current, log tag) as this process last read it.
# Served after a shared read finds the generation unchanged, or, while the invalidation feed is live, as
# it is for up to LOCAL_TRUST_SECONDS: an invalidation written by a process that does not publish (a
# release from before the feed, during a rolling deploy) is seen within that time. Never served once the
# invalidation log (keys.revocations) holds a note naming it written after it was loaded.
_local: dict[str, tuple[Any, Any, float, int]] = {}
# name → (until when, log tag): keys this process found missing in the database. A flood of unknown keys
# costs one database read per key and process per NEGATIVE_TTL_SECONDS, and never evicts real copies.
_missing: dict[str, tuple[float, int]] = {}
_local_lock = threading.Lock()
# Bumped by every drop. A copy read from the cache or the database across a drop may predate it (another
# thread applied the invalidation before this one stored its copy), so it is not kept.
_epoch = 0
LOCAL_MAX_ENTRIES = 20_000
MISSING_MAX_ENTRIES = 50_000
LOCAL_TRUST_SECONDS = 5.0
NEGATIVE_TTL_SECONDS = 30.0
_now = time.monotonic


def _remember(name: str, generation: Any, value: Any, epoch: int, tag: int) -> None:
    with _local_lock:
        if epoch != _epoch:
            return
        if name not in _local and len(_local) >= LOCAL_MAX_ENTRIES:
            del _local[next(iter(_local))]  # the oldest entry; the rest stay warm
        _local[name] = (generation, value, _now(), tag)


def _remember_missing(name: str, epoch: int, tag: int) -> None:
    with _local_lock:
        if epoch != _epoch:
            return
        if name not in _missing and len(_missing) >= MISSING_MAX_ENTRIES:
            del _missing[next(iter(_missing))]
        _missing[name] = (_now() + NEGATIVE_TTL_SECONDS, tag)


def _forget(names: Iterable[str]) -> None:
    global _epoch
    with _local_lock:
        _epoch += 1
        for name in names:
            _local.pop(name, None)
            _missing.pop(name, None)


def _forget_all() -> None:
    global _epoch
    with _local_lock:
        _epoch += 1
        _local.clear()
        _missing.clear()


# Applies every invalidation published so far to `_local`; `current()` says whether copies may be trusted.
_feed = feed.ProcessFeed(on_names=_forget, on_reset=_forget_all)
# The invalidation log: what the database says went stale (read by a thread of each serving process).
_log = revocations.RevocationLog(on_names=_forget, on_reset=_forget_all)
# The shared cache's breaker: a dead or hung cache is skipped at once, not waited for on every check.
_breaker = CircuitBreaker("cache", open_seconds=1.0)


def feed_state() -> str:
    """This process's invalidation feed: "off", "live" or "degraded" (see keys.feed). Probes an idle
    feed (a PING, answered within LIVENESS) so that an instance with no traffic still reads "live"."""
    if _breaker.state() != CLOSED:
        return "degraded" if _feed.enabled() else "off"
    return _feed.state(probe=True)


def log_state() -> str:
    """This process's invalidation log reader: "off", "live" (read within a second) or "stale"."""
    return _log.state()


def cache_breaker_state() -> str:
    """The shared cache's circuit breaker: "closed", "open" (checks skip the cache) or "half-open"."""
    return _breaker.state()


def reset_process_state() -> None:
    """Forget every copy and close the breaker (tests: each starts as a fresh process would)."""
    _forget_all()
    _breaker.reset()
    _log.reset()


def cache_failed() -> None:
    """Another user of the cache (the readiness probe) found it failing: open the breaker."""
    _breaker.failed()


def cache_answered() -> None:
    """Another user of the cache (the readiness probe) found it answering: close the breaker."""
    _breaker.succeeded()


def _feed_current() -> bool:
    return _breaker.state() == CLOSED and _feed.current()


def _local_copy(name: str, proven_within: float | None) -> tuple[bool, Any]:
    """(True, value) for a copy this process may serve without a shared read; value None: a missing key."""
    local = _local.get(name)
    if local is not None:
        if (proven_within is None or _now() - local[2] <= proven_within) and _log.fresh(name, local[3]):
            return True, local[1]
        return False, None
    missing = _missing.get(name)
    if missing is not None and _now() < missing[0] and _log.fresh(name, missing[1]):
        return True, None
    return False, None


def _read_through(
    value_key: str, name: str, loader: Callable[[], T | None], ttl: int, known: Callable[[], bool] | None = None
) -> T | None:
    """The cached value if its generation is current, else `loader()` (stored when it is not None).

    Copies are served without a shared read while the feed is live (proven within LOCAL_TRUST_SECONDS),
    or, while the cache is out of reach (its breaker open), on the word of the invalidation log alone
    when it was read within a second. Every copy, local or shared, is refused once the log names it.
    """
    if _feed_current():
        served, value = _local_copy(name, LOCAL_TRUST_SECONDS)
        if served:
            return value
    elif _log.live():
        # The cache out of reach: the log alone vouches for copies. Otherwise it vouches for "no such key"
        # (a key created since is named by a note), and copies of real keys are proven by a shared read.
        served, value = _local_copy(name, None)
        if served and (value is None or _breaker.state() != CLOSED):
            return value
    epoch = _epoch  # after the feed applied what has arrived: a later drop forbids keeping what is read
    tag = _log.tag()  # before the load: a note written after it is newer than the tag
    if not _breaker.allow():
        return _load(name, loader, epoch, tag)
    gen_key = generation_key(name)
    try:
        generation = cache.get(gen_key)
        if generation is not None:
            local = _local.get(name)
            if local is not None and local[0] == generation and _log.fresh(name, local[3]):
                _breaker.succeeded()
                _remember(name, generation, local[1], epoch, local[3])
                return local[1]
            entry = cache.get(value_key)
            if entry is not None and len(entry) == 3 and entry[0] == generation and _log.fresh(name, entry[2]):
                _breaker.succeeded()
                _remember(name, generation, entry[1], epoch, entry[2])
                return entry[1]
        _breaker.succeeded()
    except Exception:  # noqa: BLE001 - any cache failure falls back to the database
        _breaker.failed()
        logger.warning("authorization cache unreachable; answering from the database")
        return _load(name, loader, epoch, tag)
    if generation is None and known is not None and not known():
        # Nothing cached and nothing in the database (a random key): no claim to make and undo, no full load.
        _remember_missing(name, epoch, tag)
        return None
    claimed = _claim_generation(name, generation)
    value = loader()
    try:
        if value is None:
            _remember_missing(name, epoch, tag)
            # Nothing to store: drop the claim so unknown tokens leave nothing behind.
            if claimed is not None and generation is None:
                cache.delete(gen_key)
        elif claimed is not None:
            cache.set(value_key, (claimed, value, tag), ttl)
            _remember(name, claimed, value, epoch, tag)
    except Exception:  # noqa: BLE001
        _breaker.failed()
        logger.warning("authorization cache unreachable; value not stored")
    return value


def _load(name: str, loader: Callable[[], T | None], epoch: int, tag: int) -> T | None:
    """From the database with the cache out of reach; kept locally, proven by the log alone from now on."""
    value = loader()
    if value is None:
        _remember_missing(name, epoch, tag)
    else:
        _remember(name, None, value, epoch, tag)  # generation None: never matches a shared one
    return value


def get_snapshot(token: str) -> KeySnapshot | None:
    """The key's snapshot from the cache, else from the database (then cached). None for an unknown key.

    A warm read is one small cache read and no query. With the cache unreachable the database answers,
    so the answer is never more permissive than the database's.
    """
    loaded = False

    def load() -> KeySnapshot | None:
        nonlocal loaded
        loaded = True
        return load_snapshot(token)

    def known() -> bool:
        with database_lane(wait=COLD_LANE_WAIT_SECONDS):
            return token_known(token)

    snapshot = _read_through(cache_key(token), token, load, SNAPSHOT_TTL_SECONDS, known)
    metrics.snapshot_lookup(loaded)
    return snapshot


def load_catalog() -> dict[str, str]:
    """Active catalog models as `{model_name: provider}` (what "everything" and patterns expand to)."""
    return dict(CatalogModel.objects.filter(active=True).order_by("model_name").values_list("model_name", "provider"))


def get_catalog() -> Mapping[str, str]:
    """The active catalog, cached like the snapshots and invalidated by the catalog services."""
    return _read_through(_CATALOG, _CATALOG, load_catalog, CATALOG_TTL_SECONDS) or {}


def _delete(names: list[str] | None, cache_keys: list[str]) -> None:
    """Drop this process's copies, note the invalidation in the database's log (durable: it takes effect
    on every process even if what follows fails), then delete the shared entries and announce it to every
    process (on Redis in the same transaction). Raises when the cache cannot be reached."""
    if names is None:
        _forget_all()
    else:
        _forget(names)
    try:
        revocations.write(names)
    except DatabaseError:
        logger.error("invalidation log unwritable; the cache alone is told of this invalidation")
    if not _breaker.allow():
        raise CacheUnavailable("the cache's circuit breaker is open")
    try:
        if names is None:
            feed.delete_all_and_announce(cache_keys[0])
        else:
            feed.delete_and_announce(cache_keys, names)
    except Exception:
        _breaker.failed()
        raise
    _breaker.succeeded()


class CacheUnavailable(Exception):
    """The shared cache was skipped (its breaker is open)."""


def invalidate_catalog() -> None:
    """Drop the cached catalog on every server sharing the cache (after a catalog write commits)."""
    metrics.invalidated("catalog")
    try:
        _delete([_CATALOG], [_CATALOG, generation_key(_CATALOG)])
    except Exception:  # noqa: BLE001
        logger.error("authorization cache unreachable; the catalog is invalidated through the log only")


def _named_group_query(names: Iterable[str]) -> Q:
    """Keys whose path (key, team, organization or owner) names one of these groups in its `models`.

    The teams, organizations and owners naming it are found first (small tables), so the keys are read in
    one scan with no join (four outer joins over every key took seconds at a million keys)."""
    query = Q()
    for name in names:
        teams = Team.objects.filter(Q(models__icontains=name) | Q(organization__models__icontains=name))
        query |= (
            Q(models__icontains=name)
            | Q(team_id__in=teams.values("pk"))
            | Q(organization_id__in=Organization.objects.filter(models__icontains=name).values("pk"))
            | Q(user_id__in=User.objects.filter(models__icontains=name).values("pk"))
        )
    return query


def affected_tokens(affects: Affects) -> set[str]:
    """Resolve what a write touched to the tokens whose snapshots may have changed.

    Over-approximates on purpose (a group name matches as a substring): a needless miss costs two
    queries, a missed invalidation would keep a revoked permission alive.
    """
    tokens = set(affects.tokens)
    query = Q()
    if affects.key_ids:
        query |= Q(id__in=affects.key_ids)
    if affects.team_ids:
        query |= Q(team_id__in=affects.team_ids)
    if affects.organization_ids:
        query |= Q(organization_id__in=affects.organization_ids) | Q(team__organization_id__in=affects.organization_ids)
    if affects.user_pks:
        query |= Q(user_id__in=affects.user_pks)
    if affects.access_group_ids:
        group_ids = list(affects.access_group_ids)
        query |= Q(id__in=KeyAccessGroup.objects.filter(access_group_id__in=group_ids).values("key_id"))
        query |= Q(team_id__in=TeamAccessGroup.objects.filter(access_group_id__in=group_ids).values("team_id"))
        names = AccessGroup.objects.filter(access_group_id__in=group_ids).values_list("access_group_name", flat=True)
        query |= _named_group_query(names)
    if query:
        tokens.update(_with_aliases(VirtualKey.objects.filter(query)))
    if affects.tokens:
        tokens.update(_aliases_of(affects.tokens))
    return tokens


def _aliases_of(tokens: set[str]) -> set[str]:
    """The old tokens (grace periods) of these keys, from the few keys in a grace period: one query
    whatever the number of tokens."""
    in_grace = VirtualKey.objects.filter(previous_token__isnull=False).values_list("token", "previous_token")
    return {previous for token, previous in in_grace if token in tokens}


def _with_aliases(keys) -> set[str]:
    """The keys' tokens and, during a rotation's grace period, their old tokens: the same snapshot is
    cached under both, so both are dropped together."""
    found: set[str] = set()
    for token, previous in keys.values_list("token", "previous_token"):
        found.add(token)
        if previous:
            found.add(previous)
    return found


def tokens_naming_groups(names: Iterable[str]) -> set[str]:
    """Tokens of keys whose path names one of these groups; for writes that rename or delete a group,
    resolved *before* the write (afterwards the old name is gone)."""
    query = _named_group_query(names)
    if not query:
        return set()
    return _with_aliases(VirtualKey.objects.filter(query))


def invalidate_tokens(tokens: Iterable[str]) -> None:
    """Drop these tokens' snapshots (and their generations) on every server sharing the cache."""
    names = list(tokens)
    if not names:
        return
    metrics.invalidated("token", len(names))
    if len(names) > feed.MAX_NAMES_PER_MESSAGE:
        # A bulk batch (10,000+ tokens): deleting the generations is enough, as in `invalidate_all` (a
        # value is served only under its generation, which is random and never comes back); the values
        # expire with their TTL. Half the keys to encode and send, on the writer's own CPU.
        cache_keys = [_GENERATION + token for token in names]
    else:
        cache_keys = []
        for token in names:
            cache_keys.append(cache_key(token))
            cache_keys.append(generation_key(token))
    try:
        _delete(names, cache_keys)
    except Exception:  # noqa: BLE001
        logger.error(
            "authorization cache unreachable; %d snapshots are invalidated through the log only", len(names)
        )


def invalidate(affects: Affects) -> None:
    """Drop the snapshots a committed write may have changed, on every server sharing the cache.

    Runs after commit, so it must not raise: if the database cannot say which keys the write reached,
    every snapshot is dropped instead (the write has landed; its answer must not become a 500).
    """
    if affects.everything:
        invalidate_all()
        return
    if affects.catalog:
        invalidate_catalog()
    try:
        tokens = affected_tokens(affects)
    except DatabaseError:
        logger.error("could not resolve the snapshots a committed write changed; dropping every snapshot")
        invalidate_all()
        return
    invalidate_tokens(tokens)


def invalidate_all() -> None:
    """Drop every snapshot and the catalog on every server: deleting the generations is enough (a value
    is only served under its generation), then every process is told to drop its copies."""
    metrics.invalidated("all")
    try:
        _delete(None, [generation_key("*")])
    except Exception:  # noqa: BLE001
        logger.error("authorization cache unreachable; the snapshots are invalidated through the log only")
