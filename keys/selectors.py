"""Reads of keys: the rows the resolver needs, loaded in two queries."""
from __future__ import annotations

from django.db.models import Q
from django.db.models.functions import Lower

from accessgroups.models import AccessGroup

from .authz import GroupRow, KeyRows
from .models import VirtualKey


def group_row(group: AccessGroup) -> GroupRow:
    return GroupRow(
        access_group_id=str(group.access_group_id),
        access_group_name=group.access_group_name,
        access_model_names=tuple(group.access_model_names or ()),
        access_mcp_server_ids=tuple(group.access_mcp_server_ids or ()),
        access_agent_ids=tuple(group.access_agent_ids or ()),
    )


def key_with_path(token: str) -> VirtualKey | None:
    """The key with its team, organization (and budget) and user, in one query."""
    return (
        VirtualKey.objects.select_related(
            "team", "team__organization", "team__organization__budget", "organization", "organization__budget", "user"
        )
        .filter(token=token)
        .first()
    )


def key_rows(key: VirtualKey) -> KeyRows:
    """Everything `build_snapshot` needs about a key loaded by `key_with_path`, in one more query."""
    team = key.team
    organization = key.organization or (team.organization if team is not None else None)
    user = key.user
    wanted_ids = {str(g) for g in key.access_group_ids or ()}
    if team is not None:
        wanted_ids.update(str(g) for g in team.access_group_ids or ())
    named: set[str] = set()
    for row in (key, team, organization, user):
        if row is not None:
            named.update(entry.lower() for entry in (row.models or ()) if "*" not in entry)
    groups: list[AccessGroup] = []
    if wanted_ids or named:
        owner = Q(organization__isnull=True)
        if organization is not None:
            owner |= Q(organization=organization)
        groups = list(
            AccessGroup.objects.annotate(name_lower=Lower("access_group_name")).filter(
                Q(access_group_id__in=wanted_ids) | (Q(name_lower__in=named) & owner)
            )
        )
    by_id = {str(g.access_group_id): group_row(g) for g in groups}
    groups_by_name: dict[str, GroupRow] = {}
    for group in groups:
        lowered = group.access_group_name.lower()
        if lowered not in named:
            continue
        # An organization's own group wins over a global one of the same name.
        if lowered not in groups_by_name or group.organization_id is not None:
            groups_by_name[lowered] = by_id[str(group.access_group_id)]
    return KeyRows(
        key=key,
        team=team,
        organization=organization,
        organization_budget=organization.budget if organization is not None else None,
        user=user,
        key_groups=[by_id[str(g)] for g in key.access_group_ids or () if str(g) in by_id],
        team_groups=[by_id[str(g)] for g in (team.access_group_ids if team is not None else ()) or () if str(g) in by_id],
        groups_by_name=groups_by_name,
    )
