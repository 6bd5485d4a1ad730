"""The sync of the denormalized ids: a key's and a team's `access_group_ids` and a group's counts follow
the relation (`check_access_sync [--repair]` runs `sync_all`)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef
from django.db.models.functions import Greatest

from accessctl.errors import NotFound
from keys.models import VirtualKey
from orgs.audit import Affects, record
from orgs.models import Team

from ..models import AccessGroup, KeyAccessGroup, TeamAccessGroup
from ..selectors import COUNT_FIELDS

BATCH_SIZE = 1000


def _ids(values: Iterable[Any]) -> list[str]:
    return sorted({str(v) for v in values})


def _sync_target_lists(model: Any, assignment: Any, fk: str, ids: Iterable[Any], *, missing_ok: bool = True) -> int:
    """Recompute `access_group_ids` of these rows of `model` from the `assignment` rows, under a row
    lock taken in a stable order. Returns the number of rows changed.

    Without `missing_ok`, a row that no longer exists is an error (404): an assignment was just added for
    it, and the relation has no foreign key in the database to refuse it (`KeyAccessGroup`), so the
    writer's transaction must not commit a row pointing at nothing. Its deleter held the lock first.
    """
    ids = sorted({str(i) for i in ids})
    if not ids:
        return 0
    pk = model._meta.pk.name
    truth: dict[str, list[str]] = defaultdict(list)
    rows = list(
        model.objects.select_for_update().filter(pk__in=ids).order_by(pk).only(pk, "access_group_ids")
    )
    if not missing_ok and len(rows) != len(ids):
        raise NotFound(f"The {model._meta.verbose_name} was deleted while it was being assigned.", param="key")
    for row_id, group_id in assignment.objects.filter(**{f"{fk}__in": ids}).values_list(fk, "access_group_id"):
        truth[str(row_id)].append(str(group_id))
    changed = [r for r in rows if (r.access_group_ids or []) != _ids(truth[str(r.pk)])]
    for row in changed:
        row.access_group_ids = _ids(truth[str(row.pk)])
    model.objects.bulk_update(changed, ["access_group_ids"], batch_size=BATCH_SIZE)
    return len(changed)


def sync_teams(team_ids: Iterable[Any]) -> int:
    """Recompute `access_group_ids` of these teams from the assignment rows. Returns rows changed."""
    return _sync_target_lists(Team, TeamAccessGroup, "team_id", team_ids)


def sync_keys(key_ids: Iterable[Any], *, missing_ok: bool = True) -> int:
    """Recompute `access_group_ids` of these keys (by primary key) from the assignment rows."""
    return _sync_target_lists(VirtualKey, KeyAccessGroup, "key_id", key_ids, missing_ok=missing_ok)


def count_assignments(relation: type[TeamAccessGroup] | type[KeyAccessGroup], deltas: dict[Any, int]) -> None:
    """Add to each group's team or key count what the relation just gained (or lost, negative).

    Called by whoever wrote the assignment rows, inside its transaction: the UPDATE takes the group's row
    lock (groups in id order, as `sync_groups` and the bulk path lock them), so concurrent writers queue.
    A group gone by then (deleted by a transaction that locked it first) fails the writer with a 404: key
    assignments have no foreign key in the database, and rows added to a deleted group must not commit.
    """
    column = COUNT_FIELDS[relation]
    for group_id in sorted(deltas, key=str):
        if deltas[group_id]:
            # Never below zero: a count that had drifted is reported by check_access_sync, not a crash.
            found = AccessGroup.objects.filter(pk=group_id).update(
                **{column: Greatest(F(column) + deltas[group_id], 0)}
            )
            if not found and deltas[group_id] > 0:
                raise NotFound("The access group was deleted while it was being assigned.", param="access_group")


def _relation_counts(relation: Any, group_ids: Sequence[Any] | None = None) -> dict[str, int]:
    rows = relation.objects.all() if group_ids is None else relation.objects.filter(access_group_id__in=group_ids)
    counted = rows.values("access_group_id").annotate(n=Count("*")).order_by().values_list("access_group_id", "n")
    return {str(group_id): n for group_id, n in counted}


def sync_groups(group_ids: Iterable[Any]) -> int:
    """Recount `assigned_team_count` and `assigned_key_count` of these groups from the relation."""
    group_ids = sorted({str(g) for g in group_ids})
    if not group_ids:
        return 0
    # Locked first, in a stable order, so writers of the same group queue instead of deadlocking; counted
    # after the lock, so a writer that committed meanwhile is counted and one still waiting adds its own.
    groups = list(
        AccessGroup.objects.select_for_update()
        .filter(access_group_id__in=group_ids)
        .order_by("access_group_id")
        .only("access_group_id", "assigned_team_count", "assigned_key_count")
    )
    teams = _relation_counts(TeamAccessGroup, group_ids)
    keys = _relation_counts(KeyAccessGroup, group_ids)
    changed = []
    for group in groups:
        gid = str(group.access_group_id)
        want = (teams.get(gid, 0), keys.get(gid, 0))
        if (group.assigned_team_count, group.assigned_key_count) != want:
            group.assigned_team_count, group.assigned_key_count = want
            changed.append(group)
    AccessGroup.objects.bulk_update(changed, ["assigned_team_count", "assigned_key_count"], batch_size=BATCH_SIZE)
    return len(changed)


def sync_after_group_removed(group_id: Any) -> None:
    """A deleted group leaves no trace: also fix teams and keys whose lists had drifted to name it."""
    needle = str(group_id)
    team_ids = Team.objects.filter(access_group_ids__icontains=needle).values_list("team_id", flat=True)
    key_ids = VirtualKey.objects.filter(access_group_ids__icontains=needle).values_list("id", flat=True)
    sync_teams(list(team_ids))
    sync_keys(list(key_ids))


def sync_all(*, repair: bool) -> dict[str, list[str]]:
    """Compare every list (keys, teams) and count (groups) with the relation; with `repair`, rewrite
    those that differ.

    Returns the drift found: {"teams": [...], "keys": [...], "groups": [...]} (ids).
    """
    drift: dict[str, list[str]] = {"teams": [], "keys": [], "groups": []}
    team_truth: dict[str, list[str]] = defaultdict(list)
    for team_id, group_id in TeamAccessGroup.objects.values_list("team_id", "access_group_id").iterator():
        team_truth[str(team_id)].append(str(group_id))
    for team_id, listed in Team.objects.values_list("team_id", "access_group_ids").iterator():
        if (listed or []) != _ids(team_truth[str(team_id)]):
            drift["teams"].append(str(team_id))
    key_truth: dict[str, list[str]] = defaultdict(list)
    for key_id, group_id in KeyAccessGroup.objects.values_list("key_id", "access_group_id").iterator():
        key_truth[str(key_id)].append(str(group_id))
    seen_keys: set[str] = set()
    for key_id, listed in VirtualKey.objects.values_list("id", "access_group_ids").iterator():
        seen_keys.add(str(key_id))
        if (listed or []) != _ids(key_truth[str(key_id)]):
            drift["keys"].append(str(key_id))
    # Key assignments have no foreign keys in the database: a row of a key that is gone is its group's drift.
    orphaned = {gid for key_id, groups in key_truth.items() if key_id not in seen_keys for gid in groups}
    # The groups' side: counts, compared with the relation counted by the database.
    team_counts, key_counts = _relation_counts(TeamAccessGroup), _relation_counts(KeyAccessGroup)
    existing: set[str] = set()
    for group_id, teams, keys in AccessGroup.objects.values_list(
        "access_group_id", "assigned_team_count", "assigned_key_count"
    ).iterator():
        gid = str(group_id)
        existing.add(gid)
        if teams != team_counts.get(gid, 0) or keys != key_counts.get(gid, 0) or gid in orphaned:
            drift["groups"].append(gid)
    # Rows of a group that is gone: listed under that group's id (the repair deletes them).
    drift["groups"] += sorted(set(key_counts) - existing)
    if repair and any(drift.values()):
        with transaction.atomic():
            relisted: set[str] = set()
            for chunk in _chunks(drift["groups"]):
                relisted |= delete_orphan_key_assignments(chunk)
                sync_groups(chunk)
            for chunk in _chunks(drift["teams"]):
                sync_teams(chunk)
            for chunk in _chunks(sorted(set(drift["keys"]) | relisted)):
                sync_keys(chunk)
            record(
                actor=None,
                action="access_sync_repair",
                object_type="access_sync",
                object_id="all",
                after={k: len(v) for k, v in drift.items()},
                affects=Affects(team_ids=set(drift["teams"]), key_ids=set(drift["keys"]),
                                access_group_ids=set(drift["groups"])),
            )
    return drift


def delete_orphan_key_assignments(group_ids: Sequence[str]) -> set[str]:
    """Delete these groups' key assignments that point at a key or a group that no longer exists (nothing
    in the database refuses them: `KeyAccessGroup`). Returns the keys whose lists must be synced again."""
    rows = KeyAccessGroup.objects.filter(access_group_id__in=group_ids)
    rows.filter(~Exists(VirtualKey.objects.filter(pk=OuterRef("key_id"))))._raw_delete(KeyAccessGroup.objects.db)
    groupless = rows.filter(~Exists(AccessGroup.objects.filter(pk=OuterRef("access_group_id"))))
    keys = {str(k) for k in groupless.values_list("key_id", flat=True)}
    groupless._raw_delete(KeyAccessGroup.objects.db)
    return keys


def _chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
