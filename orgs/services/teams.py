"""Every write to teams, their memberships and member permissions, and the object-level "manage team"
grants (django-guardian)."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accessctl import policy
from accessctl.budgets import validate_budget, validate_models
from accessctl.common import field_values, model_update
from accessctl.errors import InvalidInput
from accessctl.ids import valid_id
from accessctl.roles import (
    TEAM_ROLES,
    TeamRole,
)

from .. import hooks
from ..audit import Affects, record
from ..models import MANAGE_TEAM, Organization, Team, TeamMembership, TeamUserObjectPermission, User
from .common import (
    TEAM_FIELDS,
    _change_membership,
    _id_taken,
    _label,
    _membership_budget,
    _s,
    _validate_member_permissions,
    _validate_role,
    models_outside,
)


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
        hooks.ask(hooks.assign_groups, target=team, group_ids=access_group_ids, organization=organization)
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
    team = Team.objects.select_for_update(of=("self",)).select_related("organization").get(pk=team.pk)
    if by is not None:
        authorize_team_update(by, team, data)
    organization = data.get("organization", team.organization)
    clean = _clean_team_data(data, organization)
    old_groups = list(team.access_group_ids)
    old_org = team.organization_id
    before, after = model_update(team, clean, TEAM_FIELDS)
    if "organization" in after:
        hooks.ask(hooks.team_moved, team=team)
    if "access_group_ids" in data:
        hooks.ask(
            hooks.assign_groups, target=team, group_ids=data["access_group_ids"] or [], organization=team.organization
        )
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
    hooks.ask(hooks.team_deleting, team=team)
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
    user, team = membership.user, membership.team
    before = {"user_id": user.user_id, "role": membership.role}
    hooks.ask(hooks.user_leaving, actor=actor, user=user, team=team)
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


@transaction.atomic
def team_grant_manage(*, actor: User | None, team: Team, user: User) -> bool:
    """Let `user` manage `team` (its members and keys, as its admins may) without a membership.

    Stored as a guardian object permission on the team's direct foreign-key table, so deleting the team
    deletes the grant. Returns False (and records nothing) when the grant already exists.
    """
    from guardian.shortcuts import assign_perm

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
