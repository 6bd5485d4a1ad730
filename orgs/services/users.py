"""Every write to users: create, update, delete (and who may)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accessctl import policy
from accessctl.budgets import validate_budget, validate_models
from accessctl.common import field_values, model_update
from accessctl.errors import Conflict, InvalidInput
from accessctl.ids import new_id, valid_id
from accessctl.roles import (
    PLATFORM_ROLES,
    OrgRole,
    PlatformRole,
)

from .. import hooks
from ..audit import Affects, record
from ..models import Organization, Team, TeamMembership, User
from .common import (
    USER_FIELDS,
    _id_taken,
    _validate_role,
)
from .organizations import (
    organization_member_add,
)
from .teams import (
    team_member_add,
)


def _clean_user_data(data: dict[str, Any]) -> dict[str, Any]:
    clean = validate_budget({k: v for k, v in data.items() if k in USER_FIELDS}, timezone.now())
    if "user_role" in clean:
        clean["user_role"] = _validate_role(clean["user_role"] or PlatformRole.INTERNAL_USER, PLATFORM_ROLES, "user_role")
    if "models" in clean:
        clean["models"] = validate_models(clean["models"])
    if clean.get("user_email") == "":
        clean["user_email"] = None
    return clean


def _validate_password(password: Any, user: User) -> None:
    """Django's AUTH_PASSWORD_VALIDATORS, on every path that sets a password (LiteLLM, REST, admin)."""
    if not isinstance(password, str):
        raise InvalidInput("password must be a string.", param="password")
    try:
        password_validation.validate_password(password, user)
    except DjangoValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), param="password") from exc


def authorize_user_create(
    by: policy.Actor,
    *,
    user_id: str | None,
    organizations: Sequence[Organization] = (),
    teams: Sequence[Team] = (),
    data: dict[str, Any] | None = None,
) -> None:
    """May `by` create this user, in these organizations (none: a user outside any), with this platform
    role, flags and models, and add them to these teams? In that order, for each organization: the
    `user:create` rule (only a proxy admin grants an admin role), `user:update_role` for a system or
    inactive user, the organization's models as a ceiling; then `team:member_manage` for each team."""
    data = data or {}
    org_ids = tuple(str(o.pk) for o in organizations)
    for organization in organizations or [None]:
        org_id = str(organization.pk) if organization is not None else None
        policy.require(by, "user:create", policy.Target(organization_id=org_id, new_platform_role=data.get("user_role")))
        if data.get("is_system") or data.get("is_active") is False:
            policy.require(by, "user:update_role", policy.Target(owner_user_id=user_id, user_org_ids=org_ids))
        if organization is not None and data.get("models"):
            policy.raise_refusal(
                policy.can_grant_models(by, validate_models(data["models"]),
                                        {"organization": list(organization.models or [])}),
                param="models",
            )
    for team in teams:
        policy.require(by, "team:member_manage", policy.team_target(team))


@transaction.atomic
def user_create(
    *,
    actor: User | None,
    user_id: str | None = None,
    password: str | None = None,
    by: policy.Actor | None = None,
    organizations: Sequence[Organization] = (),
    organization_role: str = OrgRole.INTERNAL_USER,
    teams: Sequence[tuple[Team, str, Any]] = (),
    **data: Any,
) -> User:
    """Create a user; `user_id` (SPEC §1's string id) defaults to a UUID string. A duplicate id or email → 409.
    The user joins `organizations` (with `organization_role`) and `teams` (`(team, role, max_budget_in_team)`).
    With `by`, the whole creation is authorized first (`authorize_user_create`)."""
    if by is not None:
        authorize_user_create(by, user_id=user_id, organizations=organizations, teams=[t for t, _, _ in teams],
                              data=data)
    user_id = valid_id(user_id, "user_id") if user_id is not None else new_id()
    clean = _clean_user_data(data)
    if password:
        _validate_password(password, User(user_id=user_id, **clean))
    if _id_taken(User, user_id, "user", field="user_id"):
        raise Conflict(f"User with user_id {user_id} already exists", param="user_id")
    if clean.get("user_email") and User.objects.filter(user_email__iexact=clean["user_email"]).exists():
        raise Conflict(f"User with email {clean['user_email']} already exists", param="user_email")
    try:
        with transaction.atomic():
            user = User.objects.create_user(user_id, password, **clean)
    except IntegrityError as exc:
        raise Conflict(f"User with user_id {user_id} already exists", param="user_id") from exc
    record(
        actor=actor,
        action="user_create",
        object_type="user",
        object_id=user.user_id,
        after=field_values(user, USER_FIELDS),
    )
    for organization in organizations:
        organization_member_add(actor=actor, organization=organization, user=user, user_role=organization_role)
    for team, role, max_budget_in_team in teams:
        if not TeamMembership.objects.filter(team=team, user=user).exists():
            team_member_add(actor=actor, team=team, user=user, role=role, max_budget_in_team=max_budget_in_team)
    return user


# Fields that only count as a change when their value differs (a form or body may resend them as they are).
_ACCOUNT_FLAG_FIELDS = ("user_role", "is_system", "is_active")


def authorize_user_update(by: policy.Actor, user: User, data: dict[str, Any]) -> None:
    """May `by` make this change to `user`? Profile fields: the user or someone who manages them;
    each account-level field needs its own action (`policy.FIELD_ACTIONS["user"]`); models stay inside
    every organization of the user."""
    changed = {
        name for name in data
        if name not in _ACCOUNT_FLAG_FIELDS or (data[name] is not None and data[name] != getattr(user, name))
    }
    role = data.get("user_role") if "user_role" in changed else None
    target = policy.user_target(user, new_platform_role=role)
    further = policy.actions_for("user", changed)
    if "models" in changed and user.user_id == by.user_id and "user:update_budget" not in further:
        further.append("user:update_budget")  # nobody widens their own models (SPEC §2)
    if changed - {"password"} or not further:
        policy.require(by, "user:update", target)
    for action in further:
        policy.require(by, action, target)
    if data.get("models"):
        ceilings = {
            f"organization {m.organization.organization_alias}": list(m.organization.models or [])
            for m in user.organization_memberships.select_related("organization")
        }
        policy.raise_refusal(policy.can_grant_models(by, validate_models(data["models"]), ceilings), param="models")


@transaction.atomic
def user_update(*, actor: User | None, user: User, data: dict[str, Any], by: policy.Actor | None = None) -> User:
    """Apply the fields present in `data`; `password` sets the admin login password (never audited).
    With `by`, the change is authorized field by field before any write."""
    if by is not None:
        authorize_user_update(by, user, data)
    user = User.objects.select_for_update().get(pk=user.pk)
    clean = _clean_user_data(data)
    if data.get("password"):
        _validate_password(data["password"], user)
    if clean.get("user_email") and User.objects.filter(user_email__iexact=clean["user_email"]).exclude(
        pk=user.pk
    ).exists():
        raise Conflict(f"User with email {clean['user_email']} already exists", param="user_email")
    before, after = model_update(user, clean, USER_FIELDS)
    if data.get("password"):
        user.set_password(data["password"])
        user.save(update_fields=["password"])
        before["password"], after["password"] = "***", "*** (changed)"
    if after:
        record(
            actor=actor,
            action="user_update",
            object_type="user",
            object_id=user.user_id,
            before=before,
            after=after,
            affects=Affects(user_pks={user.pk}),
        )
    return user


@transaction.atomic
def user_delete(*, actor: User | None, user: User, by: policy.Actor | None = None) -> None:
    """Delete a user with their keys and memberships; the audit log keeps what they were. Deleting an
    account is account-level: with `by`, only a proxy admin may (SPEC §2)."""
    if by is not None:
        policy.require(by, "user:delete", policy.user_target(user))
    affects = Affects(tokens={t for pair in user.keys.values_list("token", "previous_token") for t in pair if t})
    before = field_values(user, USER_FIELDS)
    user_id = user.user_id
    hooks.ask(hooks.user_leaving, actor=actor, user=user)
    user.delete()
    record(actor=actor, action="user_delete", object_type="user", object_id=user_id, before=before, affects=affects)
