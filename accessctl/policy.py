"""The one decision table: `can(actor, action, target)` → allowed, or the exact status and error type.

Pure: an `Actor` carries the caller's platform role and memberships (loaded once per request by
`actor_for`), a `Target` the facts of the row acted on. The REST API, the LiteLLM-compatible routes,
the admin and the commands all ask here (SPEC §2). Rows the caller may not even see answer 404, the
same as a missing row, so ids cannot be probed (SPEC §3).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from accessctl.errors import ServiceError
from orgs.roles import (
    ORG_ROLES,
    PLATFORM_ROLES,
    TEAM_ROLES,
    OrgRole,
    PlatformRole,
    TeamRole,
    outranks,
    platform_role,
    team_member_permissions,
)

# --- who is asking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """The caller: a user (or none, for a team service-account key), their memberships, their key."""

    user_id: str | None
    platform_role: str | None
    is_system: bool = False
    is_master: bool = False
    org_roles: dict[str, str] = field(default_factory=dict)  # organization_id → org role (alive orgs only)
    team_roles: dict[str, str] = field(default_factory=dict)  # team_id → team role (grants count as admin)
    key_team_id: str | None = None  # the team of the key used, for service-account keys
    key_token: str | None = None
    user_pk: int | None = None
    # Teams the user may manage through a django-guardian object permission (`orgs.manage_team`) rather
    # than a membership; `actor_for` also lists them in `team_roles` as admin, so every rule honours them.
    granted_team_ids: frozenset[str] = frozenset()
    # team_id → the team's organization (None: a team outside any organization), for the teams in `team_roles`.
    team_org_ids: dict[str, str | None] = field(default_factory=dict)

    @property
    def role_info(self):
        return platform_role(self.platform_role)

    @property
    def is_proxy_admin(self) -> bool:
        return self.is_master or self.role_info.writes_everything

    @property
    def reads_everything(self) -> bool:
        return self.is_master or self.is_system or self.role_info.reads_everything

    @property
    def is_service_account(self) -> bool:
        return self.user_id is None and not self.is_master

    def org_role(self, organization_id: str | None) -> str | None:
        return self.org_roles.get(str(organization_id)) if organization_id else None

    def is_org_admin(self, organization_id: str | None) -> bool:
        return self.org_role(organization_id) == OrgRole.ORG_ADMIN

    def team_role(self, team_id: str | None) -> str | None:
        return self.team_roles.get(str(team_id)) if team_id else None

    @property
    def admin_org_ids(self) -> set[str]:
        return {org for org, role in self.org_roles.items() if role == OrgRole.ORG_ADMIN}

    @property
    def admin_team_ids(self) -> set[str]:
        return {team for team, role in self.team_roles.items() if role == TeamRole.ADMIN}

    @property
    def admin_team_org_ids(self) -> set[str]:
        """Organizations in which the actor runs at least one team."""
        return {org for team, org in self.team_org_ids.items() if org and team in self.admin_team_ids}

    @property
    def uses_admin(self) -> bool:
        """May log in to the admin: platform admins and viewers, org admins, team admins (role or grant)."""
        return (
            self.platform_role in (PlatformRole.PROXY_ADMIN, PlatformRole.PROXY_ADMIN_VIEWER)
            or bool(self.admin_org_ids)
            or bool(self.admin_team_ids)
        )

    @property
    def may_create_own_keys(self) -> bool:
        info = PLATFORM_ROLES.get(self.platform_role or "")
        return bool(info and info.creates_own_keys)


@dataclass(frozen=True)
class UserFacts:
    """What the policy needs to know about a user named by a request (a key's owner, a member, a user row)."""

    user_id: str
    platform_role: str | None = PlatformRole.INTERNAL_USER
    is_system: bool = False
    org_roles: tuple[tuple[str, str], ...] = ()  # (organization_id, org role)
    teams: tuple[tuple[str, str | None], ...] = ()  # (team_id, the team's organization_id)

    @property
    def org_ids(self) -> tuple[str, ...]:
        return tuple(org for org, _ in self.org_roles)

    @property
    def above_internal_user(self) -> bool:
        """A platform role above internal_user (an admin or admin viewer), or a system user."""
        return self.is_system or platform_role(self.platform_role).priority > _INTERNAL_USER_PRIORITY


_INTERNAL_USER_PRIORITY = PLATFORM_ROLES[PlatformRole.INTERNAL_USER].priority


@dataclass(frozen=True)
class Target:
    """Facts about the row acted on (or, for creates, where it would be created)."""

    organization_id: str | None = None  # the row's tenant (a key's or team's organization, a group's owner)
    team_id: str | None = None
    owner_user_id: str | None = None  # a key's owner, or the user row itself
    member_permissions: tuple[str, ...] | None = None  # the team's, for team keys
    user_org_ids: tuple[str, ...] = ()  # for user rows: the organizations the user belongs to
    user_team_ids: tuple[str, ...] = ()  # for user rows: the teams the user belongs to
    is_global: bool = False  # a global access group, or a team outside any organization
    new_platform_role: str | None = None  # for user creates/updates that set a role
    owner_in_team: bool | None = None  # for team-key creates: is the key's owner a member of the team?
    owner_platform_role: str | None = None  # for user rows: the user's own platform role
    # The user the request names (a key's new owner, a user row): judged by `manages_user`. None for
    # an owner that does not exist yet (created by the same request, inside the actor's tenant).
    owner: UserFacts | None = None
    key_token: str | None = None  # for key rows: the key's token (a key without a user reads only itself)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    status: int = 200
    type: str = ""
    message: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Verdict(True)


def deny(status: int, message: str, type: str | None = None) -> Verdict:
    default_type = {400: "bad_request_error", 401: "auth_error", 403: "auth_error", 404: "not_found_error"}[status]
    return Verdict(False, status, type or default_type, message)


NOT_FOUND = deny(404, "Not found.")


# --- actions ----------------------------------------------------------------------------------

READ_ACTIONS = frozenset(
    {
        "key:info",
        "key:list",
        "key:health",
        "team:info",
        "team:list",
        "team:permissions_read",
        "user:info",
        "user:list",
        "organization:info",
        "organization:list",
        "access_group:read",
        "catalog:read",
        "audit:read",
        "bulk_job:read",
    }
)
WRITE_ACTIONS = frozenset(
    {
        "key:generate",
        "key:update",
        "key:update_budget",
        "key:reassign",
        "key:assign_access_groups",
        "key:delete",
        "key:regenerate",
        "key:block",
        "key:unblock",
        "team:create",
        "team:update",
        "team:update_limits",
        "team:delete",
        "team:member_manage",
        "team:permissions_update",
        "user:create",
        "user:update",
        "user:update_role",
        "user:update_budget",
        "user:update_password",
        "user:delete",
        "organization:create",
        "organization:update",
        "organization:update_limits",
        "organization:delete",
        "organization:member_manage",
        "access_group:create",
        "access_group:update",
        "access_group:delete",
        "access_group:assign",
        "catalog:write",
        "usage:report",
    }
)
ACTIONS = READ_ACTIONS | WRITE_ACTIONS

# The route name a team member with role `user` needs for each key action (SPEC §2).
KEY_ACTION_ROUTE = {
    "key:generate": "/key/generate",
    "key:update": "/key/update",
    "key:delete": "/key/delete",
    "key:regenerate": "/key/regenerate",
    "key:block": "/key/block",
    "key:unblock": "/key/unblock",
    "key:info": "/key/info",
    "key:list": "/key/list",
    "key:health": "/key/health",
}
# What a service-account key (no user) may do: read its own team and keys (LiteLLM's info routes).
SERVICE_ACCOUNT_ACTIONS = frozenset({"key:info", "key:health", "key:list", "team:info", "team:list", "catalog:read"})


# --- which fields of a change need which action ----------------------------------------------------
# The one declarative map, in the services' vocabulary (model field names): a service command asks the
# policy for each action whose fields its change touches, and the admin makes the same fields read-only
# when the action is refused. The LiteLLM routes and REST only translate their bodies into these names.

_BUDGET_FIELDS = (
    "max_budget", "soft_budget", "tpm_limit", "rpm_limit", "max_parallel_requests", "model_max_budget",
    "budget_duration", "budget_reset_at",
)
FIELD_ACTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "key": {
        "key:reassign": ("user", "team", "organization"),
        "key:update_budget": (*_BUDGET_FIELDS, "spend", "model_spend"),
        "key:assign_access_groups": ("access_group_ids",),
    },
    "user": {
        "user:update_role": ("user_role", "is_system", "is_active"),
        "user:update_budget": (*_BUDGET_FIELDS, "spend", "model_spend"),
        "user:update_password": ("password",),
    },
    "team": {
        # A team's ceiling comes from above (SPEC §2): its own admins never raise it, nor move the team.
        "team:update_limits": (*_BUDGET_FIELDS, "spend", "model_spend", "models", "blocked", "access_group_ids",
                               "organization"),
        "team:permissions_update": ("member_permissions",),
    },
    "organization": {
        "organization:update_limits": (*_BUDGET_FIELDS, "spend", "model_spend", "models"),
    },
    "access_group": {
        "access_group:assign": ("assigned_team_ids", "assigned_key_ids"),
    },
}


def actions_for(kind: str, fields: Iterable[str]) -> list[str]:
    """The further actions a change of `fields` on a row of `kind` needs, in the map's order."""
    fields = set(fields)
    return [action for action, names in FIELD_ACTIONS[kind].items() if fields & set(names)]


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


# --- whose: the users an actor manages ---------------------------------------------------------


def manages_user(actor: Actor, user: UserFacts | None) -> bool:
    """May `actor` act *as* or *for* this user (own their key, change their profile, manage their membership)?

    A proxy admin manages everyone. An organization or team admin manages only members of their tenant who
    hold no platform role above internal_user, are not system users, belong to no organization they do not
    administer (a team admin: at most the organization of their team, with a role no higher than their own
    there) and to no team they do not run. Nobody "manages" themself: the caller's own rows are the caller's.
    """
    if actor.is_proxy_admin:
        return True
    if user is None or actor.user_id is None or user.user_id == actor.user_id or user.above_internal_user:
        return False
    in_tenant = False
    for org, role in user.org_roles:
        if org in actor.admin_org_ids:
            in_tenant = True
            continue
        # A team admin acts in their team's organization as (at least) an internal user there.
        mine = actor.org_role(org) or OrgRole.INTERNAL_USER
        if org in actor.admin_team_org_ids and role in ORG_ROLES and outranks(ORG_ROLES, mine, role):
            continue
        return False
    for team, org in user.teams:
        if team in actor.admin_team_ids or (org is not None and org in actor.admin_org_ids):
            in_tenant = True
            continue
        return False
    return in_tenant


def may_own_key(actor: Actor, target: Target) -> bool:
    """A key's owner is the caller, nobody (a key without a user), or a user the caller manages."""
    if actor.is_proxy_admin or target.owner_user_id is None or target.owner_user_id == actor.user_id:
        return True
    if target.owner is None:
        return False
    return manages_user(actor, target.owner)


def can_add_member(actor: Actor, user: UserFacts | None, *, organization_id: str | None) -> Verdict:
    """Adding an existing user who belongs elsewhere (another organization) or holds a platform role above
    internal_user needs a proxy admin; a user created by the request (None) belongs nowhere yet."""
    if actor.is_proxy_admin or user is None:
        return ALLOW
    if user.above_internal_user:
        return deny(403, f"Only a proxy admin may add {user.user_id}: they hold a platform role or are a system user.")
    elsewhere = [o for o in user.org_ids if o != organization_id and o not in actor.admin_org_ids]
    if elsewhere:
        return deny(403, f"Only a proxy admin may add {user.user_id}: they belong to another organization.")
    return ALLOW


def can_change_own_membership(actor: Actor, member_user_id: str | None) -> Verdict:
    """Nobody raises their own role or budget in an organization or team (SPEC §2); proxy admins may."""
    if actor.is_proxy_admin or member_user_id is None or member_user_id != actor.user_id:
        return ALLOW
    return deny(403, "You may not change your own role or budget in this organization or team.")


# --- which routes a key may call: key_type and allowed_routes (SPEC §2) ---------------------------
# A key acts with its user's rights narrowed by these two fields, as in LiteLLM: `llm_api` keys call the
# model routes only, `management` keys the management routes only, `read_only` keys the info (read)
# routes only, `default` keys anything; `allowed_routes` (paths, or the route-group names below)
# narrows further. Asked by the management API's authentication layer for every request a virtual key
# makes (`accessctl.tenancy`), and by the warm check through the key's snapshot (`keys.authz`).

KEY_TYPE_DEFAULT = "default"
KEY_TYPES = (KEY_TYPE_DEFAULT, "llm_api", "management", "read_only")
LLM_API_ROUTES = "llm_api_routes"
MANAGEMENT_ROUTES = "management_routes"
INFO_ROUTES = "info_routes"
ROUTE_GROUPS = (LLM_API_ROUTES, MANAGEMENT_ROUTES, INFO_ROUTES)
KEY_TYPE_ROUTES = {"llm_api": LLM_API_ROUTES, "management": MANAGEMENT_ROUTES, "read_only": INFO_ROUTES}
ROUTE_DENIED = "key_route_access_denied"

# The gateway's routes (keys/api/gateway_urls.py). The check and usage reports are model routes only; the
# model list is also an info route, and the model info routes are in all three groups (as in LiteLLM).
CHECK_ROUTE = "/api/v1/authz/check"
USAGE_ROUTE = "/api/v1/usage"
MODEL_LIST_ROUTES = ("/v1/models", "/models")
MODEL_INFO_ROUTES = ("/model/info", "/v1/model/info", "/model_group/info")
GATEWAY_ROUTES = (CHECK_ROUTE, USAGE_ROUTE, *MODEL_LIST_ROUTES, *MODEL_INFO_ROUTES)
_GATEWAY_ROUTE_GROUPS = {
    CHECK_ROUTE: frozenset({LLM_API_ROUTES}),
    USAGE_ROUTE: frozenset({LLM_API_ROUTES}),
    **{route: frozenset({LLM_API_ROUTES, INFO_ROUTES}) for route in MODEL_LIST_ROUTES},
    **{route: frozenset(ROUTE_GROUPS) for route in MODEL_INFO_ROUTES},
}
_READ = frozenset({MANAGEMENT_ROUTES, INFO_ROUTES})
_WRITE = frozenset({MANAGEMENT_ROUTES})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Management routes that only read although LiteLLM calls them with POST.
READ_POSTS = frozenset({"/key/health"})
MAX_ALLOWED_ROUTES = 100


def normal_route(path: str) -> str:
    """A route as the rules compare it: without a trailing slash (`/api/v1/keys/` is `/api/v1/keys`)."""
    return path.rstrip("/") or "/"


def route_groups(path: str, method: str) -> frozenset[str]:
    """The route groups a request belongs to. Everything but the gateway's routes is the management API;
    its reads (GET, and LiteLLM's read-only POSTs) are also info routes."""
    path = normal_route(path)
    gateway = _GATEWAY_ROUTE_GROUPS.get(path)
    if gateway is not None:
        return gateway
    return _READ if method.upper() in READ_METHODS or path in READ_POSTS else _WRITE


def _entry_matches(entry: str, path: str, groups: frozenset[str]) -> bool:
    """LiteLLM's matching of one `allowed_routes` entry: a group name, an exact path, a path prefix
    (`/key` covers `/key/info`, never `/keyring`), or a prefix ending in `*`."""
    if entry in ROUTE_GROUPS:
        return entry in groups
    if entry.endswith("*"):
        return path.startswith(entry[:-1])
    entry = normal_route(entry)
    return path == entry or path.startswith(entry + "/")


def is_route_restricted(key_type: str | None, allowed_routes: Sequence[str] | None) -> bool:
    return (key_type or KEY_TYPE_DEFAULT) != KEY_TYPE_DEFAULT or bool(allowed_routes)


def may_call_route(key_type: str | None, allowed_routes: Sequence[str] | None, path: str, method: str) -> Verdict:
    """May a key with this `key_type` and `allowed_routes` call this route? 403 `key_route_access_denied`
    otherwise. The master key and browser sessions are no keys: they are never asked."""
    if not is_route_restricted(key_type, allowed_routes):
        return ALLOW
    path = normal_route(path)
    groups = route_groups(path, method)
    group = KEY_TYPE_ROUTES.get(key_type or KEY_TYPE_DEFAULT)
    if group is not None and group not in groups:
        return deny(
            403,
            f"Virtual key of key_type={key_type} is not allowed to call this route: it may call {group} only. "
            f"Tried to call route: {method.upper()} {path}",
            ROUTE_DENIED,
        )
    if allowed_routes and not any(_entry_matches(entry, path, groups) for entry in allowed_routes):
        return deny(
            403,
            f"Virtual key is not allowed to call this route. Only allowed to call routes: {list(allowed_routes)}. "
            f"Tried to call route: {path}",
            ROUTE_DENIED,
        )
    return ALLOW


def refused_gateway_routes(key_type: str | None, allowed_routes: Sequence[str] | None) -> frozenset[str]:
    """The gateway routes a key may not call: decided once, when its snapshot is built, so the warm check
    pays a set lookup (the gateway routes' groups do not depend on the method)."""
    if not is_route_restricted(key_type, allowed_routes):
        return frozenset()
    return frozenset(r for r in GATEWAY_ROUTES if not may_call_route(key_type, allowed_routes, r, "POST"))


def _entry_within(entry: str, entries: Sequence[str]) -> bool:
    """Does every route `entry` matches also match one of `entries`? Conservative: when unsure, no."""
    if entry in ROUTE_GROUPS:
        return entry in entries
    wildcard = entry.endswith("*")
    prefix = entry[:-1] if wildcard else normal_route(entry)
    for other in entries:
        if other == MANAGEMENT_ROUTES:
            # Every route outside the gateway's is a management route, whatever its method.
            gateway = [r for r in GATEWAY_ROUTES if _entry_matches(entry, r, _WRITE)]
            if all(MANAGEMENT_ROUTES in _GATEWAY_ROUTE_GROUPS[r] for r in gateway):
                return True
        elif other in ROUTE_GROUPS:
            continue  # a path's sub-routes may be writes or management routes: never wholly these groups
        elif other.endswith("*"):
            if prefix.startswith(other[:-1]):
                return True
        else:
            base = normal_route(other)
            if (not wildcard and prefix == base) or prefix.startswith(base + "/"):
                return True
    return False


def _rule_within(key_type: str, allowed_routes: Sequence[str], entries: Sequence[str]) -> bool:
    """Is every route the rule (key_type, allowed_routes) lets through matched by one of `entries`?"""
    if allowed_routes and all(_entry_within(entry, entries) for entry in allowed_routes):
        return True
    group = KEY_TYPE_ROUTES.get(key_type)
    return group is not None and group in entries


def routes_within(new: tuple[str, Sequence[str]], old: tuple[str, Sequence[str]]) -> bool:
    """Does the rule `new` (key_type, allowed_routes) let through no route that `old` refuses?"""
    old_type, old_routes = old
    new_type, new_routes = new
    old_group = KEY_TYPE_ROUTES.get(old_type)
    if old_group is not None and not (new_type == old_type or _rule_within(new_type, new_routes, (old_group,))):
        return False
    return not old_routes or _rule_within(new_type, new_routes, old_routes)


def can_change_routes(
    actor: Actor, target: Target, *, new: tuple[str, Sequence[str]], old: tuple[str, Sequence[str]]
) -> Verdict:
    """Setting a key's key_type / allowed_routes is part of updating it (`key:update`, asked separately);
    but a key never widens itself: the key the request is made with may only narrow its own rule."""
    if actor.key_token is None or target.key_token != actor.key_token or routes_within(new, old):
        return ALLOW
    return deny(403, "A key may not widen its own key_type or allowed_routes; use a key that may update it.")


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
    from keys.authz import Allow

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


# --- building actors and targets from rows ----------------------------------------------------


def actor_for(user: Any | None, *, key: Any | None = None, is_master: bool = False) -> Actor:
    """Load the caller's memberships and team grants once (two queries) into an `Actor`."""
    from django.db.models import CharField, Q, Value

    from orgs.models import (
        MANAGE_TEAM,
        OrganizationMembership,
        TeamGroupObjectPermission,
        TeamMembership,
        TeamUserObjectPermission,
    )

    if user is None:
        return Actor(
            user_id=None,
            platform_role=None,
            is_master=is_master,
            key_team_id=str(key.team_id) if key is not None and key.team_id else None,
            key_token=key.token if key is not None else None,
        )
    org_roles = {
        str(org_id): role
        for org_id, role in OrganizationMembership.objects.filter(
            user=user, organization__deleted_at__isnull=True
        ).values_list("organization_id", "user_role")
    }
    # Memberships and guardian grants (to the user or one of their groups) in one UNION query; a grant
    # to manage a team confers the team admin's rights. Teams of soft-deleted organizations count for nothing.
    granted = Value(TeamRole.ADMIN.value, output_field=CharField())
    memberships = (
        TeamMembership.objects.filter(user=user)
        .exclude(team__organization__deleted_at__isnull=False)
        .annotate(grant=Value("", output_field=CharField()))
        .order_by()
        .values_list("team_id", "role", "grant", "team__organization_id")
    )
    grants = [
        model.objects.filter(who, permission__codename=MANAGE_TEAM)
        .exclude(content_object__organization__deleted_at__isnull=False)
        .annotate(team_role=granted, grant=granted)
        .order_by()
        .values_list("content_object_id", "team_role", "grant", "content_object__organization_id")
        for model, who in (
            (TeamUserObjectPermission, Q(user=user)),
            (TeamGroupObjectPermission, Q(group__user=user)),
        )
    ]
    team_roles: dict[str, str] = {}
    team_org_ids: dict[str, str | None] = {}
    granted_team_ids: set[str] = set()
    for team_id, role, grant, team_org_id in memberships.union(*grants, all=True):
        team_id = str(team_id)
        team_org_ids[team_id] = _s(team_org_id)
        if grant:
            granted_team_ids.add(team_id)
        if team_id not in team_roles or TEAM_ROLES[role].priority > TEAM_ROLES[team_roles[team_id]].priority:
            team_roles[team_id] = role
    return Actor(
        user_id=user.user_id,
        platform_role=PlatformRole.PROXY_ADMIN if is_master else user.user_role,
        is_system=bool(user.is_system),
        is_master=is_master,
        org_roles=org_roles,
        team_roles=team_roles,
        key_team_id=str(key.team_id) if key is not None and key.team_id else None,
        key_token=key.token if key is not None else None,
        user_pk=user.pk,
        granted_team_ids=frozenset(granted_team_ids),
        team_org_ids=team_org_ids,
    )


def _s(value: Any) -> str | None:
    return str(value) if value is not None else None


def key_target(key: Any) -> Target:
    """A key's facts; the key must be loaded with `select_related("team", "user")`."""
    team = key.team
    return Target(
        organization_id=_s(key.organization_id or (team.organization_id if team is not None else None)),
        team_id=_s(key.team_id),
        owner_user_id=key.user.user_id if key.user_id else None,
        member_permissions=tuple(team.member_permissions) if team is not None and team.member_permissions is not None else None,
        key_token=key.token,
    )


def new_key_target(
    *, owner_user_id: str | None, team: Any | None, organization_id: Any | None = None,
    owner_in_team: bool | None = None, owner: UserFacts | None = None,
) -> Target:
    """Where a key would be created: in a team, or as someone's personal key. `owner` carries the facts
    of an existing owner (`user_facts`), so the policy can judge whose key it would be."""
    if team is not None:
        return Target(
            organization_id=_s(team.organization_id),
            team_id=_s(team.team_id),
            owner_user_id=owner_user_id,
            member_permissions=tuple(team.member_permissions) if team.member_permissions is not None else None,
            owner_in_team=owner_in_team,
            owner=owner,
        )
    return Target(organization_id=_s(organization_id), owner_user_id=owner_user_id, owner=owner)


def user_facts(user: Any | None) -> UserFacts | None:
    """A user's platform role and memberships (two queries unless the memberships are prefetched with
    `team`), for `manages_user` and `can_add_member`."""
    if user is None or getattr(user, "pk", None) is None:
        return None
    cache = getattr(user, "_prefetched_objects_cache", {})
    if "organization_memberships" in cache:
        org_roles = tuple((str(m.organization_id), m.user_role) for m in user.organization_memberships.all())
    else:
        org_roles = tuple(
            (str(org), role) for org, role in user.organization_memberships.values_list("organization_id", "user_role")
        )
    team_rows = list(user.team_memberships.all()) if "team_memberships" in cache else None
    if team_rows is not None and all(m._state.fields_cache.get("team") is not None for m in team_rows):
        teams = tuple((str(m.team_id), _s(m.team.organization_id)) for m in team_rows)
    else:
        teams = tuple(
            (str(team), _s(org)) for team, org in user.team_memberships.values_list("team_id", "team__organization_id")
        )
    return UserFacts(
        user_id=user.user_id,
        platform_role=user.user_role,
        is_system=bool(user.is_system),
        org_roles=org_roles,
        teams=teams,
    )


def team_target(team: Any) -> Target:
    return Target(
        organization_id=_s(team.organization_id),
        team_id=_s(team.team_id),
        member_permissions=tuple(team.member_permissions) if team.member_permissions is not None else None,
        is_global=team.organization_id is None,
    )


def organization_target(organization: Any) -> Target:
    return Target(organization_id=_s(organization.pk))


def user_target(user: Any, *, new_platform_role: str | None = None) -> Target:
    """A user's facts, with the organizations and teams they belong to (two queries unless prefetched,
    with `team_memberships__team`)."""
    facts = user_facts(user)
    return Target(
        owner_user_id=user.user_id,
        user_org_ids=facts.org_ids,
        user_team_ids=tuple(team for team, _ in facts.teams),
        new_platform_role=new_platform_role,
        owner_platform_role=user.user_role,
        owner=facts,
    )


def access_group_target(group: Any) -> Target:
    return Target(organization_id=_s(group.organization_id), is_global=group.organization_id is None)


def bulk_job_target(job: Any) -> Target:
    # "system" marks a job no user started (the admin's or a command's): no user owns it.
    owner = job.requested_by if job.requested_by not in ("", "system") else None
    return Target(organization_id=_s(job.organization_id), owner_user_id=owner,
                  is_global=job.organization_id is None)
