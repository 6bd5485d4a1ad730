"""What a key may reach (SPEC §5), as pure functions over loaded rows.

`build_snapshot(rows)` turns a key and its team, organization, user and access groups into a
`KeySnapshot`: plain, picklable data that the hot path caches. `authorize(snapshot, ...)` and
`allowed_names(snapshot, resource, catalog)` decide from it alone, so the check and the listing never disagree.
"""
from __future__ import annotations

import datetime
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from accessctl.allow import EVERYONE, NOTHING, Allow
from accessctl.policy import KEY_TYPE_DEFAULT, may_call_route, refused_gateway_routes

ALL_TEAM_MODELS = "all-team-models"
NO_DEFAULT_MODELS = "no-default-models"

RESOURCES = ("models", "mcp_servers", "agents")


@dataclass(frozen=True)
class GroupRow:
    """The parts of an access group the resolver needs."""

    access_group_id: str
    access_group_name: str
    access_model_names: tuple[str, ...] = ()
    access_mcp_server_ids: tuple[str, ...] = ()
    access_agent_ids: tuple[str, ...] = ()

    def entries(self, resource: str) -> tuple[str, ...]:
        return {
            "models": self.access_model_names,
            "mcp_servers": self.access_mcp_server_ids,
            "agents": self.access_agent_ids,
        }[resource]


@dataclass(frozen=True)
class BudgetLine:
    """A budget on the key's path: spend so far against the caps."""

    scope: str
    spend: float
    max_budget: float | None
    model_spend: Mapping[str, float] = field(default_factory=dict)
    model_max_budget: Mapping[str, float] = field(default_factory=dict)

    def exhausted_for(self, model: str | None) -> bool:
        if self.max_budget is not None and self.spend >= self.max_budget:
            return True
        if model is not None and model in self.model_max_budget:
            cap = self.model_max_budget[model]
            if cap is not None and float(self.model_spend.get(model, 0.0)) >= float(cap):
                return True
        return False


@dataclass(frozen=True)
class Level:
    """One level of the path (key, team, organization, user) and what it lets through per resource."""

    scope: str
    models: Allow
    mcp_servers: Allow
    agents: Allow

    def allow(self, resource: str) -> Allow:
        return getattr(self, resource)


@dataclass(frozen=True)
class KeySnapshot:
    """Everything the check needs about one key, with no reference to the database."""

    token: str
    key_alias: str | None
    user_id: str | None
    team_id: str | None
    organization_id: str | None
    blocked: bool
    expires: datetime.datetime | None
    user_active: bool
    team_blocked: bool
    organization_deleted: bool
    levels: tuple[Level, ...]
    budgets: tuple[BudgetLine, ...]
    limits: Mapping[str, Any]
    # May report usage (a gateway's system user); read by POST /api/v1/usage, never by the check. Defaults
    # keep snapshots cached by an older release readable (they answer "no" until reloaded).
    user_is_system: bool = False
    # The secret before the last rotation, accepted until `previous_until` (the rotation's grace period).
    # The same snapshot is cached under both tokens and invalidated under both.
    previous_token: str | None = None
    previous_until: datetime.datetime | None = None
    # The gateway routes this key may not call (its key_type / allowed_routes, SPEC §2), decided by the
    # policy when the snapshot is built: the warm check pays one lookup in a set that is empty for most
    # keys. Snapshots cached by an older release lack these and read the defaults: keys then had no
    # route restriction (the fields were refused).
    refused_routes: frozenset[str] = frozenset()
    key_type: str = KEY_TYPE_DEFAULT
    allowed_routes: tuple[str, ...] = ()

    def route_decision(self, path: str, method: str) -> Decision:
        """ALLOWED, or the refusal (in the policy's words) of a gateway route this key may not call."""
        if not self.refused_routes or path not in self.refused_routes:
            return ALLOWED
        verdict = may_call_route(self.key_type, self.allowed_routes, path, method)
        return Decision(False, verdict.type, verdict.message, None)

    def accepts(self, token: str, now_fn: Any) -> bool:
        """Whether `token` (a hash) is this key's secret, or its old one inside the grace period
        (constant-time; the clock is read only for an old secret)."""
        if hmac.compare_digest(self.token, token):
            return True
        return (
            self.previous_token is not None
            and self.previous_until is not None
            and hmac.compare_digest(self.previous_token, token)
            and self.previous_until > now_fn()
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    type: str | None = None
    message: str = ""
    param: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Decision(True)

_DENIAL_TYPE = {
    ("models", "key"): "key_model_access_denied",
    ("models", "team"): "team_model_access_denied",
    ("models", "organization"): "org_model_access_denied",
    ("models", "user"): "user_model_access_denied",
    ("mcp_servers", "key"): "key_mcp_server_access_denied",
    ("mcp_servers", "team"): "team_mcp_server_access_denied",
    ("mcp_servers", "organization"): "org_mcp_server_access_denied",
    ("mcp_servers", "user"): "user_mcp_server_access_denied",
    ("agents", "key"): "key_agent_access_denied",
    ("agents", "team"): "team_agent_access_denied",
    ("agents", "organization"): "org_agent_access_denied",
    ("agents", "user"): "user_agent_access_denied",
}
_PARAM = {"models": "model", "mcp_servers": "mcp_server_id", "agents": "agent_id"}
_NOUN = {"models": "model", "mcp_servers": "MCP server", "agents": "agent"}
_LEVEL_NOUN = {"key": "Key", "team": "Team", "organization": "Organization", "user": "User"}


@dataclass(frozen=True)
class KeyRows:
    """The loaded rows a snapshot is built from (see `keys.selectors.key_rows`)."""

    key: Any
    team: Any | None
    organization: Any | None
    organization_budget: Any | None
    user: Any | None
    key_groups: Sequence[GroupRow]
    team_groups: Sequence[GroupRow]
    groups_by_name: Mapping[str, GroupRow]  # lower-cased name → group visible to the key
    # The same, global groups only: what may stand in for an entry of a ceiling an organization admin
    # cannot widen (the organization's and the user's `models`), so an org-owned group named like such an
    # entry never widens it.
    global_groups_by_name: Mapping[str, GroupRow] = field(default_factory=dict)


def _expand(entries: Iterable[str], groups_by_name: Mapping[str, GroupRow], resource: str) -> tuple[list[str], bool]:
    """Entries of a `models` list for one resource: group names expand; returns (entries, named_a_group)."""
    out: list[str] = []
    named_group = False
    for entry in entries:
        group = groups_by_name.get(entry.lower())
        if group is not None:
            named_group = True
            out.extend(group.entries(resource))
        elif resource == "models" and entry not in (NO_DEFAULT_MODELS, ALL_TEAM_MODELS):
            out.append(entry)
    return out, named_group


def _union(groups: Iterable[GroupRow], resource: str) -> Allow:
    return Allow.of(_union_entries(groups, resource))


def _listed(models: Sequence[str] | None) -> list[str]:
    """A `models` list without the sentinel that only means "no direct access"."""
    return [m for m in (models or []) if m != NO_DEFAULT_MODELS]


def key_level(rows: KeyRows, resource: str) -> Allow:
    """SPEC §5 steps 1–4 for the key itself."""
    key = rows.key
    explicit = _listed(key.models)
    if resource == "models" and explicit:
        if ALL_TEAM_MODELS in explicit and rows.team is not None:
            return EVERYONE  # "whatever the team has": the team level decides
        entries, _ = _expand(explicit, rows.groups_by_name, resource)
        if ALL_TEAM_MODELS in explicit and not entries:
            return EVERYONE
        return Allow.of(entries)
    if resource != "models":
        named_entries, named_group = _expand(explicit, rows.groups_by_name, resource)
        if rows.key_groups or named_group:
            return Allow.of([*named_entries, *_union_entries(rows.key_groups, resource)])
        if NO_DEFAULT_MODELS in (key.models or ()):
            return NOTHING  # only access groups grant, for every resource
        return EVERYONE
    if rows.key_groups:
        # Never widened to the team's models (LiteLLM #23850).
        return _union(rows.key_groups, resource)
    if NO_DEFAULT_MODELS in (key.models or ()):
        return NOTHING  # "no direct access": only access groups grant; never the team's or owner's models
    if rows.team is not None:
        return EVERYONE  # the team level decides
    user_models = _listed(rows.user.models) if rows.user is not None else []
    if user_models:
        entries, _ = _expand(user_models, rows.global_groups_by_name, resource)
        return Allow.of(entries)
    return EVERYONE


def _union_entries(groups: Iterable[GroupRow], resource: str) -> list[str]:
    entries: list[str] = []
    for group in groups:
        entries.extend(group.entries(resource))
    return entries


def team_level(rows: KeyRows, resource: str) -> Allow:
    """The team's effective models: its `models`, else its access groups, else (org level) everything."""
    team = rows.team
    explicit = _listed(team.models)
    if resource == "models" and explicit:
        entries, _ = _expand(explicit, rows.groups_by_name, resource)
        return Allow.of(entries)
    if resource != "models":
        named_entries, named_group = _expand(explicit, rows.groups_by_name, resource)
        if rows.team_groups or named_group:
            return Allow.of([*named_entries, *_union_entries(rows.team_groups, resource)])
        if NO_DEFAULT_MODELS in (team.models or ()):
            return NOTHING  # only access groups grant, for every resource
        return EVERYONE
    if rows.team_groups:
        return _union(rows.team_groups, resource)
    if NO_DEFAULT_MODELS in (team.models or ()):
        return NOTHING  # "no direct access": only the team's access groups grant
    return EVERYONE


def organization_level(rows: KeyRows, resource: str) -> Allow:
    if resource != "models":
        return EVERYONE
    explicit = _listed(rows.organization.models)
    if not explicit:
        return NOTHING if NO_DEFAULT_MODELS in (rows.organization.models or ()) else EVERYONE
    entries, _ = _expand(explicit, rows.global_groups_by_name, resource)
    return Allow.of(entries)


def user_level(rows: KeyRows, resource: str) -> Allow:
    """A personal key never exceeds its owner's models."""
    if resource != "models" or rows.user is None:
        return EVERYONE
    explicit = _listed(rows.user.models)
    if not explicit:
        # "no-default-models": the user reaches models only through teams, never on personal keys.
        return NOTHING if NO_DEFAULT_MODELS in (rows.user.models or ()) else EVERYONE
    entries, _ = _expand(explicit, rows.global_groups_by_name, resource)
    return Allow.of(entries)


def _level(scope: str, fn) -> Level:
    return Level(scope, *(fn(resource) for resource in RESOURCES))


def _budget_line(scope: str, row: Any, budget_row: Any | None = None) -> BudgetLine:
    caps = budget_row if budget_row is not None else row
    return BudgetLine(
        scope=scope,
        spend=float(row.spend or 0.0),
        max_budget=caps.max_budget,
        model_spend=dict(row.model_spend or {}),
        model_max_budget=dict(caps.model_max_budget or {}),
    )


def build_snapshot(rows: KeyRows) -> KeySnapshot:
    """Turn the loaded rows of one key into the decision snapshot."""
    key, team, org, user = rows.key, rows.team, rows.organization, rows.user
    key_type = getattr(key, "key_type", None) or KEY_TYPE_DEFAULT
    allowed_routes = tuple(getattr(key, "allowed_routes", None) or ())
    levels = [_level("key", lambda r: key_level(rows, r))]
    budgets = [_budget_line("key", key)]
    if team is not None:
        levels.append(_level("team", lambda r: team_level(rows, r)))
        budgets.append(_budget_line("team", team))
    if org is not None:
        levels.append(_level("organization", lambda r: organization_level(rows, r)))
        budgets.append(_budget_line("organization", org, rows.organization_budget))
    if user is not None:
        if team is None:
            levels.append(_level("user", lambda r: user_level(rows, r)))
        budgets.append(_budget_line("user", user))
    return KeySnapshot(
        token=key.token,
        key_alias=key.key_alias,
        user_id=user.user_id if user is not None else None,
        team_id=str(team.team_id) if team is not None else None,
        organization_id=str(org.organization_id) if org is not None else None,
        blocked=bool(key.blocked),
        expires=key.expires,
        user_active=user.is_active if user is not None else True,
        team_blocked=bool(team.blocked) if team is not None else False,
        organization_deleted=org is not None and org.deleted_at is not None,
        levels=tuple(levels),
        budgets=tuple(budgets),
        user_is_system=bool(getattr(user, "is_system", False)),
        limits=gateway_limits(rows),
        previous_token=getattr(key, "previous_token", None),
        previous_until=getattr(key, "previous_token_expires", None),
        refused_routes=refused_gateway_routes(key_type, allowed_routes),
        key_type=key_type,
        allowed_routes=allowed_routes,
    )


def _level_limits(row: Any, caps: Any | None = None) -> dict[str, Any]:
    """What a gateway's own limiters enforce at one level: rate limits, then budget caps against spend."""
    caps = caps if caps is not None else row  # an organization's caps live on its budget row
    return {
        "tpm_limit": caps.tpm_limit,
        "rpm_limit": caps.rpm_limit,
        "max_parallel_requests": caps.max_parallel_requests,
        "max_budget": caps.max_budget,
        "soft_budget": caps.soft_budget,
        "spend": float(row.spend or 0.0),
        "budget_duration": caps.budget_duration,
        "budget_reset_at": caps.budget_reset_at.isoformat() if caps.budget_reset_at else None,
    }


def gateway_limits(rows: KeyRows) -> dict[str, Any]:
    """The key's limits and budgets, with its team's, organization's and user's, as the check returns them
    so that a gateway (LiteLLM's limiters) enforces rate limits and shows budgets without asking again."""
    key, team, org, user = rows.key, rows.team, rows.organization, rows.user
    limits = _level_limits(key)
    limits["model_max_budget"] = dict(key.model_max_budget or {})
    limits["model_spend"] = dict(key.model_spend or {})
    limits["team"] = {"team_alias": team.team_alias, **_level_limits(team)} if team is not None else None
    limits["organization"] = (
        {"organization_alias": org.organization_alias, **_level_limits(org, rows.organization_budget)}
        if org is not None
        else None
    )
    limits["user"] = {"user_email": user.user_email, **_level_limits(user)} if user is not None else None
    return limits


def status_decision(snapshot: KeySnapshot, now: datetime.datetime) -> Decision:
    """Whether the key is usable at all, before any resource is considered."""
    if snapshot.blocked:
        return Decision(False, "key_blocked", "Key is blocked.", None)
    if snapshot.expires is not None and snapshot.expires <= now:
        return Decision(False, "expired_key", "Key has expired.", None)
    if not snapshot.user_active:
        return Decision(False, "user_blocked", "The key's user is deactivated.", None)
    if snapshot.organization_deleted:
        return Decision(False, "organization_deleted", "The key's organization is deleted.", None)
    if snapshot.team_blocked:
        return Decision(False, "team_blocked", "The key's team is blocked.", None)
    return ALLOWED


def authorize(
    snapshot: KeySnapshot,
    *,
    now: datetime.datetime,
    model: str | None = None,
    mcp_server_id: str | None = None,
    agent_id: str | None = None,
) -> Decision:
    """May this key call this model (or MCP server, or agent) now? Every denial says why in `type`."""
    status = status_decision(snapshot, now)
    if not status:
        return status
    for resource, name in (("models", model), ("mcp_servers", mcp_server_id), ("agents", agent_id)):
        if name is None:
            continue
        for level in snapshot.levels:
            if not level.allow(resource).matches(name):
                return Decision(
                    False,
                    _DENIAL_TYPE[(resource, level.scope)],
                    f"{_LEVEL_NOUN[level.scope]} not allowed to access {_NOUN[resource]} {name!r}.",
                    _PARAM[resource],
                )
    for line in snapshot.budgets:
        if line.exhausted_for(model):
            return Decision(
                False,
                "budget_exceeded",
                f"Budget exceeded on the {line.scope}: spend {line.spend:g} of {line.max_budget}.",
                None,
            )
    return ALLOWED


def allowed_names(snapshot: KeySnapshot, resource: str, catalog: Iterable[str]) -> list[str]:
    """What a key may reach, as listed by `/v1/models`: "everything" and patterns expand to the active
    catalog; explicit names are listed as they are. Filtered by the same levels as `authorize`.
    """
    candidates: set[str] = set(catalog)
    for level in snapshot.levels:
        candidates.update(level.allow(resource).names)
    return sorted(
        name for name in candidates if all(level.allow(resource).matches(name) for level in snapshot.levels)
    )
