"""Reads of access groups and the catalog, filtered by the tenant context inside the query."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet

from accessctl.ids import as_id

from .models import AccessGroup, Agent, KeyAccessGroup, MCPServer, TeamAccessGroup

if TYPE_CHECKING:
    from accessctl.tenancy import TenantContext

# Up to this many teams or keys, a group's shapes (LiteLLM's and REST's) list them whole in
# `assigned_team_ids` / `assigned_key_ids`; above it they list none, say so (`assigned_key_ids_truncated`)
# and point to the paginated `/api/v1/access-groups/{id}/keys/`. A read costs the same at 1,000 keys as at
# 1,000,000 (issue 17). Lists of 500 ids are ~35 kB (tokens) and ~90 kB with their names.
ASSIGNED_IDS_LIMIT = 500
COUNT_FIELDS = {TeamAccessGroup: "assigned_team_count", KeyAccessGroup: "assigned_key_count"}


def access_groups_in_context(tenant: TenantContext) -> QuerySet[AccessGroup]:
    """Global groups and the groups of the context's organization (or of the caller's organizations).

    Global groups are everyone's (like GPUStack's global rows); another organization's are absent.
    """
    queryset = AccessGroup.objects.select_related("organization")
    if tenant.bypass:
        return queryset
    if tenant.organization is not None:
        return queryset.filter(Q(organization=tenant.organization) | Q(organization__isnull=True))
    return queryset.filter(Q(organization__in=list(tenant.actor.org_roles)) | Q(organization__isnull=True))


def access_group_in_context(tenant: TenantContext, access_group_id: Any) -> AccessGroup | None:
    object_id = as_id(access_group_id)
    return access_groups_in_context(tenant).filter(pk=object_id).first() if object_id else None


def access_groups_visible(tenant: TenantContext) -> QuerySet[AccessGroup]:
    """The groups of the context the caller may read: org admins their organizations' and the global ones."""
    queryset = access_groups_in_context(tenant)
    actor = tenant.actor
    if actor.reads_everything:
        return queryset
    if not actor.admin_org_ids:
        return queryset.none()
    return queryset.filter(Q(organization__in=list(actor.admin_org_ids)) | Q(organization__isnull=True))


def assigned_for(groups: list[AccessGroup]) -> dict[str, dict[str, Any]]:
    """The teams and keys of a page of groups, for their shapes: group id → {"team_ids", "key_ids" (tokens),
    "teams", "keys" (id → name)}, listed whole for the groups whose count is within ASSIGNED_IDS_LIMIT.

    At most one query per side, bounded by ASSIGNED_IDS_LIMIT rows per group listed (a count that had
    drifted low cannot make it read more: a group found with more rows is treated as above the bound).
    """
    assigned: dict[str, dict[str, Any]] = {
        str(g.pk): {"team_ids": [], "key_ids": [], "teams": {}, "keys": {}, "teams_truncated": False,
                    "keys_truncated": False}
        for g in groups
    }
    sides = (
        (TeamAccessGroup, "assigned_team_count", "team", ("team_id", "team__team_alias", "team__team_alias")),
        (KeyAccessGroup, "assigned_key_count", "key", ("key__token", "key__key_alias", "key__key_name")),
    )
    for relation, count_field, side, fields in sides:
        small = [g.pk for g in groups if getattr(g, count_field) <= ASSIGNED_IDS_LIMIT]
        for group in groups:
            assigned[str(group.pk)][f"{side}s_truncated"] = getattr(group, count_field) > ASSIGNED_IDS_LIMIT
        if not small or not any(getattr(g, count_field) for g in groups if g.pk in small):
            continue
        rows = relation.objects.filter(access_group_id__in=small).order_by("access_group_id", fields[0])
        cap = (ASSIGNED_IDS_LIMIT + 1) * len(small)
        found: dict[str, list[tuple[str, str | None]]] = {}
        read = 0
        for group_id, ident, alias, name in rows.values_list("access_group_id", *fields)[:cap]:
            found.setdefault(str(group_id), []).append((str(ident), alias or name))
            read += 1
        last = str(group_id) if read else None
        for group in groups:
            gid = str(group.pk)
            if group.pk in small and read == cap and getattr(group, count_field) and (gid not in found or gid == last):
                assigned[gid][f"{side}s_truncated"] = True  # the cap was reached before this group was read whole
        for group_id, listed in found.items():
            entry = assigned[group_id]
            if len(listed) > ASSIGNED_IDS_LIMIT or entry[f"{side}s_truncated"]:
                entry[f"{side}s_truncated"] = True
                continue
            entry[f"{side}_ids"] = [ident for ident, _ in listed]
            entry[f"{side}s"] = dict(listed)
    return assigned


def names_for(groups: list[AccessGroup]) -> dict[str, dict[str, str | None]]:
    """Display names of the MCP servers and agents a page of groups names, in at most two queries
    (LiteLLM's resolved `access_mcp_servers`, `access_agents`); teams and keys come with `assigned_for`."""
    def ids(attr: str) -> set[str]:
        return {i for g in groups for i in (getattr(g, attr) or [])}

    server_ids, agent_ids = ids("access_mcp_server_ids"), ids("access_agent_ids")
    names: dict[str, dict[str, str | None]] = {"mcp_servers": {}, "agents": {}}
    if server_ids:
        names["mcp_servers"] = dict(MCPServer.objects.filter(server_id__in=server_ids).values_list("server_id", "name"))
    if agent_ids:
        names["agents"] = dict(Agent.objects.filter(agent_id__in=agent_ids).values_list("agent_id", "name"))
    return names
