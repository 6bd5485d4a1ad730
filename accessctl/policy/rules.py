"""The rules per resource, and `can`: the one place every permission decision is made."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from accessctl.allow import Allow
from accessctl.errors import ServiceError
from accessctl.roles import (
    ORG_ROLES,
    OrgRole,
    PlatformRole,
    TeamRole,
    platform_role,
    team_member_permissions,
)

from .actions import (
    ACTIONS,
    KEY_ACTION_ROUTE,
    READ_ACTIONS,
    SERVICE_ACCOUNT_ACTIONS,
    WRITE_ACTIONS,
)
from .facts import (
    _INTERNAL_USER_PRIORITY,
    ALLOW,
    NOT_FOUND,
    Actor,
    Target,
    UserFacts,
    Verdict,
    deny,
)
from .whose import (
    manages_user,
    may_own_key,
)


def require(actor: Actor, action: str, target: Target | None = None, *, param: str | None = None) -> None:
    """Raise the policy's refusal (status and type as `can` says) unless `actor` may do `action`."""
    raise_refusal(can(actor, action, target), param=param)


def raise_refusal(verdict: Verdict, *, param: str | None = None) -> None:
    if not verdict:
        raise ServiceError(verdict.message, type=verdict.type, status=verdict.status, param=param)


def can(actor: Actor, action: str, target: Target | None = None) -> Verdict:
    """May `actor` do `action` on `target`? The one place every permission decision is made."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; add it to accessctl.policy")
    target = target or Target()
    if actor.is_proxy_admin:
        return ALLOW
    if action in READ_ACTIONS and actor.reads_everything:
        return ALLOW
    if action == "usage:report":
        return ALLOW if actor.is_system else deny(403, "Only system users and the master key may report usage.")
    if actor.is_system or actor.platform_role == PlatformRole.PROXY_ADMIN_VIEWER:
        # Visible, but read-only.
        return deny(403, f"Your role ({actor.platform_role}) may read but not write.")
    if actor.is_service_account:
        return _service_account(actor, action, target)
    resource = action.split(":", 1)[0]
    rule = _RULES[resource]
    return rule(actor, action, target)


def _service_account(actor: Actor, action: str, target: Target) -> Verdict:
    if action not in SERVICE_ACCOUNT_ACTIONS:
        return deny(
            401,
            f"Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={action}.",
        )
    if action == "catalog:read":
        return ALLOW
    if action.startswith("key:") and target.key_token is not None and target.key_token == actor.key_token:
        return ALLOW  # a key without a user reads itself
    if target.team_id is not None and target.team_id == actor.key_team_id:
        return ALLOW
    if action in ("key:list", "team:list") and target.team_id is None and target.owner_user_id is None:
        return ALLOW  # the list itself: filtered to the key's own team
    return NOT_FOUND


def _sees_tenant(actor: Actor, target: Target) -> bool:
    """Is the row inside a tenant the actor belongs to (so a refusal may say 403 rather than 404)?"""
    if target.organization_id and actor.org_role(target.organization_id):
        return True
    if target.team_id and actor.team_role(target.team_id):
        return True
    if target.owner_user_id and target.owner_user_id == actor.user_id:
        return True
    return any(org in actor.org_roles for org in target.user_org_ids) or any(
        team in actor.team_roles for team in target.user_team_ids
    )


def _read_only_role(actor: Actor) -> bool:
    return actor.platform_role == PlatformRole.INTERNAL_USER_VIEWER




# --- keys -------------------------------------------------------------------------------------


def _keys(actor: Actor, action: str, target: Target) -> Verdict:
    verdict = _key_rules(actor, action, target)
    if verdict and action == "key:generate" and not may_own_key(actor, target):
        # A key acts with its owner's rights: whose key it is matters as much as where it is (SPEC §2).
        return deny(
            403,
            f"You may create keys only for yourself or a user you manage. Got user_id={target.owner_user_id}, "
            f"Your ID={actor.user_id}",
        )
    return verdict


def _key_rules(actor: Actor, action: str, target: Target) -> Verdict:
    is_write = action in WRITE_ACTIONS
    if action == "key:generate" and target.team_id is not None and target.owner_in_team is False:
        # A team key's owner must be in the team (LiteLLM: 400); proxy admins never reach this line.
        return deny(400, f"User={target.owner_user_id} not assigned to team={target.team_id}")
    if action == "key:list" and target == Target():
        return ALLOW  # the list itself: filtered to the keys the caller may list
    if target.organization_id and actor.is_org_admin(target.organization_id):
        return ALLOW
    if action in ("key:reassign", "key:assign_access_groups"):
        # Re-owning a key or changing its access groups is for admins of the key (never its mere owner).
        if target.team_id is not None and actor.team_role(target.team_id) == TeamRole.ADMIN:
            return ALLOW
        if not _sees_tenant(actor, target):
            return NOT_FOUND
        if action == "key:reassign":
            return deny(403, f"Non-admin caller is not allowed to rebind the key from user={target.owner_user_id}.")
        return deny(403, "Only an admin of the key's team or organization may set its access groups.")
    if target.team_id is not None:
        role = actor.team_role(target.team_id)
        if role == TeamRole.ADMIN:
            return ALLOW
        if role == TeamRole.USER:
            if action == "key:update_budget":
                return deny(403, "Only an admin of the key may change its budget or spend.")
            if is_write and _read_only_role(actor):
                return deny(403, "Your role (internal_user_viewer) may not change keys.")
            route = KEY_ACTION_ROUTE[action]
            granted = team_member_permissions(
                list(target.member_permissions) if target.member_permissions is not None else None
            )
            if route in granted:
                return ALLOW
            return deny(
                401,
                f"Team member does not have permissions for endpoint: {route}. You only have access to the "
                f"following endpoints: {sorted(granted)} for team {target.team_id}.",
                "team_member_permission_error",
            )
        if not _sees_tenant(actor, target):
            return NOT_FOUND
        if action in ("key:generate", "key:delete"):
            return deny(400, f"User={actor.user_id} not assigned to team={target.team_id}")
        if action in ("key:update", "key:regenerate"):
            return deny(
                401,
                f"User {actor.user_id} does not belong to team {target.team_id}. Team-scoped key management "
                "endpoints can only be used for keys in your own team.",
                "team_member_permission_error",
            )
        return deny(403, "You are not allowed to access this key.")
    # A personal key (or a personal create).
    if target.owner_user_id is not None and target.owner_user_id == actor.user_id:
        if action == "key:update_budget":
            return deny(403, "Non-admins may not change a key's budget or spend.")
        if is_write and (_read_only_role(actor) or not actor.may_create_own_keys):
            return deny(403, f"Your role ({actor.platform_role}) may not create or change keys.")
        if action == "key:generate" and target.organization_id:
            role = actor.org_role(target.organization_id)
            if role is None:
                return NOT_FOUND
            if not ORG_ROLES[role].creates_own_keys:
                return deny(403, f"Your role in this organization ({role}) may not create keys.")
        return ALLOW
    if action == "key:generate":
        # Checked before visibility: the answer must not depend on whether the other user exists.
        return deny(
            403, f"User can only create keys for themselves. Got user_id={target.owner_user_id}, Your ID={actor.user_id}"
        )
    if not _sees_tenant(actor, target):
        return NOT_FOUND
    return deny(403, "You are not allowed to access this key.")


def can_grant_models(actor: Actor, models: Iterable[str], ceilings: Mapping[str, Sequence[str]]) -> Verdict:
    """Nobody grants more models than they hold: every entry must lie within each non-empty ceiling
    (`{"team": [...], "organization": [...], "user": [...]}`); proxy admins set what they like."""
    if actor.is_proxy_admin:
        return ALLOW
    wanted = [m for m in models if m not in ("all-team-models", "no-default-models")]
    for scope, ceiling in ceilings.items():
        allow = Allow.of(ceiling or ())
        if not ceiling or allow.everything:
            continue
        outside = [m for m in wanted if m in ("all-proxy-models", "*") or not allow.matches(m)]
        if outside:
            return deny(403, f"Models outside what the {scope} allows: {', '.join(outside)}.")
    return ALLOW


# --- teams ------------------------------------------------------------------------------------


def _teams(actor: Actor, action: str, target: Target) -> Verdict:
    org_admin = bool(target.organization_id) and actor.is_org_admin(target.organization_id)
    role = actor.team_role(target.team_id)
    if action == "team:list" and target.team_id is None:
        # Listing the teams of one user: that user, or an admin of one of their organizations.
        if target.owner_user_id == actor.user_id or set(target.user_org_ids) & actor.admin_org_ids:
            return ALLOW
        return deny(401, f"Only admin users can query all teams/other teams. Your user role={actor.platform_role}")
    if action == "team:create":
        if org_admin:
            return ALLOW
        if target.organization_id and actor.org_role(target.organization_id) is None:
            return NOT_FOUND
        return deny(401, f"Only proxy admins and organization admins may create teams. Your role={actor.platform_role}.")
    if org_admin:
        return ALLOW
    if role is None and not _sees_tenant(actor, target):
        return NOT_FOUND
    if action in ("team:info", "team:list"):
        if role is not None:
            return ALLOW
        return deny(403, f"User={actor.user_id} not authorized to access this team={target.team_id}")
    if action == "team:permissions_read":
        return ALLOW if role is not None else deny(403, "Only members of the team may read its permissions.")
    if action == "team:delete":
        return deny(401, "Only proxy admins and organization admins may delete teams.")
    if action == "team:update_limits" and role == TeamRole.ADMIN:
        # Nobody raises their own ceiling: models, budgets and access groups come from above.
        return deny(403, "Team admins may not change their team's models, budget, limits or access groups.")
    if role == TeamRole.ADMIN:
        return ALLOW
    if action == "team:member_manage":
        return deny(
            403, f"Call not allowed. User not proxy admin OR team admin. team_id={target.team_id}"
        )
    return deny(403, "You do not have access to this team")


# --- users ------------------------------------------------------------------------------------


_USER_WRITES = frozenset(
    {"user:update", "user:update_role", "user:update_budget", "user:update_password", "user:delete"}
)
# Writes to the account itself (SPEC §2): proxy admins only — and, for the password, the user themself.
_ACCOUNT_WRITES = frozenset({"user:update_role", "user:update_budget", "user:update_password", "user:delete"})


def user_facts_of(target: Target) -> UserFacts | None:
    """The named user's facts: loaded ones (`target.owner`), else what a user row's target says."""
    if target.owner is not None:
        return target.owner
    if target.owner_user_id is None:
        return None
    return UserFacts(
        user_id=target.owner_user_id,
        platform_role=target.owner_platform_role or PlatformRole.INTERNAL_USER,
        org_roles=tuple((org, OrgRole.INTERNAL_USER.value) for org in target.user_org_ids),
        teams=tuple((team, None) for team in target.user_team_ids),
    )


def _users(actor: Actor, action: str, target: Target) -> Verdict:
    is_self = target.owner_user_id is not None and target.owner_user_id == actor.user_id
    admin_of_any = bool(set(target.user_org_ids) & actor.admin_org_ids)
    facts = user_facts_of(target)
    if target.new_platform_role is not None and platform_role(target.new_platform_role).priority > (
        _INTERNAL_USER_PRIORITY
    ):
        return deny(403, "Only a proxy admin may create or grant an admin role.")
    if action == "user:create":
        if target.organization_id and actor.is_org_admin(target.organization_id):
            return ALLOW
        if target.organization_id and actor.org_role(target.organization_id) is None:
            return NOT_FOUND
        return deny(401, f"Only proxy admins and organization admins may create users. Your role={actor.platform_role}.")
    if action == "user:list" and target.owner_user_id is None:
        if actor.admin_org_ids:
            return ALLOW  # filtered to their organizations' members
        return deny(403, "Only admins may list users.")
    if action in ("user:info", "user:list"):  # a row of a list is visible exactly when it may be read
        if is_self or admin_of_any:
            return ALLOW
        if _sees_tenant(actor, target):
            return deny(
                403, f"key not allowed to access this user's info. user_id={target.owner_user_id}, key's user_id={actor.user_id}"
            )
        return NOT_FOUND
    visible = is_self or admin_of_any or _sees_tenant(actor, target)
    if not is_self and facts is not None and facts.above_internal_user:
        # An org admin never takes over a platform admin's (or a system user's) account by sharing an org.
        return deny(403, "Only a proxy admin may change a platform admin's account.") if visible else NOT_FOUND
    if action in _ACCOUNT_WRITES:
        if is_self and action == "user:update_password":
            return ALLOW
        if not visible:
            return NOT_FOUND
        if action == "user:update_budget" and is_self:
            return deny(403, "Users may not raise their own budget or spend.")
        if action == "user:update_role":
            return deny(403, "Only a proxy admin may change a user's platform role.")
        return deny(403, "Only a proxy admin (or the user themself, for a password) may change this account.")
    if action == "user:update":
        if is_self:
            if _read_only_role(actor):
                return deny(403, "Your role (internal_user_viewer) may not change anything.")
            return ALLOW
        # A profile is changed by the user or an admin of one of their organizations who manages them.
        if admin_of_any and manages_user(actor, facts):
            return ALLOW
        return deny(403, "You may only update yourself or a user you manage.") if visible else NOT_FOUND
    return deny(403, "Not allowed.")


# --- organizations ----------------------------------------------------------------------------


def _organizations(actor: Actor, action: str, target: Target) -> Verdict:
    role = actor.org_role(target.organization_id)
    if action == "organization:create":
        return deny(401, f"Only admins can create orgs. Your role is = {actor.platform_role}")
    if action == "organization:list" and target.organization_id is None:
        return ALLOW  # the list itself: filtered to the caller's organizations
    if role is None:
        return NOT_FOUND
    if action in ("organization:info", "organization:list"):
        return ALLOW
    if action == "organization:delete":
        return deny(401, "Only proxy admins may delete organizations.")
    if action == "organization:update_limits" and role == OrgRole.ORG_ADMIN:
        # An org admin works inside the organization's models and budget; only a proxy admin sets them.
        return deny(403, "Only a proxy admin may change an organization's models or budget.")
    if role == OrgRole.ORG_ADMIN:
        return ALLOW
    return deny(403, f"Only organization admins may do this. Your role in this organization is {role}.")


# --- access groups, catalog, audit ------------------------------------------------------------


def _access_groups(actor: Actor, action: str, target: Target) -> Verdict:
    if target.is_global or not target.organization_id:
        if action == "access_group:read" and actor.admin_org_ids:
            return ALLOW  # org admins see global groups, read-only
        if action == "access_group:read":
            return deny(403, "Admin-only endpoint. Not allowed to access this.")
        return deny(403, "Only platform admins manage global access groups.")
    role = actor.org_role(target.organization_id)
    if role is None:
        return NOT_FOUND
    if role == OrgRole.ORG_ADMIN:
        return ALLOW
    return deny(403, "Only organization admins manage the organization's access groups.")


def _catalog(actor: Actor, action: str, target: Target) -> Verdict:
    if action == "catalog:read":
        return ALLOW
    return deny(403, "Only platform admins manage the catalog.")


def _audit(actor: Actor, action: str, target: Target) -> Verdict:
    if target.organization_id:
        # One organization's entries: its admins read them; its other members are refused; others see nothing.
        role = actor.org_role(target.organization_id)
        if role is None:
            return NOT_FOUND
        if role == OrgRole.ORG_ADMIN:
            return ALLOW
        return deny(403, "Only organization admins may read the organization's audit log.")
    if actor.admin_org_ids:
        return ALLOW  # filtered to their organizations' entries
    return deny(403, "Only admins may read the audit log.")


def _usage(actor: Actor, action: str, target: Target) -> Verdict:
    return deny(403, "Only system users and the master key may report usage.")


def _bulk_jobs(actor: Actor, action: str, target: Target) -> Verdict:
    """A bulk job lists which keys or teams an assignment chose: its requester reads it, and so do those
    who may make assignments in its organization (its org admins); to anyone else it does not exist."""
    if target.owner_user_id is not None and target.owner_user_id == actor.user_id:
        return ALLOW
    if target.organization_id and actor.is_org_admin(target.organization_id):
        return ALLOW
    return NOT_FOUND


_RULES: dict[str, Any] = {
    "key": _keys,
    "team": _teams,
    "user": _users,
    "organization": _organizations,
    "access_group": _access_groups,
    "catalog": _catalog,
    "audit": _audit,
    "usage": _usage,
    "bulk_job": _bulk_jobs,
}
