"""Every write to access groups: create, update, delete, assign and unassign (each asks the policy first)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import Lower

from accessctl import policy
from accessctl.common import field_values, model_update
from accessctl.errors import Conflict, InvalidInput, NotFound
from accessctl.ids import is_valid_id, valid_id
from keys.authz import NO_DEFAULT_MODELS
from keys.cache import tokens_naming_groups
from keys.crypto import token_for
from keys.models import VirtualKey
from orgs.audit import Affects, record
from orgs.models import AuditEntry, Organization, Team, User

from .. import bulk_sql
from ..models import AccessGroup, KeyAccessGroup, TeamAccessGroup
from ..selectors import ASSIGNED_IDS_LIMIT, COUNT_FIELDS
from .sync import (
    _ids,
    count_assignments,
    sync_after_group_removed,
)

GROUP_FIELDS = ("access_group_name", "description", "access_model_names", "access_mcp_server_ids", "access_agent_ids")


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


def team_keys_detach(*, team: Team) -> None:
    """The team is about to be deleted (its keys locked, orgs' `hooks.team_deleting`): detach its keys from
    their groups in one statement, then take them off the groups' counts (a difference, not a recount: a
    group may hold a million keys of other teams)."""
    assigned = KeyAccessGroup.objects.filter(key__team=team)
    removed = dict(assigned.values("access_group_id").annotate(n=Count("*")).order_by().values_list("access_group_id", "n"))
    assigned._raw_delete(KeyAccessGroup.objects.db)
    count_assignments(KeyAccessGroup, {group_id: -n for group_id, n in removed.items()})
