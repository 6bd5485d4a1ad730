"""What the user, organization and team services share: the fields they write, ids never reused,
roles, member permissions and budgets of memberships validated, models checked against a ceiling."""
from __future__ import annotations

from typing import Any

from django.utils import timezone

from accessctl.allow import Allow
from accessctl.budgets import BUDGET_FIELDS, SPEND_FIELDS, validate_budget
from accessctl.errors import InvalidInput
from accessctl.roles import (
    TEAM_MEMBER_PERMISSIONS,
)

from ..models import AuditEntry, Budget, OrganizationMembership, TeamMembership, User

USER_FIELDS = (
    "user_email",
    "user_alias",
    "user_role",
    "is_system",
    "is_active",
    "models",
    "metadata",
    "sso_user_id",
    "scim_external_id",
    *BUDGET_FIELDS,
    *SPEND_FIELDS,
)


ORGANIZATION_FIELDS = ("organization_alias", "models", "metadata", *SPEND_FIELDS)


TEAM_FIELDS = (
    "team_alias",
    "organization",
    "models",
    "member_permissions",
    "blocked",
    "metadata",
    *BUDGET_FIELDS,
    *SPEND_FIELDS,
)


def _id_taken(model: type, object_id: str, object_type: str, field: str = "pk") -> bool:
    """An id is never reused (SPEC §1): taken by a row, or by a deleted row the audit log remembers."""
    return (
        model.objects.filter(**{field: object_id}).exists()
        or AuditEntry.objects.filter(object_type=object_type, object_id=object_id).exists()
    )


def _label(actor: User | None) -> str:
    return actor.user_id if actor is not None else "system"


def _validate_role(value: Any, roles: dict, param: str) -> str:
    if value not in roles:
        raise InvalidInput(f"{param} must be one of {', '.join(roles)}.", param=param)
    return value


def _validate_member_permissions(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("team_member_permissions must be a list of route names.", param="team_member_permissions")
    unknown = sorted(set(value) - set(TEAM_MEMBER_PERMISSIONS))
    if unknown:
        raise InvalidInput(
            f"Unknown team member permissions: {', '.join(unknown)}.", param="team_member_permissions"
        )
    return list(dict.fromkeys(value))


def models_outside(models: list[str], ceiling: list[str]) -> list[str]:
    """The entries of `models` that `ceiling` (an empty ceiling allows all) does not let through."""
    if not ceiling:
        return []
    allow = Allow.of(ceiling)
    if allow.everything:
        return []
    outside = []
    for name in models:
        if name in ("all-team-models", "no-default-models"):
            continue
        if name in ("all-proxy-models", "*") or not allow.matches(name):
            outside.append(name)
    return outside


def _s(value: Any) -> str | None:
    return str(value) if value is not None else None


def _membership_budget(actor: User | None, existing: Budget | None, max_budget: Any, param: str) -> Budget | None:
    if max_budget is None:
        return existing
    try:
        clean = validate_budget({"max_budget": max_budget}, timezone.now())
    except InvalidInput as exc:  # named as the caller sent it
        raise InvalidInput(exc.message.replace("max_budget", param, 1), param=param) from exc
    if existing is None:
        return Budget.objects.create(max_budget=clean["max_budget"], created_by=_label(actor), updated_by=_label(actor))
    existing.max_budget = clean["max_budget"]
    existing.save(update_fields=["max_budget", "updated_at"])
    return existing


def _change_membership(
    actor: User | None,
    membership: OrganizationMembership | TeamMembership,
    *,
    role_field: str,
    role: str | None,
    roles: dict,
    budget_label: str,
    max_budget: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set a (locked) membership's role and budget; returns the audit (before, after) of what changed."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    current = getattr(membership, role_field)
    if role is not None and role != current:
        _validate_role(role, roles, "role")
        before[role_field], after[role_field] = current, role
        setattr(membership, role_field, role)
        membership.save(update_fields=[role_field, "updated_at"])
    if max_budget is not None:
        old = membership.budget.max_budget if membership.budget else None
        param = "max_budget_in_team" if isinstance(membership, TeamMembership) else "max_budget_in_organization"
        membership.budget = _membership_budget(actor, membership.budget, max_budget, param)
        membership.save(update_fields=["budget", "updated_at"])
        if old != membership.budget.max_budget:
            before[budget_label], after[budget_label] = old, membership.budget.max_budget
    return before, after
