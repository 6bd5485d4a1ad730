"""Reads of access groups and the catalog, filtered by the tenant context inside the query."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet

from accessctl.ids import as_id

from .models import AccessGroup

if TYPE_CHECKING:
    from accessctl.tenancy import TenantContext


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


def names_for(groups: list[AccessGroup]) -> dict[str, dict[str, str | None]]:
    """Display names of the MCP servers, agents, teams and keys a page of groups names, in at most four
    queries (LiteLLM's resolved `access_mcp_servers`, `access_agents`, `assigned_teams`, `assigned_keys`)."""
    from keys.models import VirtualKey
    from orgs.models import Team

    from .models import Agent, MCPServer

    def ids(attr: str) -> set[str]:
        return {i for g in groups for i in (getattr(g, attr) or [])}

    server_ids, agent_ids, team_ids, tokens = (
        ids("access_mcp_server_ids"), ids("access_agent_ids"), ids("assigned_team_ids"), ids("assigned_key_ids")
    )
    names: dict[str, dict[str, str | None]] = {"mcp_servers": {}, "agents": {}, "teams": {}, "keys": {}}
    if server_ids:
        names["mcp_servers"] = dict(MCPServer.objects.filter(server_id__in=server_ids).values_list("server_id", "name"))
    if agent_ids:
        names["agents"] = dict(Agent.objects.filter(agent_id__in=agent_ids).values_list("agent_id", "name"))
    if team_ids:
        names["teams"] = {
            str(t): alias for t, alias in Team.objects.filter(team_id__in=team_ids).values_list("team_id", "team_alias")
        }
    if tokens:
        names["keys"] = {
            token: alias or name
            for token, alias, name in VirtualKey.objects.filter(token__in=tokens).values_list(
                "token", "key_alias", "key_name"
            )
        }
    return names
