"""The per-key decision snapshot cache, and its invalidation after writes (SPEC §6)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.db.models import Q

from .authz import KeySnapshot, build_snapshot
from .models import VirtualKey
from .selectors import key_rows, key_with_path

if TYPE_CHECKING:
    from orgs.audit import Affects

logger = logging.getLogger(__name__)

SNAPSHOT_TTL_SECONDS = 300  # a bound on staleness if an invalidation is ever lost (cache outage)
_PREFIX = "authz:key:"


def cache_key(token: str) -> str:
    return _PREFIX + token


def load_snapshot(token: str) -> KeySnapshot | None:
    """Build the snapshot from the database (the cold path)."""
    key = key_with_path(token)
    if key is None:
        return None
    return build_snapshot(key_rows(key))


def get_snapshot(token: str) -> KeySnapshot | None:
    """The key's snapshot from the cache, else from the database (then cached). None for an unknown key.

    With the cache unreachable, the database answers: never more permissive than it.
    """
    try:
        snapshot = cache.get(cache_key(token))
    except Exception:  # noqa: BLE001 - any cache failure falls back to the database
        logger.warning("authorization cache unreachable; answering from the database")
        return load_snapshot(token)
    if snapshot is not None:
        return snapshot
    snapshot = load_snapshot(token)
    if snapshot is not None:
        try:
            cache.set(cache_key(token), snapshot, SNAPSHOT_TTL_SECONDS)
        except Exception:  # noqa: BLE001
            logger.warning("authorization cache unreachable; snapshot not stored")
    return snapshot


def affected_tokens(affects: Affects) -> set[str]:
    """Resolve what a write touched to the tokens whose snapshots may have changed."""
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
        # Keys and teams may name a group in their `models` list.
        for name in AccessGroup.objects.filter(access_group_id__in=group_ids).values_list(
            "access_group_name", flat=True
        ):
            query |= Q(models__icontains=name) | Q(team__models__icontains=name)
    if query:
        tokens.update(VirtualKey.objects.filter(query).values_list("token", flat=True))
    return tokens


def invalidate(affects: Affects) -> None:
    """Drop the snapshots a committed write may have changed, on every server sharing the cache."""
    tokens = affected_tokens(affects)
    if not tokens:
        return
    names = [cache_key(t) for t in tokens]
    try:
        for start in range(0, len(names), 1000):
            cache.delete_many(names[start : start + 1000])
    except Exception:  # noqa: BLE001
        logger.error("authorization cache unreachable; %d snapshots could not be invalidated", len(names))
