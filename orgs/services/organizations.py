"""Every write to organizations and their memberships."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accessctl import policy
from accessctl.budgets import BUDGET_FIELDS, validate_budget, validate_models
from accessctl.common import field_values, model_update
from accessctl.errors import Conflict, InvalidInput
from accessctl.ids import valid_id
from accessctl.roles import (
    ORG_ROLES,
)

from .. import hooks
from ..audit import Affects, record
from ..models import Budget, Organization, OrganizationMembership, TeamMembership, User
from .common import (
    ORGANIZATION_FIELDS,
    _change_membership,
    _id_taken,
    _label,
    _membership_budget,
    _validate_role,
)
from .teams import (
    team_member_delete,
)


def _split_budget(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    budget = {k: v for k, v in data.items() if k in BUDGET_FIELDS}
    rest = {k: v for k, v in data.items() if k not in BUDGET_FIELDS}
    return budget, rest


@transaction.atomic
def organization_create(
    *, actor: User | None, organization_alias: str, organization_id: Any = None, **data: Any
) -> Organization:
    """Create an organization with its budget row (every organization has one)."""
    if not isinstance(organization_alias, str) or not organization_alias.strip():
        raise InvalidInput("organization_alias is required.", param="organization_alias")
    budget_data, rest = _split_budget(validate_budget(data, timezone.now()))
    extra = {k: v for k, v in rest.items() if k in ORGANIZATION_FIELDS}
    if "models" in extra:
        extra["models"] = validate_models(extra["models"])
    if organization_id is not None:
        organization_id = valid_id(organization_id, "organization_id")
        if _id_taken(Organization, organization_id, "organization"):
            raise Conflict(f"Organization {organization_id} already exists", param="organization_id")
    budget = Budget.objects.create(created_by=_label(actor), updated_by=_label(actor), **budget_data)
    kwargs = {"organization_id": organization_id} if organization_id else {}
    org = Organization.objects.create(
        organization_alias=organization_alias.strip(),
        budget=budget,
        created_by=_label(actor),
        updated_by=_label(actor),
        **kwargs,
        **extra,
    )
    record(
        actor=actor,
        action="organization_create",
        object_type="organization",
        object_id=org.pk,
        organization_id=org.pk,
        after={**field_values(org, ORGANIZATION_FIELDS), **field_values(budget, BUDGET_FIELDS)},
    )
    return org


def authorize_organization_update(by: policy.Actor, organization: Organization, data: dict[str, Any]) -> None:
    """`organization:update`, and `organization:update_limits` for its models and budget
    (`policy.FIELD_ACTIONS["organization"]`): an org admin works inside them, a proxy admin sets them."""
    target = policy.organization_target(organization)
    policy.require(by, "organization:update", target)
    for action in policy.actions_for("organization", data):
        policy.require(by, action, target)


@transaction.atomic
def organization_update(
    *, actor: User | None, organization: Organization, data: dict[str, Any], by: policy.Actor | None = None
) -> Organization:
    """Apply fields present in `data`; budget fields land on the organization's budget row. With `by`, the
    change is authorized field by field before any write."""
    if by is not None:
        authorize_organization_update(by, organization, data)
    org = Organization.objects.select_for_update().select_related("budget").get(pk=organization.pk)
    clean = validate_budget(data, timezone.now())
    budget_data, rest = _split_budget(clean)
    if "organization_alias" in rest and (not isinstance(rest["organization_alias"], str) or not rest["organization_alias"].strip()):
        raise InvalidInput("organization_alias may not be empty.", param="organization_alias")
    if "models" in rest:
        rest["models"] = validate_models(rest["models"])
    before, after = model_update(org, rest, ORGANIZATION_FIELDS)
    b_before, b_after = model_update(org.budget, budget_data, BUDGET_FIELDS)
    before.update(b_before)
    after.update(b_after)
    if after:
        Organization.objects.filter(pk=org.pk).update(updated_by=_label(actor), updated_at=timezone.now())
        record(
            actor=actor,
            action="organization_update",
            object_type="organization",
            object_id=org.pk,
            organization_id=org.pk,
            before=before,
            after=after,
            affects=Affects(organization_ids={org.pk}),
        )
    return org


@transaction.atomic
def organization_delete(
    *, actor: User | None, organization: Organization, by: policy.Actor | None = None
) -> Organization:
    """Soft-delete: every key and context of the organization stops working at once; rows stay. With
    `by`, only a proxy admin may (`organization:delete`)."""
    if by is not None:
        policy.require(by, "organization:delete", policy.organization_target(organization))
    org = Organization.objects.select_for_update().get(pk=organization.pk)
    if org.deleted_at is not None:
        return org
    org.deleted_at = timezone.now()
    org.updated_by = _label(actor)
    org.save(update_fields=["deleted_at", "updated_by", "updated_at"])
    record(
        actor=actor,
        action="organization_delete",
        object_type="organization",
        object_id=org.pk,
        organization_id=org.pk,
        before={"deleted_at": None},
        after={"deleted_at": org.deleted_at.isoformat()},
        affects=Affects(organization_ids={org.pk}),
    )
    return org


@transaction.atomic
def organization_member_add(
    *,
    actor: User | None,
    organization: Organization,
    user: User,
    user_role: str,
    max_budget_in_organization: Any = None,
    by: policy.Actor | None = None,
) -> OrganizationMembership:
    """Add a member (409 if already one). With `by`: the caller must manage the organization's members,
    and an existing user who belongs to another organization or holds a platform role needs a proxy admin."""
    if by is not None:
        policy.require(by, "organization:member_manage", policy.organization_target(organization))
        policy.raise_refusal(
            policy.can_add_member(by, policy.user_facts(user), organization_id=str(organization.pk)), param="user_id"
        )
    _validate_role(user_role, ORG_ROLES, "role")
    if OrganizationMembership.objects.filter(organization=organization, user=user).exists():
        raise Conflict(f"User {user.user_id} is already a member of this organization", param="user_id")
    membership = OrganizationMembership.objects.create(
        organization=organization,
        user=user,
        user_role=user_role,
        budget=_membership_budget(actor, None, max_budget_in_organization, "max_budget_in_organization"),
    )
    record(
        actor=actor,
        action="organization_member_add",
        object_type="organization_membership",
        object_id=f"{organization.pk}:{user.user_id}",
        organization_id=organization.pk,
        after={"user_id": user.user_id, "user_role": user_role, "max_budget": max_budget_in_organization},
        affects=Affects(user_pks={user.pk}),
    )
    return membership


@transaction.atomic
def organization_member_update(
    *,
    actor: User | None,
    membership: OrganizationMembership,
    user_role: str | None = None,
    max_budget_in_organization: Any = None,
    by: policy.Actor | None = None,
) -> OrganizationMembership:
    """Change a member's role or budget. With `by`: the caller manages the members, and nobody but a proxy
    admin changes their own role or budget."""
    membership = OrganizationMembership.objects.select_for_update(of=("self",)).select_related("user", "budget").get(
        pk=membership.pk
    )
    if by is not None:
        policy.require(by, "organization:member_manage", policy.Target(organization_id=str(membership.organization_id)))
        if user_role is not None or max_budget_in_organization is not None:
            policy.raise_refusal(policy.can_change_own_membership(by, membership.user.user_id))
    before, after = _change_membership(
        actor, membership, role_field="user_role", role=user_role, roles=ORG_ROLES,
        budget_label="max_budget", max_budget=max_budget_in_organization,
    )
    if after:
        record(
            actor=actor,
            action="organization_member_update",
            object_type="organization_membership",
            object_id=f"{membership.organization_id}:{membership.user.user_id}",
            organization_id=membership.organization_id,
            before=before,
            after=after,
            affects=Affects(user_pks={membership.user_id}),
        )
    return membership


@transaction.atomic
def organization_member_delete(*, actor: User | None, membership: OrganizationMembership) -> None:
    """Remove a member: their rights in the organization end at once.

    They also leave the organization's teams, and their keys in the organization are deleted (each
    audited), so no key of theirs keeps acting in a tenant they no longer belong to.
    """
    user = membership.user
    org_id = membership.organization_id
    before = {"user_id": user.user_id, "user_role": membership.user_role}
    for team_membership in TeamMembership.objects.filter(user=user, team__organization_id=org_id).select_related(
        "team", "user"
    ):
        team_member_delete(actor=actor, membership=team_membership)
    hooks.ask(hooks.user_leaving, actor=actor, user=user, organization_id=org_id)
    membership.delete()
    record(
        actor=actor,
        action="organization_member_delete",
        object_type="organization_membership",
        object_id=f"{org_id}:{user.user_id}",
        organization_id=org_id,
        before=before,
        affects=Affects(user_pks={user.pk}),
    )
