"""Services of SCIM provisioning (SPEC §10): the IdP's users and groups, written through the user,
team and organization services, so every change is audited and invalidates the authorization cache.

A deprovisioned user (`active: false`) keeps their rows but every key of theirs is refused from the next
check (the snapshot's `user_active`); a deleted user loses their keys. A SCIM group is a team of
ACCESSCTL_SCIM_GROUPS["organization_id"] (target "team") or an organization (target "organization"),
and its members are that team's or organization's members.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from accessctl.errors import Conflict, InvalidInput
from accessctl.roles import OrgRole, TeamRole

from . import services
from .audit import record
from .models import Organization, OrganizationMembership, ScimGroup, TeamMembership, User


def group_target() -> tuple[str, Organization | None]:
    """("team", the organization new teams go in) or ("organization", None), from the settings."""
    conf = getattr(settings, "ACCESSCTL_SCIM_GROUPS", None) or {"target": "organization"}
    target = conf.get("target")
    if target == "organization":
        return target, None
    if target == "team":
        organization = Organization.objects.filter(pk=conf.get("organization_id"), deleted_at__isnull=True).first()
        if organization is None:
            raise ImproperlyConfigured("ACCESSCTL_SCIM_GROUPS: target team needs an existing organization_id.")
        return target, organization
    raise ImproperlyConfigured('ACCESSCTL_SCIM_GROUPS["target"] must be "team" or "organization".')


@transaction.atomic
def scim_user_create(*, user_name: str, fields: dict[str, Any]) -> User:
    if not isinstance(user_name, str) or not user_name.strip():
        raise InvalidInput("userName is required.", param="userName")
    if User.objects.filter(user_id=user_name).exists():
        raise Conflict(f"A user with userName {user_name!r} already exists.", param="userName")
    return services.user_create(actor=None, user_id=user_name, **fields)


@transaction.atomic
def scim_user_update(*, user: User, user_name: str | None, fields: dict[str, Any]) -> User:
    """Apply the IdP's changes; `is_active: False` deprovisions (keys refused on the next check)."""
    if user_name is not None and user_name != user.user_id:
        raise InvalidInput("userName cannot change: it is the user's user_id.", param="userName")
    return services.user_update(actor=None, user=user, data=fields)


@transaction.atomic
def scim_user_delete(*, user: User) -> None:
    services.user_delete(actor=None, user=user)


def _members(group: ScimGroup) -> dict[int, Any]:
    if group.team_id:
        return {m.user_id: m for m in TeamMembership.objects.filter(team_id=group.team_id)}
    return {m.user_id: m for m in OrganizationMembership.objects.filter(organization_id=group.organization_id)}


def group_member_ids(group: ScimGroup) -> list[int]:
    return sorted(_members(group))


@transaction.atomic
def scim_group_set_members(*, group: ScimGroup, add: list[User] = (), remove: list[User] = ()) -> None:
    """Add and remove members of the group's team or organization, through their services."""
    held = _members(group)
    for user in add:
        if user.pk in held:
            continue
        if group.team_id:
            services.team_member_add(actor=None, team=group.team, user=user, role=TeamRole.USER)
        else:
            services.organization_member_add(
                actor=None, organization=group.organization, user=user, user_role=OrgRole.INTERNAL_USER
            )
    for user in remove:
        membership = held.get(user.pk)
        if membership is None:
            continue
        if group.team_id:
            services.team_member_delete(actor=None, membership=membership)
        else:
            services.organization_member_delete(actor=None, membership=membership)


@transaction.atomic
def scim_group_replace_members(*, group: ScimGroup, users: list[User]) -> None:
    wanted = {u.pk for u in users}
    held = _members(group)
    scim_group_set_members(
        group=group, add=[u for u in users if u.pk not in held],
        remove=list(User.objects.filter(pk__in=set(held) - wanted)),
    )


@transaction.atomic
def scim_group_create(*, display_name: str, external_id: str | None, members: list[User]) -> ScimGroup:
    if not isinstance(display_name, str) or not display_name.strip():
        raise InvalidInput("displayName is required.", param="displayName")
    if ScimGroup.objects.filter(display_name=display_name).exists():
        raise Conflict(f"A group named {display_name!r} already exists.", param="displayName")
    target, organization = group_target()
    if target == "team":
        team = services.team_create(actor=None, organization=organization, team_alias=display_name)
        group = ScimGroup.objects.create(display_name=display_name, scim_external_id=external_id, team=team)
    else:
        organization = services.organization_create(actor=None, organization_alias=display_name)
        group = ScimGroup.objects.create(
            display_name=display_name, scim_external_id=external_id, organization=organization
        )
    record(actor=None, action="scim_group_create", object_type="scim_group", object_id=group.pk,
           organization_id=organization.pk if organization else None,
           after={"display_name": display_name, "external_id": external_id, "target": target})
    scim_group_set_members(group=group, add=members)
    return group


@transaction.atomic
def scim_group_update(*, group: ScimGroup, display_name: str | None = None, external_id: Any = ...) -> ScimGroup:
    group = ScimGroup.objects.select_for_update().get(pk=group.pk)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if display_name is not None and display_name != group.display_name:
        if not display_name.strip() or ScimGroup.objects.filter(display_name=display_name).exclude(pk=group.pk).exists():
            raise Conflict(f"A group named {display_name!r} already exists.", param="displayName")
        before["display_name"], after["display_name"] = group.display_name, display_name
        group.display_name = display_name
        if group.team_id:
            services.team_update(actor=None, team=group.team, data={"team_alias": display_name})
        else:
            services.organization_update(actor=None, organization=group.organization,
                                         data={"organization_alias": display_name})
    if external_id is not ... and external_id != group.scim_external_id:
        before["external_id"], after["external_id"] = group.scim_external_id, external_id
        group.scim_external_id = external_id
    if after:
        group.save()
        record(actor=None, action="scim_group_update", object_type="scim_group", object_id=group.pk,
               before=before, after=after)
    return group


@transaction.atomic
def scim_group_delete(*, group: ScimGroup) -> None:
    """Delete the group with its team (members lose their team keys), or soft-delete its organization."""
    record(actor=None, action="scim_group_delete", object_type="scim_group", object_id=group.pk,
           before={"display_name": group.display_name})
    team, organization = group.team, group.organization
    group.delete()
    if team is not None:
        services.team_delete(actor=None, team=team)
    elif organization is not None:
        services.organization_delete(actor=None, organization=organization)
