"""Every write to users, organizations, teams and memberships; each in a transaction, each audited."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from accessctl import policy
from accessctl.common import field_values, model_update
from accessctl.errors import Conflict, InvalidInput
from accessctl.ids import new_id, valid_id
from keys.authz import Allow
from keys.services import BUDGET_FIELDS, SPEND_FIELDS, validate_budget, validate_models

from .audit import Affects, record
from .models import AuditEntry, Budget, Organization, OrganizationMembership, Team, TeamMembership, User
from .roles import (
    ORG_ROLES,
    PLATFORM_ROLES,
    TEAM_MEMBER_PERMISSIONS,
    TEAM_ROLES,
    OrgRole,
    PlatformRole,
    TeamRole,
)

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


# --- users ------------------------------------------------------------------------------------

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


def _s(value: Any) -> str | None:
    return str(value) if value is not None else None


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
    from keys.services import key_delete

    for key in list(user.keys.all()):
        key_delete(actor=actor, key=key)
    user.delete()
    record(actor=actor, action="user_delete", object_type="user", object_id=user_id, before=before, affects=affects)


# --- organizations ----------------------------------------------------------------------------

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
    from keys.models import VirtualKey
    from keys.services import key_delete

    user = membership.user
    org_id = membership.organization_id
    before = {"user_id": user.user_id, "user_role": membership.user_role}
    for team_membership in TeamMembership.objects.filter(user=user, team__organization_id=org_id).select_related(
        "team", "user"
    ):
        team_member_delete(actor=actor, membership=team_membership)
    for key in VirtualKey.objects.filter(user=user, organization_id=org_id):
        key_delete(actor=actor, key=key)
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


# --- teams ------------------------------------------------------------------------------------

def _clean_team_data(data: dict[str, Any], organization: Organization | None) -> dict[str, Any]:
    clean = validate_budget({k: v for k, v in data.items() if k in TEAM_FIELDS}, timezone.now())
    if "models" in clean:
        clean["models"] = validate_models(clean["models"])
        ceiling = organization.models if organization is not None else []
        outside = models_outside(clean["models"], ceiling)
        if outside:
            raise InvalidInput(
                f"Models outside the organization's allowed models: {', '.join(outside)}.", param="models"
            )
    if "member_permissions" in clean:
        clean["member_permissions"] = _validate_member_permissions(clean["member_permissions"])
    if "blocked" in clean:
        clean["blocked"] = bool(clean["blocked"])
    return clean


@transaction.atomic
def team_create(
    *,
    actor: User | None,
    organization: Organization | None = None,
    team_id: Any = None,
    access_group_ids: list[Any] | None = None,
    members: list[tuple[User, str]] | None = None,
    by: policy.Actor | None = None,
    legacy_admins: list[str] | None = None,
    legacy_members: list[str] | None = None,
    **data: Any,
) -> Team:
    """Create a team (inside at most one organization), its members and access-group assignments. With
    `by`, each existing member other than the caller is judged as a member add (`policy.can_add_member`).
    `legacy_admins` / `legacy_members` are LiteLLM's legacy lists, stored as given and never changed after."""
    from accessgroups.services import set_assigned_groups

    if by is not None:
        for user, _ in members or []:
            if user.user_id != by.user_id:
                policy.raise_refusal(
                    policy.can_add_member(by, policy.user_facts(user), organization_id=_s(organization and organization.pk)),
                    param="members_with_roles",
                )

    if organization is not None and organization.deleted_at is not None:
        raise InvalidInput("The organization is deleted.", param="organization_id")
    clean = _clean_team_data(data, organization)
    clean.pop("organization", None)
    if team_id is not None:
        team_id = valid_id(team_id, "team_id")
        if _id_taken(Team, team_id, "team"):
            raise InvalidInput(
                f"Team id = {team_id} already exists. Please use a different team id.", param="team_id"
            )
    kwargs = {"team_id": team_id} if team_id else {}
    team = Team.objects.create(
        organization=organization,
        created_by=_label(actor),
        updated_by=_label(actor),
        legacy_admins=list(legacy_admins or []),
        legacy_members=list(legacy_members or []),
        **kwargs,
        **clean,
    )
    if access_group_ids:
        set_assigned_groups(target=team, group_ids=access_group_ids, organization=organization)
    for user, role in members or []:
        _validate_role(role, TEAM_ROLES, "role")
        TeamMembership.objects.get_or_create(team=team, user=user, defaults={"role": role})
    record(
        actor=actor,
        action="team_create",
        object_type="team",
        object_id=team.pk,
        organization_id=team.organization_id,
        after={
            **field_values(team, (*TEAM_FIELDS, "access_group_ids")),
            "members": [[u.user_id, r] for u, r in members or []],
        },
    )
    return team


def authorize_team_update(by: policy.Actor, team: Team, data: dict[str, Any]) -> None:
    """May `by` make this change to `team`? `team:update` (unless only the member permissions change), each
    changed field's further action (`policy.FIELD_ACTIONS["team"]`), and moving the team to another
    organization is creating it there (`team:create`)."""
    target = policy.team_target(team)
    further = policy.actions_for("team", data)
    if set(data) - set(policy.FIELD_ACTIONS["team"]["team:permissions_update"]) or not further:
        policy.require(by, "team:update", target)
    for action in further:
        policy.require(by, action, target)
    if "organization" in data and _pk(data["organization"]) != team.organization_id:
        new_org = data["organization"]
        policy.require(by, "team:create", policy.Target(organization_id=_s(_pk(new_org))))


def _pk(value: Any) -> Any:
    return getattr(value, "pk", value)


@transaction.atomic
def team_update(*, actor: User | None, team: Team, data: dict[str, Any], by: policy.Actor | None = None) -> Team:
    """Apply the fields present in `data`; `access_group_ids` replaces the team's groups. With `by`, the
    change is authorized field by field before any write (`authorize_team_update`)."""
    from accessgroups.services import set_assigned_groups

    team = Team.objects.select_for_update(of=("self",)).select_related("organization").get(pk=team.pk)
    if by is not None:
        authorize_team_update(by, team, data)
    organization = data.get("organization", team.organization)
    clean = _clean_team_data(data, organization)
    old_groups = list(team.access_group_ids)
    old_org = team.organization_id
    before, after = model_update(team, clean, TEAM_FIELDS)
    if "organization" in after:
        from keys.models import VirtualKey

        VirtualKey.objects.filter(team=team).update(organization=team.organization)
    if "access_group_ids" in data:
        set_assigned_groups(target=team, group_ids=data["access_group_ids"] or [], organization=team.organization)
        if team.access_group_ids != old_groups:
            before["access_group_ids"], after["access_group_ids"] = old_groups, list(team.access_group_ids)
    if after:
        Team.objects.filter(pk=team.pk).update(updated_by=_label(actor))
        record(
            actor=actor,
            action="team_update",
            object_type="team",
            object_id=team.pk,
            organization_id=team.organization_id or old_org,
            before=before,
            after=after,
            affects=Affects(team_ids={team.pk}),
        )
    return team


@transaction.atomic
def team_delete(*, actor: User | None, team: Team, by: policy.Actor | None = None) -> None:
    """Delete a team with its keys, memberships and access-group assignments. With `by`: proxy admins and
    the team's organization admins only (`team:delete`)."""
    from accessgroups.models import KeyAccessGroup
    from accessgroups.services import count_assignments

    if by is not None:
        policy.require(by, "team:delete", policy.team_target(team))

    before = field_values(team, (*TEAM_FIELDS, "access_group_ids"))
    # Old tokens of rotations too: the keys are gone after commit, so they cannot be looked up then.
    affects = Affects(tokens={t for pair in team.keys.values_list("token", "previous_token") for t in pair if t},
                      team_ids={team.pk})
    team_id, org_id = team.pk, team.organization_id
    # The keys' locks first (their access-group rows have no foreign key in the database): an assignment
    # adding a row for one of them committed before, and is deleted below, or waits and finds the key gone.
    list(team.keys.select_for_update().values_list("pk", flat=True))
    # Set-based: detach the team's keys from their groups in one statement, then take them off the groups'
    # counts (a difference, not a recount: a group may hold a million keys of other teams).
    assigned = KeyAccessGroup.objects.filter(key__team=team)
    removed = dict(assigned.values("access_group_id").annotate(n=Count("*")).order_by().values_list("access_group_id", "n"))
    assigned._raw_delete(KeyAccessGroup.objects.db)
    count_assignments(KeyAccessGroup, {group_id: -n for group_id, n in removed.items()})
    team.delete()
    record(
        actor=actor,
        action="team_delete",
        object_type="team",
        object_id=team_id,
        organization_id=org_id,
        before=before,
        affects=affects,
    )


@transaction.atomic
def team_member_add(
    *, actor: User | None, team: Team, user: User, role: str = TeamRole.USER, max_budget_in_team: Any = None,
    by: policy.Actor | None = None,
) -> TeamMembership:
    """Add a member; already a member → 400 `team_member_already_in_team`. With `by`: the caller manages
    the team's members, and an existing user of another organization (or with a platform role) needs a
    proxy admin."""
    if by is not None:
        policy.require(by, "team:member_manage", policy.team_target(team))
        policy.raise_refusal(
            policy.can_add_member(by, policy.user_facts(user), organization_id=_s(team.organization_id)),
            param="user_id",
        )
    _validate_role(role, TEAM_ROLES, "role")
    if TeamMembership.objects.filter(team=team, user=user).exists():
        raise InvalidInput(
            f"User already in team. Member: user_id={user.user_id}", param="user_id", type="team_member_already_in_team"
        )
    membership = TeamMembership.objects.create(
        team=team, user=user, role=role, budget=_membership_budget(actor, None, max_budget_in_team, "max_budget_in_team")
    )
    record(
        actor=actor,
        action="team_member_add",
        object_type="team_membership",
        object_id=f"{team.pk}:{user.user_id}",
        organization_id=team.organization_id,
        after={"user_id": user.user_id, "role": role, "max_budget_in_team": max_budget_in_team},
        affects=Affects(user_pks={user.pk}),
    )
    return membership


@transaction.atomic
def team_member_update(
    *, actor: User | None, membership: TeamMembership, role: str | None = None, max_budget_in_team: Any = None,
    by: policy.Actor | None = None,
) -> TeamMembership:
    """Change a member's role or budget. With `by`: the caller manages the team's members, and nobody but a
    proxy admin changes their own role or budget."""
    membership = TeamMembership.objects.select_for_update(of=("self",)).select_related("user", "team", "budget").get(
        pk=membership.pk
    )
    if by is not None:
        policy.require(by, "team:member_manage", policy.team_target(membership.team))
        if role is not None or max_budget_in_team is not None:
            policy.raise_refusal(policy.can_change_own_membership(by, membership.user.user_id))
    before, after = _change_membership(
        actor, membership, role_field="role", role=role, roles=TEAM_ROLES,
        budget_label="max_budget_in_team", max_budget=max_budget_in_team,
    )
    if after:
        record(
            actor=actor,
            action="team_member_update",
            object_type="team_membership",
            object_id=f"{membership.team_id}:{membership.user.user_id}",
            organization_id=membership.team.organization_id,
            before=before,
            after=after,
            affects=Affects(user_pks={membership.user_id}),
        )
    return membership


@transaction.atomic
def team_member_delete(*, actor: User | None, membership: TeamMembership) -> None:
    """Remove a member and delete their keys in that team (as LiteLLM does): their rights end at once."""
    from keys.services import key_delete

    user, team = membership.user, membership.team
    before = {"user_id": user.user_id, "role": membership.role}
    for key in list(team.keys.filter(user=user)):
        key_delete(actor=actor, key=key)
    membership.delete()
    record(
        actor=actor,
        action="team_member_delete",
        object_type="team_membership",
        object_id=f"{team.pk}:{user.user_id}",
        organization_id=team.organization_id,
        before=before,
        affects=Affects(user_pks={user.pk}, team_ids={team.pk}),
    )


@transaction.atomic
def team_permissions_update(*, actor: User | None, team: Team, permissions: list[str]) -> Team:
    """Overwrite what members with role `user` may do on the team's keys."""
    return team_update(actor=actor, team=team, data={"member_permissions": permissions})


# --- object-level grants (django-guardian) ---------------------------------------------------------


@transaction.atomic
def team_grant_manage(*, actor: User | None, team: Team, user: User) -> bool:
    """Let `user` manage `team` (its members and keys, as its admins may) without a membership.

    Stored as a guardian object permission on the team's direct foreign-key table, so deleting the team
    deletes the grant. Returns False (and records nothing) when the grant already exists.
    """
    from guardian.shortcuts import assign_perm

    from .models import MANAGE_TEAM, TeamUserObjectPermission

    team = Team.objects.select_for_update().get(pk=team.pk)
    if TeamUserObjectPermission.objects.filter(
        content_object=team, user=user, permission__codename=MANAGE_TEAM
    ).exists():
        return False
    assign_perm(f"orgs.{MANAGE_TEAM}", user, team)
    record(
        actor=actor,
        action="team_grant_manage",
        object_type="team_grant",
        object_id=f"{team.pk}:{user.user_id}",
        organization_id=team.organization_id,
        after={"user_id": user.user_id, "permission": MANAGE_TEAM},
        affects=Affects(user_pks={user.pk}),
    )
    return True


@transaction.atomic
def team_revoke_manage(*, actor: User | None, team: Team, user: User) -> bool:
    """Withdraw a grant made by `team_grant_manage`; the user's rights end on their next request.

    Returns False (and records nothing) when there was no such grant.
    """
    from .models import MANAGE_TEAM, TeamUserObjectPermission

    deleted, _ = TeamUserObjectPermission.objects.filter(
        content_object=team, user=user, permission__codename=MANAGE_TEAM
    ).delete()
    if not deleted:
        return False
    record(
        actor=actor,
        action="team_revoke_manage",
        object_type="team_grant",
        object_id=f"{team.pk}:{user.user_id}",
        organization_id=team.organization_id,
        before={"user_id": user.user_id, "permission": MANAGE_TEAM},
        affects=Affects(user_pks={user.pk}),
    )
    return True
