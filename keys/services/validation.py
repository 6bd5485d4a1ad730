"""The key fields the services write, and their validation: budgets, durations, models, key_type and
allowed_routes, aliases per tenant, rotation settings."""
from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone

from accessctl import policy
from accessctl.budgets import BUDGET_FIELDS, SPEND_FIELDS
from accessctl.durations import DurationError, duration_delta
from accessctl.errors import InvalidInput
from orgs.audit import Affects
from orgs.models import User

from ..models import VirtualKey

EDITABLE_FIELDS = (
    "key_alias",
    "models",
    "metadata",
    "expires",
    "blocked",
    "user",
    "team",
    "organization",
    "auto_rotate",
    "rotation_interval",
    "key_type",
    "allowed_routes",
    *BUDGET_FIELDS,
    *SPEND_FIELDS,
)
AUDITED_FIELDS = ("token", "key_name", *EDITABLE_FIELDS, "access_group_ids")




def _label(actor: User | None) -> str:
    return actor.user_id if actor is not None else "system"


# The longest grace period a rotation may give the old secret (documented in the README and the API
# schema): a leaked secret must not outlive its rotation by more than this.
MAX_GRACE_PERIOD = datetime.timedelta(days=7)
MAX_GRACE_PERIOD_TEXT = "7d"


def _key_affects(key: VirtualKey, *extra_tokens: str | None) -> Affects:
    """The key's snapshots: its token and, during a grace period, the old secret's token (an alias of the
    same snapshot), so one invalidation stops both secrets at once."""
    return Affects(tokens={t for t in (key.token, key.previous_token, *extra_tokens) if t})


def grace_until(grace_period: Any, now: datetime.datetime) -> datetime.datetime | None:
    """When a rotation's grace period ends: None for no grace period; 400 past MAX_GRACE_PERIOD."""
    if grace_period in (None, "", "0", 0):
        return None
    if not isinstance(grace_period, str):
        raise InvalidInput("grace_period must be a duration such as 24h.", param="grace_period")
    try:
        until = duration_delta(grace_period, now)
    except (DurationError, OverflowError, ValueError) as exc:
        raise InvalidInput(f"grace_period: {exc}", param="grace_period") from exc
    if until - now > MAX_GRACE_PERIOD:
        raise InvalidInput(
            f"grace_period may be at most {MAX_GRACE_PERIOD_TEXT}; got {grace_period!r}.", param="grace_period"
        )
    return until


def rotation_due(key: VirtualKey, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """When an auto-rotating key is next due: its last rotation (or creation) plus its interval."""
    if not key.auto_rotate or not key.rotation_interval:
        return None
    start = key.last_rotated_at or key.created_at or now or timezone.now()
    try:
        return duration_delta(key.rotation_interval, start)
    except (DurationError, OverflowError, ValueError):
        return None


def _validate_rotation(changes: dict[str, Any]) -> dict[str, Any]:
    if "auto_rotate" in changes:
        if changes["auto_rotate"] is None:
            changes["auto_rotate"] = False
        if not isinstance(changes["auto_rotate"], bool):
            raise InvalidInput("auto_rotate must be true or false.", param="auto_rotate")
    if changes.get("rotation_interval") in ("",):
        changes["rotation_interval"] = None
    interval = changes.get("rotation_interval")
    if interval is not None:
        if not isinstance(interval, str):
            raise InvalidInput("rotation_interval must be a duration such as 30d.", param="rotation_interval")
        try:
            duration_delta(interval, timezone.now())
        except (DurationError, OverflowError, ValueError) as exc:
            raise InvalidInput(f"rotation_interval: {exc}", param="rotation_interval") from exc
    return changes


ALIAS_TAKEN = "Key with alias '{alias}' already exists. Key aliases are unique within an organization."


def _pk(value: Any) -> Any:
    return getattr(value, "pk", value)


def alias_scope(organization: Any, user: Any) -> dict[str, Any]:
    """Where a key alias must be unique (the key's tenant): its organization; outside any organization,
    its owner's keys; a key with neither, the other such keys. Mirrors VirtualKey.Meta.constraints."""
    if organization is not None:
        return {"organization": _pk(organization)}
    if user is not None:
        return {"organization__isnull": True, "user": _pk(user)}
    return {"organization__isnull": True, "user__isnull": True}


def validate_key_alias(alias: Any, *, organization: Any = None, user: Any = None, exclude_pk: Any = None) -> str | None:
    """A valid alias, free in the key's tenant. Another tenant's aliases are never consulted, so an
    answer never reveals what another organization named its keys."""
    if alias in (None, ""):
        return None
    if not isinstance(alias, str):
        raise InvalidInput("key_alias must be a string.", param="key_alias")
    if any(ord(c) < 32 for c in alias) or ".." in alias:
        raise InvalidInput("key_alias may not contain control characters or '..'.", param="key_alias")
    taken = VirtualKey.objects.filter(key_alias=alias, **alias_scope(organization, user))
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise InvalidInput(ALIAS_TAKEN.format(alias=alias), param="key_alias")
    return alias


def validate_key_type(value: Any) -> str:
    """One of LiteLLM's key types; null means `default` (any route)."""
    if value in (None, ""):
        return policy.KEY_TYPE_DEFAULT
    if value not in policy.KEY_TYPES:
        raise InvalidInput(f"key_type must be one of {', '.join(policy.KEY_TYPES)}.", param="key_type")
    return value


def validate_allowed_routes(value: Any) -> list[str]:
    """Route paths (`/key/info`, `/api/v1/keys`, `/team/*`) or route-group names; null means none."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > policy.MAX_ALLOWED_ROUTES:
        raise InvalidInput(
            f"allowed_routes must be a list of at most {policy.MAX_ALLOWED_ROUTES} routes.", param="allowed_routes"
        )
    routes: list[str] = []
    for entry in value:
        valid = (
            isinstance(entry, str)
            and (entry in policy.ROUTE_GROUPS or entry.startswith("/"))
            and len(entry) <= 255
            and not any(c.isspace() or ord(c) < 32 for c in entry)
            and "*" not in entry[:-1]
        )
        if not valid:
            raise InvalidInput(
                f"allowed_routes: {entry!r} is neither a route path (starting with /, '*' only at the end) nor "
                f"one of {', '.join(policy.ROUTE_GROUPS)}.",
                param="allowed_routes",
            )
        routes.append(entry)
    return list(dict.fromkeys(routes))


def _expiry(duration: Any, now: datetime.datetime) -> datetime.datetime | None:
    if duration in (None, ""):
        return None
    try:
        return duration_delta(str(duration), now)
    except DurationError as exc:
        raise InvalidInput(str(exc), param="duration") from exc
