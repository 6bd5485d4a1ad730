"""Every write to virtual keys. Secrets are returned once, as `(key, raw)`, and stored only as hashes."""
from __future__ import annotations

import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accessctl.common import field_values, model_update
from accessctl.durations import DurationError, duration_delta, next_reset_at
from accessctl.errors import Conflict, InvalidInput
from orgs.audit import Affects, record
from orgs.models import Organization, Team, User

from . import crypto
from .models import VirtualKey
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
    *BUDGET_FIELDS,
    *SPEND_FIELDS,
)
AUDITED_FIELDS = ("token", "key_name", *EDITABLE_FIELDS, "access_group_ids")


def _label(actor: User | None) -> str:
    return actor.user_id if actor is not None else "system"


def _key_affects(key: VirtualKey, *extra_tokens: str) -> Affects:
    return Affects(tokens={key.token, *extra_tokens})


def validate_key_alias(alias: Any, exclude_pk: Any = None) -> str | None:
    if alias in (None, ""):
        return None
    if not isinstance(alias, str):
        raise InvalidInput("key_alias must be a string.", param="key_alias")
    if any(ord(c) < 32 for c in alias) or ".." in alias:
        raise InvalidInput("key_alias may not contain control characters or '..'.", param="key_alias")
    taken = VirtualKey.objects.filter(key_alias=alias)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise InvalidInput(
            f"Key with alias '{alias}' already exists. Unique key aliases across all keys are required.",
            param="key_alias",
        )
    return alias


def _validate_budget(data: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
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
            if number < 0 or number != number or number in (float("inf"), float("-inf")):
                raise InvalidInput(f"{name} must be a finite number ≥ 0.", param=name)
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
            if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount < float("inf"):
                raise InvalidInput(f"{name}[{model}] must be a finite number ≥ 0.", param=name)
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


def _expiry(duration: Any, now: datetime.datetime) -> datetime.datetime | None:
    if duration in (None, ""):
        return None
    try:
        return duration_delta(str(duration), now)
    except DurationError as exc:
        raise InvalidInput(str(exc), param="duration") from exc


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
    **budget: Any,
) -> tuple[VirtualKey, str]:
    """Mint a key. Returns `(key, raw)`: the raw secret exists only in this return value.

    A team key takes its team's organization; access groups must be global or of that organization.
    """
    from accessgroups.services import set_assigned_groups

    now = timezone.now()
    unknown = set(budget) - set(BUDGET_FIELDS) - set(SPEND_FIELDS)
    if unknown:
        raise TypeError(f"unexpected fields: {sorted(unknown)}")
    budget = _validate_budget(budget, now)
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
    if team is not None:
        if organization is not None and team.organization_id != organization.pk:
            raise InvalidInput("The team belongs to another organization.", param="organization_id")
        organization = team.organization
    try:
        with transaction.atomic():
            key = VirtualKey.objects.create(
                token=token,
                key_name=crypto.mask(raw),
                key_alias=validate_key_alias(key_alias),
                user=user,
                team=team,
                organization=organization,
                models=validate_models(models),
                metadata=metadata or {},
                expires=_expiry(duration, now),
                blocked=bool(blocked),
                created_by=_label(actor),
                updated_by=_label(actor),
                **budget,
            )
    except IntegrityError as exc:
        raise InvalidInput("Key with this alias already exists.", param="key_alias") from exc
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
def key_update(*, actor: User | None, key: VirtualKey, data: dict[str, Any]) -> VirtualKey:
    """Apply the fields present in `data` (an explicit None clears). `duration` resets `expires`;
    `access_group_ids` replaces the key's groups from the key's side."""
    from accessgroups.services import set_assigned_groups

    key = VirtualKey.objects.select_for_update().get(pk=key.pk)
    now = timezone.now()
    changes = {k: v for k, v in data.items() if k in EDITABLE_FIELDS}
    changes = _validate_budget(changes, now)
    if "duration" in data:
        changes["expires"] = _expiry(data["duration"], now)
    if "key_alias" in changes:
        changes["key_alias"] = validate_key_alias(changes["key_alias"], exclude_pk=key.pk)
    if "models" in changes:
        changes["models"] = validate_models(changes["models"])
    if "blocked" in changes:
        changes["blocked"] = bool(changes["blocked"])
    if "team" in changes:
        team = changes["team"]
        changes["organization"] = team.organization if team is not None else changes.get("organization")
    old_token = key.token
    old_groups = list(key.access_group_ids)
    before, after = model_update(key, {**changes, "updated_by": _label(actor)}, EDITABLE_FIELDS)
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


@transaction.atomic
def key_regenerate(
    *, actor: User | None, key: VirtualKey, new_raw_key: str | None = None, data: dict[str, Any] | None = None
) -> tuple[VirtualKey, str]:
    """Give the key a new secret; the old one is refused from the next request. Returns `(key, raw)`."""
    key = VirtualKey.objects.select_for_update().get(pk=key.pk)
    if new_raw_key is not None:
        if not isinstance(new_raw_key, str) or not crypto.is_valid_custom_key(new_raw_key):
            raise InvalidInput("new_key must start with 'sk-' and be at least 16 characters.", param="new_key")
        raw = new_raw_key
    else:
        raw = crypto.generate_secret()
    new_token = crypto.hash_secret(raw)
    if VirtualKey.objects.filter(token=new_token).exists():
        raise Conflict("A key with this secret already exists.", param="new_key")
    old_token, old_name = key.token, key.key_name
    key.token, key.key_name, key.last_rotated_at = new_token, crypto.mask(raw), timezone.now()
    key.updated_by = _label(actor)
    key.save(update_fields=["token", "key_name", "last_rotated_at", "updated_by", "updated_at"])
    if key.access_group_ids:
        from accessgroups.services import sync_groups

        sync_groups(key.access_group_ids)
    if data:
        key = key_update(actor=actor, key=key, data=data)
    record(
        actor=actor,
        action="key_regenerate",
        object_type="key",
        object_id=new_token,
        organization_id=key.organization_id,
        before={"token": old_token, "key_name": old_name},
        after={"token": new_token, "key_name": key.key_name},
        affects=_key_affects(key, old_token),
    )
    return key, raw


def _set_blocked(actor: User | None, key: VirtualKey, blocked: bool) -> VirtualKey:
    key = VirtualKey.objects.select_for_update().get(pk=key.pk)
    if key.blocked == blocked:
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
def key_block(*, actor: User | None, key: VirtualKey) -> VirtualKey:
    """Refuse the key from the next request on."""
    return _set_blocked(actor, key, True)


@transaction.atomic
def key_unblock(*, actor: User | None, key: VirtualKey) -> VirtualKey:
    return _set_blocked(actor, key, False)


@transaction.atomic
def key_delete(*, actor: User | None, key: VirtualKey) -> None:
    """Delete the key and its assignments; the audit entry keeps what it was."""
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
