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

from . import feed
from .authz import KeySnapshot, build_snapshot
from .models import VirtualKey
from .selectors import key_rows, key_with_path

if TYPE_CHECKING:
    from orgs.audit import Affects

logger = logging.getLogger(__name__)

SNAPSHOT_TTL_SECONDS = 300  # bounds staleness if an invalidation is ever lost (cache outage during a write)
GENERATION_TTL_SECONDS = 2 * SNAPSHOT_TTL_SECONDS  # outlives the values it tags; expiry only causes a miss
CATALOG_TTL_SECONDS = 300
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
    """Build the snapshot from the database (the cold path: two queries). None for an unknown token."""
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


# name → (generation, value, when it was last proven current) as this process last read it. Served
# after a shared read finds the generation unchanged, or, while the invalidation feed is live, as it is
# for up to LOCAL_TRUST_SECONDS: an invalidation written by a process that does not publish (a release
# from before the feed, during a rolling deploy) is seen within that time.
_local: dict[str, tuple[Any, Any, float]] = {}
_local_lock = threading.Lock()
# Bumped by every drop. A copy read from the cache or the database across a drop may predate it (another
# thread applied the invalidation before this one stored its copy), so it is not kept.
_epoch = 0
LOCAL_MAX_ENTRIES = 20_000
LOCAL_TRUST_SECONDS = 5.0
_now = time.monotonic


def _remember(name: str, generation: Any, value: Any, epoch: int) -> None:
    with _local_lock:
        if epoch != _epoch:
            return
        if name not in _local and len(_local) >= LOCAL_MAX_ENTRIES:
            del _local[next(iter(_local))]  # the oldest entry; the rest stay warm
        _local[name] = (generation, value, _now())


def _forget(names: Iterable[str]) -> None:
    global _epoch
    with _local_lock:
        _epoch += 1
        for name in names:
            _local.pop(name, None)


def _forget_all() -> None:
    global _epoch
    with _local_lock:
        _epoch += 1
        _local.clear()


# Applies every invalidation published so far to `_local`; `current()` says whether copies may be trusted.
_feed = feed.ProcessFeed(on_names=_forget, on_reset=_forget_all)


def feed_state() -> str:
    """This process's invalidation feed: "off", "live" or "degraded" (see keys.feed)."""
    return _feed.state()


def _read_through(value_key: str, name: str, loader: Callable[[], T | None], ttl: int) -> T | None:
    """The cached value if its generation is current, else `loader()` (stored when it is not None)."""
    if _feed.current():
        local = _local.get(name)
        if local is not None and _now() - local[2] <= LOCAL_TRUST_SECONDS:
            return local[1]
    epoch = _epoch  # after the feed applied what has arrived: a later drop forbids keeping what is read
    gen_key = generation_key(name)
    try:
        generation = cache.get(gen_key)
        if generation is not None:
            local = _local.get(name)
            if local is not None and local[0] == generation:
                _remember(name, generation, local[1], epoch)
                return local[1]
            entry = cache.get(value_key)
            if entry is not None and entry[0] == generation:
                _remember(name, generation, entry[1], epoch)
                return entry[1]
    except Exception:  # noqa: BLE001 - any cache failure falls back to the database
        logger.warning("authorization cache unreachable; answering from the database")
        return loader()
    claimed = _claim_generation(name, generation)
    value = loader()
    try:
        if value is None:
            # Nothing to store: drop the claim so unknown tokens leave nothing behind.
            if claimed is not None and generation is None:
                cache.delete(gen_key)
        elif claimed is not None:
            cache.set(value_key, (claimed, value), ttl)
            _remember(name, claimed, value, epoch)
    except Exception:  # noqa: BLE001
        logger.warning("authorization cache unreachable; value not stored")
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

    snapshot = _read_through(cache_key(token), token, load, SNAPSHOT_TTL_SECONDS)
    metrics.snapshot_lookup(loaded)
    return snapshot


def load_catalog() -> dict[str, str]:
    """Active catalog models as `{model_name: provider}` (what "everything" and patterns expand to)."""
    from accessgroups.models import CatalogModel

    return dict(CatalogModel.objects.filter(active=True).order_by("model_name").values_list("model_name", "provider"))


def get_catalog() -> Mapping[str, str]:
    """The active catalog, cached like the snapshots and invalidated by the catalog services."""
    return _read_through(_CATALOG, _CATALOG, load_catalog, CATALOG_TTL_SECONDS) or {}


def _delete(names: list[str], cache_keys: list[str]) -> None:
    """Drop this process's copies and the shared entries, then announce it to every process (on Redis in
    the same transaction): a process that hears of it already misses the shared entries."""
    _forget(names)
    feed.delete_and_announce(cache_keys, names)


def invalidate_catalog() -> None:
    """Drop the cached catalog on every server sharing the cache (after a catalog write commits)."""
    metrics.invalidated("catalog")
    try:
        _delete([_CATALOG], [_CATALOG, generation_key(_CATALOG)])
    except Exception:  # noqa: BLE001
        logger.error("authorization cache unreachable; the catalog could not be invalidated")


def _named_group_query(names: Iterable[str]) -> Q:
    """Keys whose path (key, team, organization or owner) names one of these groups in its `models`."""
    query = Q()
    for name in names:
        query |= (
            Q(models__icontains=name)
            | Q(team__models__icontains=name)
            | Q(team__organization__models__icontains=name)
            | Q(organization__models__icontains=name)
            | Q(user__models__icontains=name)
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
        from accessgroups.models import AccessGroup, KeyAccessGroup, TeamAccessGroup

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
    cache_keys: list[str] = []
    for token in names:
        cache_keys.append(cache_key(token))
        cache_keys.append(generation_key(token))
    try:
        _delete(names, cache_keys)
    except Exception:  # noqa: BLE001
        logger.error("authorization cache unreachable; %d snapshots could not be invalidated", len(names))


def invalidate(affects: Affects) -> None:
    """Drop the snapshots a committed write may have changed, on every server sharing the cache.

    Runs after commit, so it must not raise: if the database cannot say which keys the write reached,
    every snapshot is dropped instead (the write has landed; its answer must not become a 500).
    """
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
    _forget_all()
    try:
        feed.delete_all_and_announce(generation_key("*"))
    except Exception:  # noqa: BLE001
        logger.error("authorization cache unreachable; the snapshots could not be invalidated")
