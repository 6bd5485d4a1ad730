"""LiteLLM's rows → accessctl's values: one pure function per table, refusing what cannot be kept as it was.

Each mapper returns a `Mapped` (the values the accessctl row gets, keyed by how the row is read back, so a
re-run can compare them) or raises `Refused` naming why. Settings accessctl has no place for are dropped
with a note, except on keys where dropping one would let the key reach more than it did in LiteLLM (route
restrictions, object permissions): such a key is refused.
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

from accessctl.roles import (
    ORG_ROLES,
    PLATFORM_ROLES,
    TEAM_MEMBER_PERMISSIONS,
    TEAM_ROLES,
    OrgRole,
    PlatformRole,
)
from keys import crypto

from .values import (
    Mapped,
    Note,
    Refs,
    Refused,
    amount,
    an_id,
    created,
    duration,
    is_set,
    json_object,
    limit,
    note_object_permission,
    note_unsupported,
    per_model,
    restricting_permissions,
    string_list,
    text,
    when,
)

# Derived ids (budget copies) are uuid5 in this namespace: the same source row always maps to
# the same accessctl row, so a re-run finds what the last one wrote.
NAMESPACE = uuid.UUID("0b6a9d55-0d7e-4d1c-9a57-7c2f4f3a1e60")

BUDGET_TABLE = "LiteLLM_BudgetTable"
ORGANIZATION_TABLE = "LiteLLM_OrganizationTable"
USER_TABLE = "LiteLLM_UserTable"
TEAM_TABLE = "LiteLLM_TeamTable"
ORGANIZATION_MEMBERSHIP_TABLE = "LiteLLM_OrganizationMembership"
TEAM_MEMBERSHIP_TABLE = "LiteLLM_TeamMembership"
KEY_TABLE = "LiteLLM_VerificationToken"
ACCESS_GROUP_TABLE = "LiteLLM_AccessGroupTable"
OBJECT_PERMISSION_TABLE = "LiteLLM_ObjectPermissionTable"
MODEL_TABLE = "LiteLLM_ProxyModelTable"

BUDGET_VALUE_FIELDS = (
    "max_budget", "soft_budget", "tpm_limit", "rpm_limit", "max_parallel_requests", "model_max_budget",
    "budget_duration", "budget_reset_at",
)
# LiteLLM's spelling of one grantable route, and accessctl's.
PERMISSION_ALIASES = {"/key/{key_id}/regenerate": "/key/regenerate"}
# LiteLLM's user roles that are not platform roles here: what they become (SPEC §2 keeps org roles on
# the memberships).
PLATFORM_ROLE_ALIASES = {"org_admin": PlatformRole.INTERNAL_USER, "team": PlatformRole.INTERNAL_USER,
                         "customer": PlatformRole.INTERNAL_USER}

# Columns read from each table, and the ones accessctl has no place for (a note when a row sets one).
BUDGET_COLUMNS = ("budget_id", *BUDGET_VALUE_FIELDS, "tpd_limit", "allowed_models", "temp_budget_increase")
ORGANIZATION_COLUMNS = (
    "organization_id", "organization_alias", "budget_id", "metadata", "models", "spend", "model_spend",
    "object_permission_id", "created_at", "created_by",
)
USER_COLUMNS = (
    "user_id", "user_alias", "user_email", "user_role", "sso_user_id", "password", "models", "metadata",
    "max_budget", "spend", "model_spend", "model_max_budget", "tpm_limit", "rpm_limit", "max_parallel_requests",
    "budget_duration", "budget_reset_at", "created_at", "object_permission_id",
)
# Read as flags (whether a row sets them): accessctl has no place for them, the report names them.
USER_UNSUPPORTED = ("allowed_cache_controls", "policies")
TEAM_COLUMNS = (
    "team_id", "team_alias", "organization_id", "admins", "members", "members_with_roles", "metadata",
    "max_budget", "soft_budget", "spend", "models", "max_parallel_requests", "tpm_limit", "rpm_limit",
    "budget_duration", "budget_reset_at", "blocked", "created_at", "model_spend", "model_max_budget",
    "team_member_permissions", "access_group_ids", "object_permission_id",
)
TEAM_UNSUPPORTED = ("tpd_limit", "router_settings", "policies", "default_team_member_models", "budget_limits", "model_id")
ORGANIZATION_MEMBERSHIP_COLUMNS = ("user_id", "organization_id", "user_role", "spend", "budget_id", "created_at")
TEAM_MEMBERSHIP_COLUMNS = ("user_id", "team_id", "spend", "budget_id")
ACCESS_GROUP_COLUMNS = (
    "access_group_id", "access_group_name", "description", "access_model_names", "access_mcp_server_ids",
    "access_agent_ids", "created_at", "created_by",
)
ACCESS_GROUP_UNSUPPORTED = ("access_skill_names", "mcp_tool_permissions")
KEY_COLUMNS = (
    "token", "key_name", "key_alias", "spend", "expires", "models", "user_id", "team_id",
    "max_parallel_requests", "metadata", "blocked", "tpm_limit", "rpm_limit", "max_budget",
    "budget_duration", "budget_reset_at", "allowed_routes", "key_type", "model_spend",
    "model_max_budget", "budget_id", "organization_id", "object_permission_id", "created_at", "created_by",
    "updated_by", "auto_rotate", "rotation_interval", "last_rotation_at", "key_rotation_at", "access_group_ids",
)
KEY_UNSUPPORTED = (
    "aliases", "config", "allowed_cache_controls", "policies", "router_settings", "tpd_limit", "project_id",
    "agent_id", "budget_limits",
)
MODEL_COLUMNS = ("model_id", "model_name", "blocked")


# --- budgets --------------------------------------------------------------------------------------

def budget_uuid(budget_id: str, owner: str, refs: Refs) -> uuid.UUID:
    """The accessctl budget row for `owner`'s use of LiteLLM budget `budget_id`. accessctl gives each
    organization and membership a budget row of its own, so LiteLLM's id is kept when one owner uses the
    budget (and it is a UUID); a shared budget is copied per owner under a derived id."""
    if refs.budget_owners[budget_id] <= 1:
        try:
            return uuid.UUID(budget_id)
        except ValueError:
            pass
    return uuid.uuid5(NAMESPACE, f"{BUDGET_TABLE}:{budget_id}:{owner}")


def budget_values(row: dict[str, Any], note: Note) -> dict[str, Any]:
    """A LiteLLM budget row's caps, as accessctl's budget fields."""
    note_unsupported(row, ("tpd_limit", "temp_budget_increase"), note)
    if is_set(row.get("allowed_models")):
        note("the budget's allowed_models (a member's model scope) not kept")
    return {
        "max_budget": amount(row.get("max_budget"), "max_budget"),
        "soft_budget": amount(row.get("soft_budget"), "soft_budget"),
        "tpm_limit": limit(row.get("tpm_limit"), "tpm_limit"),
        "rpm_limit": limit(row.get("rpm_limit"), "rpm_limit"),
        "max_parallel_requests": limit(row.get("max_parallel_requests"), "max_parallel_requests"),
        "model_max_budget": per_model(row.get("model_max_budget"), "model_max_budget", note, caps=True),
        "budget_duration": duration(row.get("budget_duration"), "budget_duration", note),
        "budget_reset_at": when(row.get("budget_reset_at")),
    }


EMPTY_BUDGET = dict.fromkeys(BUDGET_VALUE_FIELDS) | {"model_max_budget": {}}


def _owned_budget(budget_id: Any, owner: str, refs: Refs, note: Note, *, required: bool) -> dict[str, Any]:
    """`budget_id` plus `budget__<field>` values of an organization's or membership's budget row."""
    if not budget_id and not required:
        return {"budget_id": None, **{f"budget__{k}": None for k in BUDGET_VALUE_FIELDS}}
    row = refs.budgets.get(budget_id) if budget_id else None
    if row is None:
        note("budget_id names no budget: an empty budget is used")
        values = dict(EMPTY_BUDGET)
        budget = uuid.uuid5(NAMESPACE, f"{BUDGET_TABLE}:{budget_id or ''}:{owner}")
    else:
        values = budget_values(row, note)
        budget = budget_uuid(budget_id, owner, refs)
    return {"budget_id": str(budget), **{f"budget__{k}": v for k, v in values.items()}}


# --- the tables --------------------------------------------------------------------------------------

def map_organization(row: dict[str, Any], refs: Refs, note: Note) -> Mapped:
    org_id = an_id(row["organization_id"], "organization_id")
    alias = text(row.get("organization_alias"), "organization_alias", 255, note)
    if alias is None or not alias.strip():
        note("organization_alias is empty: the organization_id is used")
        alias = org_id
    note_object_permission(row, refs, note)
    values = {
        "organization_alias": alias,
        "models": string_list(row.get("models")),
        "metadata": json_object(row.get("metadata"), "metadata", note),
        "spend": amount(row.get("spend"), "spend", default=0.0),
        "model_spend": per_model(row.get("model_spend"), "model_spend", note, caps=False),
        **created(row),
        "created_by": text(row.get("created_by"), "created_by", 255, note, default=""),
        **_owned_budget(row.get("budget_id"), f"organization:{org_id}", refs, note, required=True),
    }
    return Mapped(org_id, org_id, org_id, values)


def platform_role(value: Any, note: Note) -> str:
    if value in (None, ""):
        return PlatformRole.INTERNAL_USER
    if value in PLATFORM_ROLES:
        return value
    if value in PLATFORM_ROLE_ALIASES:
        note(f"user_role {value} is not a platform role here: internal_user (organization roles stay on the memberships)")
        return PLATFORM_ROLE_ALIASES[value]
    raise Refused("user_role is not a LiteLLM role accessctl knows", f"user_role={value!r}")


def map_user(row: dict[str, Any], refs: Refs, note: Note) -> Mapped:
    user_id = an_id(row["user_id"], "user_id")
    note_unsupported(row, USER_UNSUPPORTED, note)
    note_object_permission(row, refs, note)
    if row.get("password"):
        note("password not kept (LiteLLM's hash is not Django's): set a new one, or use single sign-on")
    values = {
        "user_email": text(row.get("user_email"), "user_email", 254, note),
        "user_alias": text(row.get("user_alias"), "user_alias", 255, note),
        "user_role": platform_role(row.get("user_role"), note),
        "sso_user_id": text(row.get("sso_user_id"), "sso_user_id", 255, note),
        "models": string_list(row.get("models")),
        "metadata": json_object(row.get("metadata"), "metadata", note),
        "max_budget": amount(row.get("max_budget"), "max_budget"),
        "soft_budget": None,
        "tpm_limit": limit(row.get("tpm_limit"), "tpm_limit"),
        "rpm_limit": limit(row.get("rpm_limit"), "rpm_limit"),
        "max_parallel_requests": limit(row.get("max_parallel_requests"), "max_parallel_requests"),
        "model_max_budget": per_model(row.get("model_max_budget"), "model_max_budget", note, caps=True),
        "budget_duration": duration(row.get("budget_duration"), "budget_duration", note),
        "budget_reset_at": when(row.get("budget_reset_at")),
        "spend": amount(row.get("spend"), "spend", default=0.0),
        "model_spend": per_model(row.get("model_spend"), "model_spend", note, caps=False),
        **created(row),
    }
    return Mapped(user_id, user_id, user_id, values)


def map_access_group(row: dict[str, Any], refs: Refs, note: Note) -> Mapped:
    group_id = an_id(row["access_group_id"], "access_group_id")
    name = row.get("access_group_name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise Refused("access_group_name is empty or longer than 255 characters", f"access_group_name={name!r}")
    note_unsupported(row, ACCESS_GROUP_UNSUPPORTED, note)
    values = {
        "access_group_name": name,
        "description": row.get("description") or "",
        "organization_id": None,  # LiteLLM's groups are global
        "access_model_names": string_list(row.get("access_model_names")),
        "access_mcp_server_ids": string_list(row.get("access_mcp_server_ids")),
        "access_agent_ids": string_list(row.get("access_agent_ids")),
        **created(row),
        "created_by": text(row.get("created_by"), "created_by", 255, note, default=""),
    }
    return Mapped(group_id, group_id, name, values)


def access_group_ids(value: Any, refs: Refs) -> list[str]:
    """A team's or key's access groups. A group the import does not have is refused rather than dropped:
    without it the row would fall back to wider rules (SPEC §5)."""
    ids = string_list(value)
    missing = [g for g in ids if g not in refs.access_groups]
    if missing:
        raise Refused("names an access group that is not in the source (or was not imported)",
                      f"access_group_ids={missing}")
    return sorted(ids)


def member_permissions(value: Any, note: Note) -> list[str]:
    out: list[str] = []
    for route in string_list(value):
        route = PERMISSION_ALIASES.get(route, route)
        if route in TEAM_MEMBER_PERMISSIONS:
            out.append(route)
        else:
            note(f"team_member_permissions: {route} is not a permission accessctl grants: dropped")
    return list(dict.fromkeys(out))


def map_team(row: dict[str, Any], refs: Refs, note: Note) -> Mapped:
    team_id = an_id(row["team_id"], "team_id")
    organization_id = row.get("organization_id") or None
    if organization_id is not None and organization_id not in refs.organizations:
        raise Refused("its organization is not in the source (or was not imported)", f"organization_id={organization_id}")
    note_unsupported(row, TEAM_UNSUPPORTED, note)
    note_object_permission(row, refs, note)
    values = {
        "team_alias": text(row.get("team_alias"), "team_alias", 255, note),
        "organization_id": organization_id,
        "models": string_list(row.get("models")),
        "member_permissions": member_permissions(row.get("team_member_permissions"), note),
        "blocked": bool(row.get("blocked")),
        "metadata": json_object(row.get("metadata"), "metadata", note),
        "max_budget": amount(row.get("max_budget"), "max_budget"),
        "soft_budget": amount(row.get("soft_budget"), "soft_budget"),
        "tpm_limit": limit(row.get("tpm_limit"), "tpm_limit"),
        "rpm_limit": limit(row.get("rpm_limit"), "rpm_limit"),
        "max_parallel_requests": limit(row.get("max_parallel_requests"), "max_parallel_requests"),
        "model_max_budget": per_model(row.get("model_max_budget"), "model_max_budget", note, caps=True),
        "budget_duration": duration(row.get("budget_duration"), "budget_duration", note),
        "budget_reset_at": when(row.get("budget_reset_at")),
        "spend": amount(row.get("spend"), "spend", default=0.0),
        "model_spend": per_model(row.get("model_spend"), "model_spend", note, caps=False),
        "legacy_admins": string_list(row.get("admins")),
        "legacy_members": string_list(row.get("members")),
        **created(row),
        "access_group_ids": access_group_ids(row.get("access_group_ids"), refs),
    }
    return Mapped(team_id, team_id, row.get("team_alias") or team_id, values)


def team_members(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of a team's `members_with_roles` (LiteLLM stores `{}` for a team without members)."""
    members = row.get("members_with_roles")
    if not isinstance(members, list):
        return []
    return [m for m in members if isinstance(m, dict)]


def membership_id(parent_id: str, user_id: str) -> str:
    """The id of a membership in provenance: `["team_or_org_id", "user_id"]` (ids may hold any printable
    character, so a separator could be ambiguous; a JSON pair is not)."""
    return json.dumps([parent_id, user_id], ensure_ascii=False)


def map_team_member(
    team_id: str, entry: dict[str, Any], membership: dict[str, Any] | None, refs: Refs, note: Note
) -> Mapped:
    """One member of a team: the role from `members_with_roles`, the spend and budget from
    `LiteLLM_TeamMembership`."""
    user_id = entry.get("user_id")
    if not user_id and entry.get("user_email"):
        user_id = refs.user_by_email.get(entry["user_email"])
        if user_id is None:
            raise Refused("names a member by an e-mail no single user has", f"user_email={entry['user_email']!r}")
    if not user_id or user_id not in refs.users:
        raise Refused("names a user that is not in the source (or was not imported)", f"user_id={user_id!r}")
    role = entry.get("role") or "user"
    if role not in TEAM_ROLES:
        raise Refused("role is not a team role (admin, user)", f"role={role!r}")
    membership = membership or {}
    values = {
        "role": role,
        "spend": amount(membership.get("spend"), "spend", default=0.0),
        **_owned_budget(membership.get("budget_id"), f"team:{team_id}:{user_id}", refs, note, required=False),
    }
    source_id = membership_id(team_id, user_id)
    return Mapped(source_id, source_id, f"{team_id} / {user_id}", values)


def map_organization_member(row: dict[str, Any], refs: Refs, note: Note) -> Mapped:
    org_id, user_id = row.get("organization_id"), row.get("user_id")
    source_id, label = membership_id(str(org_id), str(user_id)), f"{org_id} / {user_id}"
    if org_id not in refs.organizations:
        raise Refused("its organization is not in the source (or was not imported)", f"organization_id={org_id!r}")
    if user_id not in refs.users:
        raise Refused("names a user that is not in the source (or was not imported)", f"user_id={user_id!r}")
    role = row.get("user_role") or OrgRole.INTERNAL_USER
    if role not in ORG_ROLES:
        raise Refused("user_role is not an organization role (org_admin, internal_user, internal_user_viewer)",
                      f"user_role={role!r}")
    values = {
        "user_role": role,
        "spend": amount(row.get("spend"), "spend", default=0.0),
        **created(row),
        **_owned_budget(row.get("budget_id"), f"organization:{org_id}:{user_id}", refs, note, required=False),
    }
    return Mapped(source_id, source_id, label, values)


def key_row_id(token: str) -> str:
    """The accessctl row id of an imported key: the first 128 bits of its LiteLLM token (public, like the
    token), so it stays the same after the key is rotated here and a re-run can tell it was rotated."""
    return str(uuid.UUID(hex=token[:32]))


_TOKEN = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f]")  # what keys.services.validate_key_alias refuses in an alias


def is_token(value: Any) -> bool:
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def map_key(row: dict[str, Any], refs: Refs, note: Note) -> Mapped:
    """A virtual key. Its `token` is kept as it is: LiteLLM stores SHA-256 hex of the `sk-` secret, exactly
    what accessctl stores (`keys.crypto.hash_secret`), so the secret keeps working unchanged."""
    token = row.get("token")
    if not is_token(token):
        raise Refused("token is not a SHA-256 hex digest (LiteLLM hashes every sk- key it stores)",
                      f"token={str(token)[:12]}…")
    if row.get("key_type") not in (None, "", "default") or row.get("allowed_routes"):
        raise Refused(
            "key_type / allowed_routes limit the key to some routes; accessctl keys are not route-limited, "
            "so importing it would widen it",
            f"key_type={row.get('key_type')!r} allowed_routes={row.get('allowed_routes')!r}",
        )
    restricting = restricting_permissions(row.get("object_permission_id"), refs)
    if restricting:
        raise Refused(
            "its object permission (MCP servers, agents, …) has no per-key equivalent here; importing it would "
            "widen it (grant them through an access group)",
            f"object_permission: {', '.join(restricting)}",
        )
    team_id = row.get("team_id") or None
    user_id = row.get("user_id") or None
    if team_id is not None and team_id not in refs.team_organization:
        raise Refused("its team is not in the source (or was not imported)", f"team_id={team_id}")
    if user_id is not None and user_id not in refs.users:
        raise Refused("its user is not in the source (or was not imported)", f"user_id={user_id}")
    organization_id = row.get("organization_id") or None
    if team_id is not None:
        if organization_id is not None and organization_id != refs.team_organization[team_id]:
            note("organization_id differs from its team's: the team's is kept")
        organization_id = refs.team_organization[team_id]
    elif organization_id is not None and organization_id not in refs.organizations:
        raise Refused("its organization is not in the source (or was not imported)", f"organization_id={organization_id}")
    note_unsupported(row, KEY_UNSUPPORTED, note)
    # LiteLLM applies the key's budget row (a "budget tier") over the key's own caps; per-model caps only
    # when the key has none of its own.
    caps = {
        "max_budget": amount(row.get("max_budget"), "max_budget"),
        "soft_budget": None,
        "tpm_limit": limit(row.get("tpm_limit"), "tpm_limit"),
        "rpm_limit": limit(row.get("rpm_limit"), "rpm_limit"),
        "max_parallel_requests": limit(row.get("max_parallel_requests"), "max_parallel_requests"),
        "model_max_budget": per_model(row.get("model_max_budget"), "model_max_budget", note, caps=True),
        "budget_duration": duration(row.get("budget_duration"), "budget_duration", note),
        "budget_reset_at": when(row.get("budget_reset_at")),
    }
    if row.get("budget_id"):
        tier = refs.budgets.get(row["budget_id"])
        if tier is None:
            note("budget_id names no budget: the key's own caps are kept")
        else:
            for name, value in budget_values(tier, note).items():
                if name == "model_max_budget":
                    caps[name] = caps[name] or value
                elif value is not None and name not in ("budget_duration", "budget_reset_at"):
                    caps[name] = value
    rotation_interval = duration(row.get("rotation_interval"), "rotation_interval", note)
    alias = row.get("key_alias") or None
    if alias is not None and (len(alias) > 255 or _CONTROL.search(alias) or ".." in alias):
        note("key_alias has control characters, '..' or more than 255 characters: imported without alias")
        alias = None
    values = {
        "token": token,
        "key_name": (row.get("key_name") or crypto.mask(None))[:32],
        "key_alias": alias,
        "user__user_id": user_id,
        "team_id": team_id,
        "organization_id": organization_id,
        "models": string_list(row.get("models")),
        "metadata": json_object(row.get("metadata"), "metadata", note),
        "expires": when(row.get("expires")),
        "blocked": bool(row.get("blocked")),
        **caps,
        "spend": amount(row.get("spend"), "spend", default=0.0),
        "model_spend": per_model(row.get("model_spend"), "model_spend", note, caps=False),
        **created(row),
        "created_by": text(row.get("created_by"), "created_by", 255, note, default=""),
        "auto_rotate": bool(row.get("auto_rotate")) and rotation_interval is not None,
        "rotation_interval": rotation_interval,
        "rotation_due_at": when(row.get("key_rotation_at")),
        "last_rotated_at": when(row.get("last_rotation_at")),
        "access_group_ids": access_group_ids(row.get("access_group_ids"), refs),
    }
    label = f"{token[:12]}… ({alias or values['key_name']})"
    return Mapped(token, key_row_id(token), label, values)


def provider_of(model_name: str) -> str:
    """The provider a LiteLLM model name starts with (`openai/gpt-4o` → openai); LiteLLM encrypts
    `litellm_params`, so the name is what can be read."""
    return model_name.split("/", 1)[0] if "/" in model_name else ""


def map_catalog_model(model_name: str, blocked: Iterable[bool]) -> Mapped:
    """One catalog entry per model name (LiteLLM may serve a name from several deployments): active while
    one deployment is not blocked."""
    if not isinstance(model_name, str) or not model_name.strip() or len(model_name) > 255:
        raise Refused("model_name is empty or longer than 255 characters", f"model_name={model_name!r}")
    values = {"provider": provider_of(model_name)[:64], "active": not all(blocked)}
    return Mapped(model_name, model_name, model_name, values)
