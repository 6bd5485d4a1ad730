"""Every write to access groups, their assignments and the catalog; and the sync of the denormalized ids.

The assignment rows (`TeamAccessGroup`, `KeyAccessGroup`) are the truth (SPEC §4). The lists
`Team.access_group_ids` and `VirtualKey.access_group_ids` are recomputed from that truth under a row
lock, inside the writing transaction, by the `sync_*` functions below — never appended to — so
concurrent writers cannot lose an assignment and drifted lists heal on the next write.

A group keeps counts, not lists (issue 17: a group may hold a million keys): whoever adds or removes
assignment rows adds the difference to `assigned_team_count` / `assigned_key_count` in the same
transaction (`count_assignments`); `sync_groups` recounts from the relation, for repairs and raw deletes.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.functions import Greatest, Lower

from accessctl import policy
from accessctl.common import field_values, model_update
from accessctl.errors import Conflict, InvalidInput, NotFound
from keys.authz import NO_DEFAULT_MODELS
from keys.models import VirtualKey
from orgs.audit import Affects, record
from orgs.models import Organization, Team, User

from . import bulk_sql
from .models import AccessGroup, Agent, CatalogModel, KeyAccessGroup, MCPServer, TeamAccessGroup
from .selectors import ASSIGNED_IDS_LIMIT, COUNT_FIELDS

GROUP_FIELDS = ("access_group_name", "description", "access_model_names", "access_mcp_server_ids", "access_agent_ids")
BATCH_SIZE = 1000


# --- sync of the denormalized ids -------------------------------------------------------------

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


# --- access groups ----------------------------------------------------------------------------

def _clean_list(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidInput(f"{param} must be a list of non-empty strings.", param=param)
    seen: dict[str, None] = {}
    for v in value:
        seen.setdefault(v.strip(), None)
    return list(seen)


def _name_taken(name: str, organization_id: Any, exclude: Any = None) -> bool:
    qs = AccessGroup.objects.annotate(lname=Lower("access_group_name")).filter(lname=name.lower())
    qs = qs.filter(organization_id=organization_id) if organization_id else qs.filter(organization__isnull=True)
    if exclude is not None:
        qs = qs.exclude(pk=exclude)
    return qs.exists()


def _validate_group_data(data: dict[str, Any]) -> dict[str, Any]:
    clean = dict(data)
    if "access_group_name" in clean:
        name = clean["access_group_name"]
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("access_group_name is required.", param="access_group_name")
        if len(name) > 255:
            raise InvalidInput("access_group_name is longer than 255 characters.", param="access_group_name")
        clean["access_group_name"] = name.strip()
    for list_field in ("access_model_names", "access_mcp_server_ids", "access_agent_ids"):
        if list_field in clean:
            clean[list_field] = _clean_list(clean[list_field], list_field)
    if "description" in clean and clean["description"] is None:
        clean["description"] = ""
    return clean


def _group_affects(group: AccessGroup) -> Affects:
    return Affects(access_group_ids={str(group.access_group_id)})


@transaction.atomic
def access_group_create(
    *,
    actor: User | None,
    access_group_name: str,
    organization: Organization | None = None,
    description: str = "",
    access_model_names: list[str] | None = None,
    access_mcp_server_ids: list[str] | None = None,
    access_agent_ids: list[str] | None = None,
    assigned_team_ids: list[Any] | None = None,
    assigned_key_ids: list[str] | None = None,
    access_group_id: Any = None,
    by: policy.Actor | None = None,
) -> AccessGroup:
    """Create a group (names unique per owner, ignoring case → 409) and its initial assignments. With
    `by`: a global group is a proxy admin's, an organization's its org admins' (`access_group:create`),
    and an organization's group never reaches beyond the organization's models."""
    if by is not None:
        org_id = str(organization.pk) if organization is not None else None
        policy.require(by, "access_group:create", policy.Target(organization_id=org_id, is_global=org_id is None))
        _within_organization(by, organization, access_model_names)
    data = _validate_group_data(
        {
            "access_group_name": access_group_name,
            "description": description,
            "access_model_names": access_model_names,
            "access_mcp_server_ids": access_mcp_server_ids,
            "access_agent_ids": access_agent_ids,
        }
    )
    org_id = organization.pk if organization is not None else None
    if _name_taken(data["access_group_name"], org_id):
        raise Conflict(f"Access group '{data['access_group_name']}' already exists", param="access_group_name")
    teams = _teams_by_ids(assigned_team_ids or [], organization)
    keys = _keys_by_tokens(assigned_key_ids or [], organization)
    kwargs = {}
    if access_group_id is not None:
        from accessctl.ids import valid_id
        from orgs.models import AuditEntry

        access_group_id = valid_id(access_group_id, "access_group_id")
        # Unique and never reused (SPEC §1): a deleted group's id stays in the audit log.
        taken = AccessGroup.objects.filter(pk=access_group_id).exists() or AuditEntry.objects.filter(
            object_type="access_group", object_id=access_group_id
        ).exists()
        if taken:
            raise Conflict(f"Access group id '{access_group_id}' already exists", param="access_group_id")
        kwargs["access_group_id"] = access_group_id
    try:
        with transaction.atomic():
            group = AccessGroup.objects.create(
                organization=organization, created_by=_label(actor), updated_by=_label(actor), **kwargs, **data
            )
    except IntegrityError as exc:
        raise Conflict(f"Access group '{data['access_group_name']}' already exists", param="access_group_name") from exc
    _assign(group, teams=teams, keys=keys)
    group.refresh_from_db()
    after = field_values(group, (*GROUP_FIELDS, *COUNT_FIELDS.values()))
    if teams:
        after["assigned_team_ids"] = _ids(t.team_id for t in teams)
    if keys:
        after["assigned_key_ids"] = _ids(k.token for k in keys)
    record(
        actor=actor,
        action="access_group_create",
        object_type="access_group",
        object_id=group.pk,
        organization_id=org_id,
        after=after,
        affects=_group_affects(group),
    )
    return group


def _label(actor: User | None) -> str:
    return actor.user_id if actor is not None else "system"


def _teams_by_ids(team_ids: Iterable[Any], organization: Organization | None) -> list[Team]:
    """Teams named by id; unknown ids (or, for an org-owned group, teams of another org) → 400."""
    wanted = {str(t) for t in team_ids}
    if not wanted:
        return []
    valid, invalid = _split_ids(wanted)
    qs = Team.objects.filter(team_id__in=valid)
    if organization is not None:
        qs = qs.filter(organization=organization)
    found = {str(t.team_id): t for t in qs}
    missing = sorted(invalid | (wanted - invalid - set(found)))
    if missing:
        raise InvalidInput(f"Unknown team ids: {', '.join(missing)}", param="assigned_team_ids")
    return list(found.values())


def _keys_by_tokens(tokens: Iterable[str], organization: Organization | None) -> list[VirtualKey]:
    from keys.crypto import token_for

    wanted = {token_for(t) for t in tokens if isinstance(t, str)}
    if not wanted:
        return []
    qs = VirtualKey.objects.filter(token__in=wanted)
    if organization is not None:
        qs = qs.filter(organization=organization)
    found = {k.token: k for k in qs}
    missing = len(wanted - set(found))
    if missing:
        raise InvalidInput(f"Unknown key ids: {missing} not found", param="assigned_key_ids")
    return list(found.values())


def _split_ids(values: set[str]) -> tuple[set[str], set[str]]:
    """(ids that may exist, values that cannot be ids) — SPEC §1's string ids."""
    from accessctl.ids import is_valid_id

    valid = {v for v in values if is_valid_id(v)}
    return valid, values - valid


def _assign(group: AccessGroup, *, teams: Iterable[Team] = (), keys: Iterable[VirtualKey] = ()) -> tuple[int, int]:
    """Add assignment rows (idempotent); the signals keep the lists in step. Returns rows added."""
    added_teams = added_keys = 0
    for team in teams:
        _, created = TeamAccessGroup.objects.get_or_create(team=team, access_group=group)
        added_teams += created
    for key in keys:
        _, created = KeyAccessGroup.objects.get_or_create(key=key, access_group=group)
        added_keys += created
    return added_teams, added_keys


def _unassign(group: AccessGroup, *, teams: Iterable[Team] = (), keys: Iterable[VirtualKey] = ()) -> tuple[int, int]:
    removed_teams = removed_keys = 0
    for row in TeamAccessGroup.objects.filter(access_group=group, team__in=list(teams)):
        row.delete()
        removed_teams += 1
    for row in KeyAccessGroup.objects.filter(access_group=group, key__in=list(keys)):
        row.delete()
        removed_keys += 1
    return removed_teams, removed_keys


def _within_organization(by: policy.Actor, organization: Organization | None, models: Any) -> None:
    """An org admin's group never reaches beyond the organization's models, whichever route writes it."""
    if organization is not None and models:
        ceiling = {"organization": list(organization.models or [])}
        policy.raise_refusal(policy.can_grant_models(by, _clean_list(models, "access_model_names"), ceiling),
                             param="access_model_names")


@transaction.atomic
def access_group_update(
    *, actor: User | None, group: AccessGroup, data: dict[str, Any], by: policy.Actor | None = None
) -> AccessGroup:
    """Partial update: the fields present in `data` are set; `assigned_team_ids` / `assigned_key_ids`
    replace the assignments from the group's side. With `by`, the change is authorized before any write:
    `access_group:update`, `access_group:assign` for the assignments (`policy.FIELD_ACTIONS`), and the
    group's models stay inside its organization's."""
    group = AccessGroup.objects.select_for_update().get(pk=group.pk)
    if by is not None:
        target = policy.access_group_target(group)
        policy.require(by, "access_group:update", target)
        for action in policy.actions_for("access_group", data):
            policy.require(by, action, target)
        _within_organization(by, group.organization, data.get("access_model_names"))
    clean = _validate_group_data({k: v for k, v in data.items() if k in GROUP_FIELDS})
    if "access_group_name" in clean and _name_taken(
        clean["access_group_name"], group.organization_id, exclude=group.pk
    ):
        raise Conflict(f"Access group '{clean['access_group_name']}' already exists", param="access_group_name")
    renamed_tokens: set[str] = set()
    if clean.get("access_group_name", group.access_group_name) != group.access_group_name:
        from keys.cache import tokens_naming_groups

        # Keys naming the old name lose it; after the commit only the new name can be looked up.
        renamed_tokens = tokens_naming_groups([group.access_group_name])
    for name, count in (("assigned_team_ids", group.assigned_team_count), ("assigned_key_ids", group.assigned_key_count)):
        # A list replaces assignments only where it could have been read whole: the shapes list at most
        # ASSIGNED_IDS_LIMIT ids, and a client echoing back a group it saw without its list must not empty it.
        if name in data and count > ASSIGNED_IDS_LIMIT:
            raise InvalidInput(
                f"This group has {count} {name.split('_')[1]}s, more than {ASSIGNED_IDS_LIMIT}: its {name} cannot "
                f"be replaced as a list. Use POST /api/v1/access-groups/{group.pk}/bulk-assign/ instead.",
                param=name,
            )
    before, after = model_update(group, {**clean, "updated_by": _label(actor)}, GROUP_FIELDS)
    affected_keys: set[str] = set()
    affected_teams: set[str] = set()
    if "assigned_team_ids" in data:
        wanted = _teams_by_ids(data["assigned_team_ids"] or [], group.organization)
        current = {str(t) for t in TeamAccessGroup.objects.filter(access_group=group).values_list("team_id", flat=True)}
        wanted_ids = {str(t.team_id) for t in wanted}
        _assign(group, teams=[t for t in wanted if str(t.team_id) not in current])
        _unassign(group, teams=Team.objects.filter(team_id__in=current - wanted_ids))
        affected_teams |= current ^ wanted_ids
        if current != wanted_ids:
            before["assigned_team_ids"], after["assigned_team_ids"] = _ids(current), _ids(wanted_ids)
    if "assigned_key_ids" in data:
        wanted_keys = _keys_by_tokens(data["assigned_key_ids"] or [], group.organization)
        current_keys = dict(KeyAccessGroup.objects.filter(access_group=group).values_list("key_id", "key__token"))
        current_ids = {str(k) for k in current_keys}
        wanted_ids = {str(k.id) for k in wanted_keys}
        _assign(group, keys=[k for k in wanted_keys if str(k.id) not in current_ids])
        _unassign(group, keys=VirtualKey.objects.filter(id__in=current_ids - wanted_ids))
        affected_keys |= current_ids ^ wanted_ids
        if current_ids != wanted_ids:
            before["assigned_key_ids"] = _ids(current_keys.values())
            after["assigned_key_ids"] = _ids(k.token for k in wanted_keys)
    group.refresh_from_db()
    if after:
        record(
            actor=actor,
            action="access_group_update",
            object_type="access_group",
            object_id=group.pk,
            organization_id=group.organization_id,
            before=before,
            after=after,
            affects=Affects(
                tokens=renamed_tokens, access_group_ids={str(group.pk)}, key_ids=affected_keys, team_ids=affected_teams
            ),
        )
    return group


def _keep_restricted(group: AccessGroup) -> None:
    """A key or team whose only restriction is this group (no `models`, no other group) would fall back to
    its team's or organization's models once the group is gone: a restriction is never bypassed (SPEC §5
    rule 2), so it keeps reaching nothing ("no-default-models") until an admin gives it models or groups.
    (`bulk_sql.detach_group` does the same in the same write as the lists, where it can.)"""
    for model, assignment, fk in ((VirtualKey, KeyAccessGroup, "key"), (Team, TeamAccessGroup, "team")):
        this = assignment.objects.filter(**{fk: OuterRef("pk")}, access_group=group)
        others = assignment.objects.filter(**{fk: OuterRef("pk")}).exclude(access_group=group)
        model.objects.filter(Exists(this), ~Exists(others), models=[]).update(models=[NO_DEFAULT_MODELS])


# Above this many keys, a group's deletion drops every cached snapshot rather than naming its keys (to
# name a million keys after commit would cost more than the cache refilling).
DELETE_NAMED_KEYS_LIMIT = 10_000


@transaction.atomic
def access_group_delete(*, actor: User | None, group: AccessGroup, by: policy.Actor | None = None) -> None:
    """Delete a group and detach it from every team and key (drifted lists included); a key or team it
    alone restricted keeps reaching nothing. With `by`: `access_group:delete` first.

    Set-based: a bounded number of statements whatever the number of keys the group holds. The group is
    locked first — bulk batches and per-row assignments lock it too — so an assignment running now either
    committed before (its rows are deleted here) or fails once the group is gone.
    """
    from keys.cache import tokens_naming_groups

    if by is not None:
        policy.require(by, "access_group:delete", policy.access_group_target(group))
    group = AccessGroup.objects.select_for_update().get(pk=group.pk)
    group_id, org_id = str(group.pk), group.organization_id
    before = field_values(group, (*GROUP_FIELDS, *COUNT_FIELDS.values()))
    wide = group.assigned_key_count > DELETE_NAMED_KEYS_LIMIT
    # After the commit the group and its name are gone: resolve what names it now.
    tokens = tokens_naming_groups([group.access_group_name])
    key_ids: set[str] = set()
    if not wide:
        key_ids = {str(k) for k in group.key_assignments.values_list("key_id", flat=True)}
    team_ids = {str(t) for t in group.team_assignments.values_list("team_id", flat=True)}
    detached_keys = bulk_sql.detach_group(bulk_sql.KINDS[bulk_sql.KEYS], group_id,
                                          () if wide else ("token", "previous_token"), stranded=NO_DEFAULT_MODELS)
    detached_teams = bulk_sql.detach_group(bulk_sql.KINDS[bulk_sql.TEAMS], group_id, ("team_id",),
                                           stranded=NO_DEFAULT_MODELS)
    per_row = detached_keys is None or detached_teams is None  # a database without those statements
    if per_row:
        _keep_restricted(group)
    else:
        tokens |= {token for pair in detached_keys for token in pair if token}
        team_ids |= {str(team_id) for (team_id,) in detached_teams}
    # Raw deletes: no per-row signal (the lists are settled above; the group and its counts go).
    group.key_assignments.all()._raw_delete(KeyAccessGroup.objects.db)
    group.team_assignments.all()._raw_delete(TeamAccessGroup.objects.db)
    AccessGroup.objects.filter(pk=group_id)._raw_delete(AccessGroup.objects.db)
    if per_row:
        sync_after_group_removed(group_id)
    affects = Affects(tokens=tokens, access_group_ids={group_id}, team_ids=team_ids, key_ids=key_ids,
                      everything=wide)
    record(
        actor=actor,
        action="access_group_delete",
        object_type="access_group",
        object_id=group_id,
        organization_id=org_id,
        before=before,
        affects=affects,
    )


@transaction.atomic
def access_group_assign(
    *,
    actor: User | None,
    group: AccessGroup,
    teams: Iterable[Team] = (),
    keys: Iterable[VirtualKey] = (),
    by: policy.Actor | None = None,
) -> tuple[int, int]:
    """Assign the group to teams and keys (idempotent). Org-owned groups stay inside their organization.
    With `by`: `access_group:assign` on the group first."""
    if by is not None:
        policy.require(by, "access_group:assign", policy.access_group_target(group))
    teams, keys = list(teams), list(keys)
    _check_same_org(group, teams, keys)
    added = _assign(group, teams=teams, keys=keys)
    if any(added):
        record(
            actor=actor,
            action="access_group_assign",
            object_type="access_group",
            object_id=group.pk,
            organization_id=group.organization_id,
            after={"team_ids": _ids(t.team_id for t in teams), "key_ids": _ids(k.token for k in keys)},
            affects=Affects(team_ids={str(t.team_id) for t in teams}, key_ids={str(k.id) for k in keys}),
        )
    return added


@transaction.atomic
def access_group_unassign(
    *,
    actor: User | None,
    group: AccessGroup,
    teams: Iterable[Team] = (),
    keys: Iterable[VirtualKey] = (),
    by: policy.Actor | None = None,
) -> tuple[int, int]:
    """Remove the group from teams and keys (idempotent). With `by`: `access_group:assign` on the group first."""
    if by is not None:
        policy.require(by, "access_group:assign", policy.access_group_target(group))
    teams, keys = list(teams), list(keys)
    removed = _unassign(group, teams=teams, keys=keys)
    if any(removed):
        record(
            actor=actor,
            action="access_group_unassign",
            object_type="access_group",
            object_id=group.pk,
            organization_id=group.organization_id,
            before={"team_ids": _ids(t.team_id for t in teams), "key_ids": _ids(k.token for k in keys)},
            affects=Affects(team_ids={str(t.team_id) for t in teams}, key_ids={str(k.id) for k in keys}),
        )
    return removed


def _check_same_org(group: AccessGroup, teams: Iterable[Team], keys: Iterable[VirtualKey]) -> None:
    if group.organization_id is None:
        return
    for team in teams:
        if team.organization_id != group.organization_id:
            raise InvalidInput("An organization's access group may only be assigned inside it.", param="team_id")
    for key in keys:
        if key.organization_id != group.organization_id:
            raise InvalidInput("An organization's access group may only be assigned inside it.", param="key")


def set_assigned_groups(
    *, target: Team | VirtualKey, group_ids: Iterable[Any], organization: Organization | None
) -> tuple[set[str], set[str]]:
    """Make the target's access groups exactly `group_ids` (assigning from the team's or key's side).

    Groups must exist and be global or owned by the target's organization (400 otherwise).
    Returns (added, removed) group ids.
    """
    wanted = {str(g) for g in group_ids}
    valid, invalid = _split_ids(wanted)
    visible = Q(organization__isnull=True)
    if organization is not None:
        visible |= Q(organization=organization)
    found = {str(g.access_group_id): g for g in AccessGroup.objects.filter(Q(access_group_id__in=valid) & visible)}
    missing = sorted(invalid | (valid - set(found)))
    if missing:
        raise InvalidInput(f"Unknown access group ids: {', '.join(missing)}", param="access_group_ids")
    if isinstance(target, Team):
        rows = TeamAccessGroup.objects.filter(team=target)
        current = {str(g) for g in rows.values_list("access_group_id", flat=True)}
        for gid in sorted(wanted - current):
            TeamAccessGroup.objects.get_or_create(team=target, access_group=found[gid])
        for row in rows.filter(access_group_id__in=current - wanted):
            row.delete()
    else:
        rows = KeyAccessGroup.objects.filter(key=target)
        current = {str(g) for g in rows.values_list("access_group_id", flat=True)}
        for gid in sorted(wanted - current):
            KeyAccessGroup.objects.get_or_create(key=target, access_group=found[gid])
        for row in rows.filter(access_group_id__in=current - wanted):
            row.delete()
    target.refresh_from_db(fields=["access_group_ids"])
    return wanted - current, current - wanted


def access_group_get(access_group_id: Any) -> AccessGroup:
    valid, _ = _split_ids({str(access_group_id)})
    group = AccessGroup.objects.filter(access_group_id__in=valid).first()
    if group is None:
        raise NotFound(f"Access group '{access_group_id}' not found", param="access_group_id")
    return group


# --- catalog ----------------------------------------------------------------------------------

CATALOG_MODELS = {
    "model": (CatalogModel, "model_name", ("model_name", "provider", "description", "active")),
    "mcp_server": (MCPServer, "server_id", ("server_id", "name", "description", "active")),
    "agent": (Agent, "agent_id", ("agent_id", "name", "description", "active")),
}


@transaction.atomic
def catalog_upsert(*, actor: User | None, kind: str, data: dict[str, Any]) -> Any:
    """Create or update a catalog entry (model, MCP server or agent) by its natural id."""
    model, natural, fields = CATALOG_MODELS[kind]
    ident = data.get(natural)
    if not isinstance(ident, str) or not ident.strip():
        raise InvalidInput(f"{natural} is required.", param=natural)
    row = model.objects.select_for_update().filter(**{natural: ident}).first()
    if row is None:
        row = model.objects.create(**{f: data[f] for f in fields if f in data})
        before, after = {}, field_values(row, fields)
    else:
        before, after = model_update(row, data, fields)
    if after:
        from keys.cache import invalidate_catalog

        transaction.on_commit(invalidate_catalog)  # /v1/models expands to the cached catalog
        record(
            actor=actor,
            action=f"catalog_{kind}_upsert",
            object_type=f"catalog_{kind}",
            object_id=ident,
            before=before,
            after=after,
        )
    return row


@transaction.atomic
def catalog_delete(*, actor: User | None, kind: str, row: Any) -> None:
    model, natural, fields = CATALOG_MODELS[kind]
    before = field_values(row, fields)
    ident = getattr(row, natural)
    row.delete()
    from keys.cache import invalidate_catalog

    transaction.on_commit(invalidate_catalog)
    record(actor=actor, action=f"catalog_{kind}_delete", object_type=f"catalog_{kind}", object_id=ident, before=before)
