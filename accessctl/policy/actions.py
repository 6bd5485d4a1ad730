"""The actions the policy knows, and which fields of a change need which further action."""
from __future__ import annotations

from collections.abc import Iterable

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
