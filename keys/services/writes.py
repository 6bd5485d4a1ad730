"""Every write to a virtual key: generate, update, regenerate (rotation with a grace period), block,
delete. Secrets are returned once, as `(key, raw)`, and stored only as hashes."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accessctl import policy
from accessctl.budgets import BUDGET_FIELDS, SPEND_FIELDS, validate_budget, validate_models
from accessctl.common import field_values, model_update
from accessctl.errors import Conflict, InvalidInput
from orgs import hooks
from orgs.audit import record
from orgs.models import Organization, Team, User
from orgs.services import organization_member_add, user_create

from .. import crypto
from ..cache import invalidate_tokens
from ..models import IDEMPOTENCY_WINDOW, KeyRotation, VirtualKey
from .authorization import (
    authorize_key_generate,
    authorize_key_update,
)
from .validation import (
    ALIAS_TAKEN,
    AUDITED_FIELDS,
    EDITABLE_FIELDS,
    _expiry,
    _key_affects,
    _label,
    _validate_rotation,
    grace_until,
    rotation_due,
    validate_allowed_routes,
    validate_key_alias,
    validate_key_type,
)


def _new_owner(actor: User | None, user_id: str, organization: Organization | None) -> User:
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
        hooks.ask(hooks.assign_groups, target=key, group_ids=access_group_ids, organization=organization)
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
        hooks.ask(
            hooks.assign_groups, target=key, group_ids=data["access_group_ids"] or [], organization=key.organization
        )
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


def member_keys_delete(
    *, actor: User | None, user: User, team: Team | None = None, organization_id: Any = None
) -> None:
    """Delete (each audited) the user's keys in `team`, else in the organization, else all of them: a
    member who leaves keeps no key acting where they no longer belong (orgs' `hooks.user_leaving`)."""
    keys = VirtualKey.objects.filter(user=user)
    if team is not None:
        keys = keys.filter(team=team)
    elif organization_id is not None:
        keys = keys.filter(organization_id=organization_id)
    for key in list(keys):
        key_delete(actor=actor, key=key)


def team_keys_move(*, team: Team) -> None:
    """A team changed organization: its keys follow it (orgs' `hooks.team_moved`), in the caller's
    transaction; the team's audit entry and invalidation cover them."""
    VirtualKey.objects.filter(team=team).update(organization=team.organization)
