"""Reads of keys: the rows the resolver needs (two queries), and the tenant-scoped reads of the routes."""
from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from accessctl import policy
from accessctl.errors import InvalidInput
from accessctl.ids import as_id
from accessgroups.models import AccessGroup
from orgs.models import Team

from .authz import GroupRow, KeyRows
from .crypto import token_for
from .models import IDEMPOTENCY_WINDOW, KeyRotation, VirtualKey

if TYPE_CHECKING:
    from accessctl.tenancy import TenantContext
    from orgs.models import Organization, User


def group_row(group: AccessGroup) -> GroupRow:
    return GroupRow(
        access_group_id=str(group.access_group_id),
        access_group_name=group.access_group_name,
        access_model_names=tuple(group.access_model_names or ()),
        access_mcp_server_ids=tuple(group.access_mcp_server_ids or ()),
        access_agent_ids=tuple(group.access_agent_ids or ()),
    )


def token_known(token: str) -> bool:
    """Whether any key has this token (or had it before its last rotation): two index probes, written
    out so that an unknown token (a flood of random keys) costs a fraction of `key_with_path`'s six-table
    query, in Python and in the database's planner alike."""
    table = connection.ops.quote_name(VirtualKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE token = %s UNION ALL SELECT 1 FROM {table} WHERE previous_token = %s",
            [token, token],
        )
        return cursor.fetchone() is not None


def key_with_path(token: str) -> VirtualKey | None:
    """The key with its team, organization (and budget) and user, in one query. During a rotation's grace
    period the old secret's token finds the key too (the check decides whether its grace has ended)."""
    return (
        VirtualKey.objects.select_related(
            "team", "team__organization", "team__organization__budget", "organization", "organization__budget", "user"
        )
        .filter(Q(token=token) | Q(previous_token=token))
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
    global_groups_by_name: dict[str, GroupRow] = {}
    for group in groups:
        lowered = group.access_group_name.lower()
        if lowered not in named:
            continue
        # An organization's own group wins over a global one of the same name.
        if lowered not in groups_by_name or group.organization_id is not None:
            groups_by_name[lowered] = by_id[str(group.access_group_id)]
        if group.organization_id is None:
            global_groups_by_name[lowered] = by_id[str(group.access_group_id)]
    return KeyRows(
        key=key,
        team=team,
        organization=organization,
        organization_budget=organization.budget if organization is not None else None,
        user=user,
        key_groups=[by_id[str(g)] for g in key.access_group_ids or () if str(g) in by_id],
        team_groups=[by_id[str(g)] for g in (team.access_group_ids if team is not None else ()) or () if str(g) in by_id],
        groups_by_name=groups_by_name,
        global_groups_by_name=global_groups_by_name,
    )


# --- reads of the management routes (tenant-scoped: a foreign key is as absent as a missing one) ---

KEY_PATH = ("team", "team__organization", "organization", "user")


def keys_in_context(tenant: TenantContext) -> QuerySet[VirtualKey]:
    """The keys the request's tenant context can see, with team, organization and user loaded."""
    return tenant.scope(
        VirtualKey.objects.select_related(*KEY_PATH),
        org_field="organization",
        owner_field="user__user_id",
        team_field="team",
        token_field="token",
    )


def key_in_context(tenant: TenantContext, value: str) -> VirtualKey | None:
    """One key by what a caller passes: the raw `sk-…` or its hash."""
    return keys_in_context(tenant).filter(token=token_for(value)).first()


def _one_per_alias(keys: Iterable[VirtualKey]) -> dict[str, VirtualKey]:
    """Keys by alias; an alias shared by keys of several tenants in the caller's view (aliases are unique
    per tenant, and a platform admin or a member of several organizations sees more than one) → 400."""
    found: dict[str, VirtualKey] = {}
    for key in keys:
        if key.key_alias in found:
            raise InvalidInput(
                f"Several keys you can reach are named '{key.key_alias}': pass `key` (the secret or its hash), "
                "or choose the organization with X-Organization-Id.",
                param="key_alias",
            )
        found[key.key_alias] = key
    return found


def rotation_replay(idempotency_key: str, named_token: str, since: datetime.datetime) -> KeyRotation | None:
    """The rotation made since `since` with this Idempotency-Key from (or to) the secret now named: a
    client's retry names the secret it rotated away from."""
    return (
        KeyRotation.objects.filter(idempotency_key=idempotency_key, created_at__gt=since)
        .filter(Q(old_token=named_token) | Q(new_token=named_token))
        .order_by("-created_at")
        .first()
    )


def key_for_rotation(tenant: TenantContext, value: str, idempotency_key: str | None) -> VirtualKey | None:
    """The key a rotation names: by its current secret (or hash), or — for a retry with the same
    Idempotency-Key — by the secret the remembered rotation replaced. Outside the tenant → None."""
    if idempotency_key:
        done = rotation_replay(idempotency_key, token_for(value), timezone.now() - IDEMPOTENCY_WINDOW)
        if done is not None:
            return keys_in_context(tenant).filter(pk=done.key_id).first()
    return key_in_context(tenant, value)


def keys_due_for_rotation(now: datetime.datetime | None = None) -> QuerySet[VirtualKey]:
    """Auto-rotating keys whose rotation is due, most overdue first."""
    now = now or timezone.now()
    return (
        VirtualKey.objects.filter(auto_rotate=True, rotation_due_at__lte=now)
        .select_related("user", "team", "organization")
        .order_by("rotation_due_at", "pk")
    )


def key_exists(value: str) -> bool:
    """Whether a key (raw `sk-…` or hash) exists anywhere, whoever owns it."""
    return VirtualKey.objects.filter(token=token_for(value)).exists()


def keys_exist(values: Iterable[str]) -> bool:
    return VirtualKey.objects.filter(token__in={token_for(v) for v in values}).exists()


def key_by_alias_in_context(tenant: TenantContext, alias: str) -> VirtualKey | None:
    return _one_per_alias(keys_in_context(tenant).filter(key_alias=alias)[:2]).get(alias)


def keys_by_values(tenant: TenantContext, values: Iterable[str], *, aliases: bool = False) -> dict[str, VirtualKey]:
    """Keys by raw/hash (or alias), in one query; the result maps each value passed to its key."""
    values = list(dict.fromkeys(values))
    if aliases:
        found = _one_per_alias(keys_in_context(tenant).filter(key_alias__in=values))
        return {v: found[v] for v in values if v in found}
    tokens = {v: token_for(v) for v in values}
    found = {k.token: k for k in keys_in_context(tenant).filter(token__in=set(tokens.values()))}
    return {v: found[t] for v, t in tokens.items() if t in found}


def key_list(
    tenant: TenantContext,
    *,
    visible: Q | None,
    filters: dict[str, Any],
) -> QuerySet[VirtualKey]:
    """Keys for `/key/list`: the tenant's keys, narrowed to `visible` (None: all of the tenant's), then
    filtered and sorted as LiteLLM's query parameters say."""
    qs = keys_in_context(tenant)
    if visible is not None:
        qs = qs.filter(visible)
    if filters.get("user_id"):
        qs = qs.filter(user__user_id=filters["user_id"])
    for name in ("team_id", "organization_id"):
        value = filters.get(name)
        if value:
            object_id = as_id(value)
            qs = qs.filter(**{name: object_id}) if object_id else qs.none()
    if filters.get("key_hash"):
        qs = qs.filter(token=token_for(filters["key_hash"]))
    if filters.get("key_alias"):
        qs = qs.filter(key_alias=filters["key_alias"])
    status = filters.get("status")
    now = timezone.now()
    if status == "active":
        qs = qs.filter(blocked=False).filter(Q(expires__isnull=True) | Q(expires__gt=now))
    elif status == "expired":
        qs = qs.filter(expires__lte=now)
    elif status in ("blocked", "revoked"):
        qs = qs.filter(blocked=True)
    elif status == "deleted":
        qs = qs.none()  # deleted keys are gone; the audit log keeps them
    order = filters.get("sort_by", "created_at")
    prefix = "-" if filters.get("sort_order", "desc") == "desc" else ""
    return qs.order_by(f"{prefix}{order}", "token")


def keys_visible(tenant: TenantContext) -> QuerySet[VirtualKey]:
    """Keys of the context the caller may list (the policy's `key:list` row rule, inside the query):
    their own, their organizations' if org admin, and those of teams where they may call `/key/list`
    (one more query for those teams' grants)."""
    queryset = keys_in_context(tenant)
    actor = tenant.actor
    if actor.reads_everything:
        return queryset
    condition = Q(user__user_id=actor.user_id) if actor.user_id else Q(pk__in=[])
    if actor.is_service_account and actor.key_token:
        condition |= Q(token=actor.key_token)  # a key without a user lists itself (SPEC §2)
    if actor.admin_org_ids:
        condition |= Q(organization__in=list(actor.admin_org_ids))
    team_ids = set(actor.team_roles) | ({actor.key_team_id} if actor.key_team_id else set())
    if team_ids:
        teams = Team.objects.filter(pk__in=team_ids).only("team_id", "organization_id", "member_permissions")
        listable = [t.pk for t in teams if policy.can(actor, "key:list", policy.team_target(t))]
        condition |= Q(team__in=listable)
    return queryset.filter(condition)


def model_ceilings(team: Team | None, organization: Organization | None, owner: User | None) -> dict[str, list]:
    """What a key's `models` must lie within: its team's and organization's, and its owner's for a personal key."""
    ceilings: dict[str, list] = {}
    if team is not None:
        ceilings["team"] = list(team.models or [])
    if organization is not None:
        ceilings["organization"] = list(organization.models or [])
    if team is None and owner is not None:
        ceilings["user"] = list(owner.models or [])
    return ceilings
