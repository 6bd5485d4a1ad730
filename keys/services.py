"""Every write to virtual keys. Secrets are returned once, as `(key, raw)`, and stored only as hashes."""
from __future__ import annotations

import dataclasses
import datetime
import hmac
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accessctl import policy
from accessctl.common import field_values, model_update
from accessctl.durations import DurationError, duration_delta, next_reset_at
from accessctl.errors import Conflict, InvalidInput
from orgs.audit import Affects, record
from orgs.models import Organization, Team, User

from . import crypto
from .amounts import MAX_AMOUNT
from .models import IDEMPOTENCY_WINDOW, KeyRotation, VirtualKey
from .selectors import model_ceilings
from .usage import ReportOutcome, caller_label, usage_ingest

BUDGET_FIELDS = (
    "max_budget",
    "soft_budget",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "model_max_budget",
    "budget_duration",
    "budget_reset_at",
)
SPEND_FIELDS = ("spend", "model_spend")
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


def validate_budget(data: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    clean = dict(data)
    for name in ("max_budget", "soft_budget", "spend"):
        value = clean.get(name)
        if value == "":
            clean[name] = None
            continue
        if value is not None:
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"{name} must be a number.", param=name) from exc
            if not 0 <= number <= MAX_AMOUNT:  # also refuses NaN
                raise InvalidInput(f"{name} must be a number between 0 and {MAX_AMOUNT:g}.", param=name)
            clean[name] = number
    for name in ("tpm_limit", "rpm_limit", "max_parallel_requests"):
        value = clean.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise InvalidInput(f"{name} must be a whole number ≥ 0.", param=name)
        # The columns' range (max_parallel_requests is a 32-bit integer, the limits 64-bit).
        ceiling = 2**31 - 1 if name == "max_parallel_requests" else 2**63 - 1
        if value is not None and value > ceiling:
            raise InvalidInput(f"{name} must be at most {ceiling}.", param=name)
    both = clean.get("max_budget") is not None and clean.get("soft_budget") is not None
    if both and clean["soft_budget"] >= clean["max_budget"]:
        raise InvalidInput("soft_budget must be lower than max_budget.", param="soft_budget")
    for name in ("model_max_budget", "model_spend", "metadata"):
        if name in clean:
            if clean[name] is None:
                clean[name] = {}
            elif not isinstance(clean[name], dict):
                raise InvalidInput(f"{name} must be an object.", param=name)
    for name in ("model_max_budget", "model_spend"):
        # Per-model amounts are compared as numbers on the hot path: anything else is refused here.
        for model, amount in (clean.get(name) or {}).items():
            if amount is None and name == "model_max_budget":
                continue
            if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount <= MAX_AMOUNT:
                raise InvalidInput(f"{name}[{model}] must be a number between 0 and {MAX_AMOUNT:g}.", param=name)
    if clean.get("budget_duration"):
        try:
            clean["budget_reset_at"] = next_reset_at(clean["budget_duration"], now)
        except DurationError as exc:
            raise InvalidInput(str(exc), param="budget_duration") from exc
    return clean


def validate_models(value: Any, param: str = "models") -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidInput(f"{param} must be a list of non-empty strings.", param=param)
    return list(dict.fromkeys(v.strip() for v in value))


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


# --- authorization: each command asks the policy itself, before its first write -------------------


def _is_member(team: Team | None, user: User | None) -> bool | None:
    if team is None or user is None:
        return None
    return team.memberships.filter(user=user).exists()


def _grant_models(by: policy.Actor, models: Any, team: Team | None, organization: Organization | None,
                  owner: User | None) -> None:
    if models:
        policy.raise_refusal(
            policy.can_grant_models(by, validate_models(models), model_ceilings(team, organization, owner)),
            param="models",
        )


def authorize_key_generate(
    by: policy.Actor,
    *,
    user: User | None,
    new_user_id: str | None,
    team: Team | None,
    organization: Organization | None,
    models: Any = None,
    access_group_ids: Any = None,
) -> None:
    """May `by` mint this key: there (team / organization), for that owner (the caller, nobody, or a user
    they manage), with those models and access groups? `new_user_id` names an owner the command would create."""
    owner_id = user.user_id if user is not None else new_user_id
    target = policy.new_key_target(
        owner_user_id=owner_id,
        team=team,
        organization_id=organization.pk if organization is not None and team is None else None,
        owner_in_team=_is_member(team, user) if user is not None else (False if new_user_id and team else None),
        owner=policy.user_facts(user),
    )
    if new_user_id is not None:
        # An owner this request creates joins the key's organization and nothing else.
        org_roles = ((str(organization.pk), "internal_user"),) if organization is not None else ()
        target = dataclasses.replace(target, owner=policy.UserFacts(user_id=new_user_id, org_roles=org_roles))
    policy.require(by, "key:generate", target)
    if access_group_ids:
        policy.require(by, "key:assign_access_groups", target)
    if new_user_id is not None and not policy.can(
        by, "user:create", policy.Target(organization_id=str(organization.pk) if organization is not None else None)
    ):
        raise InvalidInput(f"User {new_user_id} not found.", param="user_id")
    _grant_models(by, models, team, organization, user)


def authorize_key_update(by: policy.Actor, key: VirtualKey, data: dict[str, Any], *, action: str = "key:update",
                         new_user_id: str | None = None) -> None:
    """May `by` make this change to `key`? Each changed field's action comes from `policy.FIELD_ACTIONS`;
    moving a key (owner or team) is also creating it at the new place."""
    target = policy.key_target(key)
    owner = data.get("user", key.user) if new_user_id is None else None
    team = data.get("team", key.team)
    owner_changed = new_user_id is not None or ("user" in data and _pk(data["user"]) != key.user_id)
    team_changed = "team" in data and _pk(data["team"]) != key.team_id
    org_changed = "organization" in data and _pk(data["organization"]) != key.organization_id
    changed = {name for name in data if name not in ("user", "team", "organization")}
    for name, moved in (("user", owner_changed), ("team", team_changed), ("organization", org_changed)):
        if moved:
            changed.add(name)
    further = policy.actions_for("key", changed)
    if owner_changed:
        policy.require(by, "key:reassign", target)  # LiteLLM asks this before the route's own permission
    policy.require(by, action, target)
    for name in further:
        policy.require(by, name, target)
    if "blocked" in data and bool(data["blocked"]) != key.blocked:
        policy.require(by, "key:block" if data["blocked"] else "key:unblock", target)
    if "key_type" in data or "allowed_routes" in data:
        new_rule = (
            validate_key_type(data.get("key_type", key.key_type)),
            validate_allowed_routes(data.get("allowed_routes", key.allowed_routes)),
        )
        policy.raise_refusal(
            policy.can_change_routes(by, target, new=new_rule, old=(key.key_type, list(key.allowed_routes or []))),
            param="key_type" if "key_type" in data else "allowed_routes",
        )
    organization = team.organization if team is not None else data.get("organization", key.organization)
    if owner_changed or team_changed or org_changed:
        if owner is None and new_user_id is None and team is None:
            raise InvalidInput("A key needs an owner (user_id) or a team.", param="user_id")
        authorize_key_generate(by, user=owner, new_user_id=new_user_id, team=team, organization=organization)
    _grant_models(by, data.get("models"), team, organization, owner)


def _new_owner(actor: User | None, user_id: str, organization: Organization | None) -> User:
    from orgs.services import organization_member_add, user_create

    user = user_create(actor=actor, user_id=user_id)
    if organization is not None:
        organization_member_add(actor=actor, organization=organization, user=user, user_role="internal_user")
    return user


@transaction.atomic
def key_generate(
    *,
    actor: User | None,
    user: User | None = None,
    team: Team | None = None,
    organization: Organization | None = None,
    key_alias: str | None = None,
    models: list[str] | None = None,
    access_group_ids: list[Any] | None = None,
    duration: str | None = None,
    metadata: dict[str, Any] | None = None,
    blocked: bool = False,
    raw_key: str | None = None,
    by: policy.Actor | None = None,
    new_user_id: str | None = None,
    auto_rotate: bool = False,
    rotation_interval: str | None = None,
    key_type: str | None = None,
    allowed_routes: list[str] | None = None,
    **budget: Any,
) -> tuple[VirtualKey, str]:
    """Mint a key. Returns `(key, raw)`: the raw secret exists only in this return value.

    With `by` (the caller, as the policy sees them) the command authorizes itself before any write;
    without it the caller is trusted code (commands, tasks). `new_user_id` names an owner to create
    (LiteLLM creates unknown owners for admins), after the authorization. A team key takes its team's
    organization; access groups must be global or of that organization. `key_type` / `allowed_routes`
    narrow the routes the key may call (SPEC §2); whoever may mint the key may set them.
    """
    from accessgroups.services import set_assigned_groups

    if team is not None:
        if organization is not None and team.organization_id != organization.pk:
            raise InvalidInput("The team belongs to another organization.", param="organization_id")
        organization = team.organization
    if by is not None:
        authorize_key_generate(
            by, user=user, new_user_id=new_user_id, team=team, organization=organization, models=models,
            access_group_ids=access_group_ids,
        )
    now = timezone.now()
    unknown = set(budget) - set(BUDGET_FIELDS) - set(SPEND_FIELDS)
    if unknown:
        raise TypeError(f"unexpected fields: {sorted(unknown)}")
    budget = validate_budget(budget, now)
    routes = {"key_type": validate_key_type(key_type), "allowed_routes": validate_allowed_routes(allowed_routes)}
    rotation = _validate_rotation({"auto_rotate": auto_rotate, "rotation_interval": rotation_interval})
    if rotation["auto_rotate"] and not rotation["rotation_interval"]:
        raise InvalidInput("auto_rotate needs a rotation_interval (e.g. 30d).", param="rotation_interval")
    if raw_key is not None:
        if not isinstance(raw_key, str) or not crypto.is_valid_custom_key(raw_key):
            raise InvalidInput(
                "Invalid key format. Virtual keys must start with 'sk-' and be at least 16 characters.", param="key"
            )
        raw = raw_key
    else:
        raw = crypto.generate_secret()
    token = crypto.hash_secret(raw)
    if VirtualKey.objects.filter(token=token).exists():
        raise Conflict("A key with this secret already exists.", param="key")
    if new_user_id is not None:
        user = _new_owner(actor, new_user_id, organization)
    try:
        with transaction.atomic():
            key = VirtualKey.objects.create(
                token=token,
                key_name=crypto.mask(raw),
                key_alias=validate_key_alias(key_alias, organization=organization, user=user),
                user=user,
                team=team,
                organization=organization,
                models=validate_models(models),
                metadata=metadata or {},
                expires=_expiry(duration, now),
                blocked=bool(blocked),
                created_by=_label(actor),
                updated_by=_label(actor),
                created_at=now,
                **rotation,
                **routes,
                **budget,
            )
            if key.auto_rotate:
                key.rotation_due_at = rotation_due(key, now)
                key.save(update_fields=["rotation_due_at"])
    except IntegrityError as exc:
        raise InvalidInput(ALIAS_TAKEN.format(alias=key_alias), param="key_alias") from exc
    if access_group_ids:
        set_assigned_groups(target=key, group_ids=access_group_ids, organization=organization)
    record(
        actor=actor,
        action="key_generate",
        object_type="key",
        object_id=key.token,
        organization_id=key.organization_id,
        after=field_values(key, AUDITED_FIELDS),
        affects=_key_affects(key),
    )
    return key, raw


@transaction.atomic
def key_update(
    *, actor: User | None, key: VirtualKey, data: dict[str, Any], by: policy.Actor | None = None,
    new_user_id: str | None = None,
) -> VirtualKey:
    """Apply the fields present in `data` (an explicit None clears). `duration` resets `expires`;
    `access_group_ids` replaces the key's groups from the key's side. With `by`, the change is
    authorized field by field (`authorize_key_update`) before any write; `new_user_id` names a new
    owner to create."""
    from accessgroups.services import set_assigned_groups

    # Only the key's row is locked: PostgreSQL refuses FOR UPDATE on the nullable side of the outer joins.
    key = (
        VirtualKey.objects.select_for_update(of=("self",)).select_related("user", "team", "organization").get(pk=key.pk)
    )
    if by is not None:
        authorize_key_update(by, key, data, new_user_id=new_user_id)
    if new_user_id is not None:
        data = {**data, "user": _new_owner(actor, new_user_id, key.organization)}
    now = timezone.now()
    changes = {k: v for k, v in data.items() if k in EDITABLE_FIELDS}
    changes = _validate_rotation(validate_budget(changes, now))
    if "duration" in data:
        changes["expires"] = _expiry(data["duration"], now)
    if "models" in changes:
        changes["models"] = validate_models(changes["models"])
    if "blocked" in changes:
        changes["blocked"] = bool(changes["blocked"])
    if "key_type" in changes:
        changes["key_type"] = validate_key_type(changes["key_type"])
    if "allowed_routes" in changes:
        changes["allowed_routes"] = validate_allowed_routes(changes["allowed_routes"])
    if "team" in changes:
        team = changes["team"]
        changes["organization"] = team.organization if team is not None else changes.get("organization")
    if {"key_alias", "organization", "user"} & set(changes):
        # The alias must be free where the key ends up (a move to another tenant or owner included).
        changes["key_alias"] = validate_key_alias(
            changes.get("key_alias", key.key_alias),
            organization=changes.get("organization", key.organization_id),
            user=changes.get("user", key.user_id),
            exclude_pk=key.pk,
        )
    old_token = key.token
    old_groups = list(key.access_group_ids)
    if "auto_rotate" in changes or "rotation_interval" in changes:
        auto = changes.get("auto_rotate", key.auto_rotate)
        if auto and not changes.get("rotation_interval", key.rotation_interval):
            raise InvalidInput("auto_rotate needs a rotation_interval (e.g. 30d).", param="rotation_interval")
    before, after = model_update(key, {**changes, "updated_by": _label(actor)}, EDITABLE_FIELDS)
    if "auto_rotate" in after or "rotation_interval" in after:
        key.rotation_due_at, key.rotation_due_notified_at = rotation_due(key, now), None
        key.save(update_fields=["rotation_due_at", "rotation_due_notified_at"])
    if "access_group_ids" in data:
        set_assigned_groups(target=key, group_ids=data["access_group_ids"] or [], organization=key.organization)
        if key.access_group_ids != old_groups:
            before["access_group_ids"], after["access_group_ids"] = old_groups, list(key.access_group_ids)
    if after:
        VirtualKey.objects.filter(pk=key.pk).update(updated_by=_label(actor))
        record(
            actor=actor,
            action="key_update",
            object_type="key",
            object_id=key.token,
            organization_id=key.organization_id,
            before=before,
            after=after,
            affects=_key_affects(key, old_token),
        )
    return key


class KeyAlreadyRotated(Conflict):
    """The secret a rotation named is no longer the key's current one: another rotation won."""


@dataclass(frozen=True)
class Rotated:
    """The outcome of `key_regenerate`: the key, and the new secret — None when the outcome is the
    replay of an earlier rotation with the same Idempotency-Key (its secret was shown then, never again)."""

    key: VirtualKey
    raw: str | None
    replayed: bool = False

    def __iter__(self):  # `key, raw = key_regenerate(...)`, as every other secret-returning service
        return iter((self.key, self.raw))

    def __getitem__(self, index: int):
        return (self.key, self.raw)[index]


@transaction.atomic
def key_regenerate(
    *,
    actor: User | None,
    key: VirtualKey,
    new_raw_key: str | None = None,
    data: dict[str, Any] | None = None,
    grace_period: str | None = None,
    expected_token: str | None = None,
    idempotency_key: str | None = None,
    by: policy.Actor | None = None,
) -> Rotated:
    """Give the key a new secret. Returns `Rotated(key, raw)`: the raw secret exists only in that value.

    - `grace_period` ("24h", at most MAX_GRACE_PERIOD): the old secret is still accepted until then; the
      check treats it as an alias of the key (blocking or deleting the key stops both). Without one the
      old secret is refused from the next request; a secret kept from an earlier rotation's grace
      period is refused at once either way (at most two secrets are ever live).
    - `expected_token`: the token the caller named the key by. Under the key's row lock it must still
      be current, so of many concurrent rotations from one secret exactly one wins; the others get 409.
    - `idempotency_key`: a retry with the same one (same key) replays the first outcome, `raw=None`.
    - `by`: the caller, authorized (key:regenerate plus the actions `data` needs) before anything is written.
    """
    now = timezone.now()
    if idempotency_key is not None and (not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 255):
        raise InvalidInput("Idempotency-Key must be 1 to 255 characters.", param="Idempotency-Key")
    until = grace_until(grace_period, now)
    # The row lock serializes every rotation of this key.
    # Only the key's row is locked: PostgreSQL refuses FOR UPDATE on the nullable side of the outer joins.
    key = (
        VirtualKey.objects.select_for_update(of=("self",)).select_related("user", "team", "organization").get(pk=key.pk)
    )
    if by is not None:
        authorize_key_update(by, key, data or {}, action="key:regenerate")
    if idempotency_key is not None:
        done = (
            KeyRotation.objects.filter(key=key, idempotency_key=idempotency_key, created_at__gt=now - IDEMPOTENCY_WINDOW)
            .order_by("-created_at")
            .first()
        )
        if done is not None:
            if expected_token is not None and expected_token not in (done.old_token, done.new_token):
                raise Conflict(
                    "This Idempotency-Key was used for a rotation of this key from another secret.",
                    param="Idempotency-Key",
                )
            return Rotated(key, None, replayed=True)
    if expected_token is not None and not hmac.compare_digest(key.token, expected_token):
        raise KeyAlreadyRotated(
            "The key was rotated by another request: the secret passed is no longer current.",
            param="key",
            type="key_already_rotated",
        )
    if new_raw_key is not None:
        if not isinstance(new_raw_key, str) or not crypto.is_valid_custom_key(new_raw_key):
            raise InvalidInput("new_key must start with 'sk-' and be at least 16 characters.", param="new_key")
        raw = new_raw_key
    else:
        raw = crypto.generate_secret()
    new_token = crypto.hash_secret(raw)
    if VirtualKey.objects.filter(Q(token=new_token) | Q(previous_token=new_token)).exists():
        raise Conflict("A key with this secret already exists.", param="new_key")
    old_token, old_name, dropped_previous = key.token, key.key_name, key.previous_token
    key.token, key.key_name, key.last_rotated_at = new_token, crypto.mask(raw), now
    key.previous_token = old_token if until is not None else None
    key.previous_token_expires = until
    key.rotation_due_at, key.rotation_due_notified_at = rotation_due(key, now), None
    key.updated_by = _label(actor)
    key.save(
        update_fields=[
            "token",
            "key_name",
            "last_rotated_at",
            "previous_token",
            "previous_token_expires",
            "rotation_due_at",
            "rotation_due_notified_at",
            "updated_by",
            "updated_at",
        ]
    )
    if data:
        key = key_update(actor=actor, key=key, data=data)
    if idempotency_key is not None:
        KeyRotation.objects.create(
            key=key,
            idempotency_key=idempotency_key,
            old_token=old_token,
            new_token=new_token,
            new_key_name=key.key_name,
            grace_until=until,
            actor_id=_label(actor),
            created_at=now,
        )
    record(
        actor=actor,
        action="key_regenerate",
        object_type="key",
        object_id=new_token,
        organization_id=key.organization_id,
        before={"token": old_token, "key_name": old_name},
        after={
            "token": new_token,
            "key_name": key.key_name,
            "grace_period_until": until.isoformat() if until else None,
        },
        affects=_key_affects(key, old_token, dropped_previous),
    )
    return Rotated(key, raw)


def _set_blocked(actor: User | None, key: VirtualKey, blocked: bool) -> VirtualKey:
    key = VirtualKey.objects.select_for_update().get(pk=key.pk)
    if key.blocked == blocked:
        if blocked:
            # Nothing changes, so nothing is audited; but a block repeated because the first one's cache
            # invalidation may have been lost must reach every cache again.
            from .cache import invalidate_tokens

            token = key.token
            transaction.on_commit(lambda: invalidate_tokens([token]))
        return key
    key.blocked = blocked
    key.updated_by = _label(actor)
    key.save(update_fields=["blocked", "updated_by", "updated_at"])
    record(
        actor=actor,
        action="key_block" if blocked else "key_unblock",
        object_type="key",
        object_id=key.token,
        organization_id=key.organization_id,
        before={"blocked": not blocked},
        after={"blocked": blocked},
        affects=_key_affects(key),
    )
    return key


@transaction.atomic
def key_block(*, actor: User | None, key: VirtualKey, by: policy.Actor | None = None) -> VirtualKey:
    """Refuse the key from the next request on."""
    if by is not None:
        policy.require(by, "key:block", policy.key_target(key))
    return _set_blocked(actor, key, True)


@transaction.atomic
def key_unblock(*, actor: User | None, key: VirtualKey, by: policy.Actor | None = None) -> VirtualKey:
    if by is not None:
        policy.require(by, "key:unblock", policy.key_target(key))
    return _set_blocked(actor, key, False)


@transaction.atomic
def key_delete(*, actor: User | None, key: VirtualKey, by: policy.Actor | None = None) -> None:
    """Delete the key and its assignments; the audit entry keeps what it was."""
    if by is not None:
        policy.require(by, "key:delete", policy.key_target(key))
    # The key's lock first: its access-group rows have no foreign key in the database, so a bulk assignment
    # adding one now either committed before (and its row is deleted below) or waits and finds the key gone.
    VirtualKey.objects.select_for_update().filter(pk=key.pk).values_list("pk").first()
    before = field_values(key, AUDITED_FIELDS)
    affects = _key_affects(key)
    token, org_id = key.token, key.organization_id
    key.delete()
    record(
        actor=actor,
        action="key_delete",
        object_type="key",
        object_id=token,
        organization_id=org_id,
        before=before,
        affects=affects,
    )


# --- the rotation schedule (Celery beat) -----------------------------------------------------

ROTATION_DUE_ACTION = "key_rotation_due"


def mark_rotation_due(*, now: datetime.datetime | None = None, batch_size: int = 1000) -> list[str]:
    """Tell the owners of auto-rotating keys that have come due: one audit entry per key, in the key's
    organization's log and naming its owner, once per due date (a rotation sets the next one). No secret
    is made or sent: the owner rotates through `/key/regenerate`. Returns the tokens marked."""
    now = now if now is not None else timezone.now()
    marked: list[str] = []
    with transaction.atomic():
        due = (
            VirtualKey.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(auto_rotate=True, rotation_due_at__lte=now, rotation_due_notified_at__isnull=True)
            .select_related("user")
            .order_by("rotation_due_at", "pk")[:batch_size]
        )
        for key in due:
            VirtualKey.objects.filter(pk=key.pk).update(rotation_due_notified_at=now)
            record(
                actor=None,
                action=ROTATION_DUE_ACTION,
                object_type="key",
                object_id=key.token,
                organization_id=key.organization_id,
                after={
                    "key_name": key.key_name,
                    "key_alias": key.key_alias,
                    "owner": key.user.user_id if key.user_id else None,
                    "team_id": str(key.team_id) if key.team_id else None,
                    "rotation_interval": key.rotation_interval,
                    "due_at": key.rotation_due_at.isoformat(),
                },
            )
            marked.append(key.token)
    return marked


def end_grace_periods(*, now: datetime.datetime | None = None) -> int:
    """Forget the old secrets whose grace period has ended (the check already refuses them; this drops
    the alias and its cached snapshot). Returns how many."""
    now = now if now is not None else timezone.now()
    with transaction.atomic():
        ended = list(
            VirtualKey.objects.select_for_update(skip_locked=True)
            .filter(previous_token__isnull=False, previous_token_expires__lte=now)
            .values_list("pk", "token", "previous_token", "organization_id")[:1000]
        )
        for pk, token, previous, organization_id in ended:
            VirtualKey.objects.filter(pk=pk).update(previous_token=None, previous_token_expires=None)
            record(
                actor=None,
                action="key_grace_period_ended",
                object_type="key",
                object_id=token,
                organization_id=organization_id,
                before={"previous_token": previous},
                affects=Affects(tokens={token, previous}),
            )
    return len(ended)



# --- usage (the gateway's spend reports: keys/usage.py) -------------------------------------


def usage_report(
    *,
    actor: User | None,
    key: str,
    model: str,
    spend: Any,
    prompt_tokens: Any = None,
    completion_tokens: Any = None,
    idempotency_key: str | None = None,
) -> ReportOutcome:
    """Report one request's spend as `actor` (None: the master key); see `keys.usage.usage_ingest`."""
    body = {"key": key, "model": model, "spend": spend, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "idempotency_key": idempotency_key}
    caller = caller_label(actor.user_id if actor is not None else None, is_master=actor is None)
    return usage_ingest(caller=caller, items=[body], as_list=False)[0]
