"""Building actors and targets from rows (once per request), so the rules stay pure."""
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db.models import CharField, Q, Value

from accessctl.roles import (
    MANAGE_TEAM,
    TEAM_ROLES,
    PlatformRole,
    TeamRole,
)

from .facts import (
    Actor,
    Target,
    UserFacts,
)

# --- building actors and targets from rows ----------------------------------------------------


def actor_for(user: Any | None, *, key: Any | None = None, is_master: bool = False) -> Actor:
    """Load the caller's memberships and team grants once (two queries) into an `Actor`.

    orgs' models are looked up in Django's app registry, not imported: orgs sits above the policy (its
    models import it), and the registry is where orgs declares them."""
    OrganizationMembership = apps.get_model("orgs", "OrganizationMembership")
    TeamMembership = apps.get_model("orgs", "TeamMembership")
    TeamUserObjectPermission = apps.get_model("orgs", "TeamUserObjectPermission")
    TeamGroupObjectPermission = apps.get_model("orgs", "TeamGroupObjectPermission")
    if user is None:
        return Actor(
            user_id=None,
            platform_role=None,
            is_master=is_master,
            key_team_id=str(key.team_id) if key is not None and key.team_id else None,
            key_token=key.token if key is not None else None,
        )
    org_roles = {
        str(org_id): role
        for org_id, role in OrganizationMembership.objects.filter(
            user=user, organization__deleted_at__isnull=True
        ).values_list("organization_id", "user_role")
    }
    # Memberships and guardian grants (to the user or one of their groups) in one UNION query; a grant
    # to manage a team confers the team admin's rights. Teams of soft-deleted organizations count for nothing.
    granted = Value(TeamRole.ADMIN.value, output_field=CharField())
    memberships = (
        TeamMembership.objects.filter(user=user)
        .exclude(team__organization__deleted_at__isnull=False)
        .annotate(grant=Value("", output_field=CharField()))
        .order_by()
        .values_list("team_id", "role", "grant", "team__organization_id")
    )
    grants = [
        model.objects.filter(who, permission__codename=MANAGE_TEAM)
        .exclude(content_object__organization__deleted_at__isnull=False)
        .annotate(team_role=granted, grant=granted)
        .order_by()
        .values_list("content_object_id", "team_role", "grant", "content_object__organization_id")
        for model, who in (
            (TeamUserObjectPermission, Q(user=user)),
            (TeamGroupObjectPermission, Q(group__user=user)),
        )
    ]
    team_roles: dict[str, str] = {}
    team_org_ids: dict[str, str | None] = {}
    granted_team_ids: set[str] = set()
    for team_id, role, grant, team_org_id in memberships.union(*grants, all=True):
        team_id = str(team_id)
        team_org_ids[team_id] = _s(team_org_id)
        if grant:
            granted_team_ids.add(team_id)
        if team_id not in team_roles or TEAM_ROLES[role].priority > TEAM_ROLES[team_roles[team_id]].priority:
            team_roles[team_id] = role
    return Actor(
        user_id=user.user_id,
        platform_role=PlatformRole.PROXY_ADMIN if is_master else user.user_role,
        is_system=bool(user.is_system),
        is_master=is_master,
        org_roles=org_roles,
        team_roles=team_roles,
        key_team_id=str(key.team_id) if key is not None and key.team_id else None,
        key_token=key.token if key is not None else None,
        user_pk=user.pk,
        granted_team_ids=frozenset(granted_team_ids),
        team_org_ids=team_org_ids,
    )


def _s(value: Any) -> str | None:
    return str(value) if value is not None else None


def key_target(key: Any) -> Target:
    """A key's facts; the key must be loaded with `select_related("team", "user")`."""
    team = key.team
    return Target(
        organization_id=_s(key.organization_id or (team.organization_id if team is not None else None)),
        team_id=_s(key.team_id),
        owner_user_id=key.user.user_id if key.user_id else None,
        member_permissions=tuple(team.member_permissions) if team is not None and team.member_permissions is not None else None,
        key_token=key.token,
    )


def new_key_target(
    *, owner_user_id: str | None, team: Any | None, organization_id: Any | None = None,
    owner_in_team: bool | None = None, owner: UserFacts | None = None,
) -> Target:
    """Where a key would be created: in a team, or as someone's personal key. `owner` carries the facts
    of an existing owner (`user_facts`), so the policy can judge whose key it would be."""
    if team is not None:
        return Target(
            organization_id=_s(team.organization_id),
            team_id=_s(team.team_id),
            owner_user_id=owner_user_id,
            member_permissions=tuple(team.member_permissions) if team.member_permissions is not None else None,
            owner_in_team=owner_in_team,
            owner=owner,
        )
    return Target(organization_id=_s(organization_id), owner_user_id=owner_user_id, owner=owner)


def user_facts(user: Any | None) -> UserFacts | None:
    """A user's platform role and memberships (two queries unless the memberships are prefetched with
    `team`), for `manages_user` and `can_add_member`."""
    if user is None or getattr(user, "pk", None) is None:
        return None
    cache = getattr(user, "_prefetched_objects_cache", {})
    if "organization_memberships" in cache:
        org_roles = tuple((str(m.organization_id), m.user_role) for m in user.organization_memberships.all())
    else:
        org_roles = tuple(
            (str(org), role) for org, role in user.organization_memberships.values_list("organization_id", "user_role")
        )
    team_rows = list(user.team_memberships.all()) if "team_memberships" in cache else None
    if team_rows is not None and all(m._state.fields_cache.get("team") is not None for m in team_rows):
        teams = tuple((str(m.team_id), _s(m.team.organization_id)) for m in team_rows)
    else:
        teams = tuple(
            (str(team), _s(org)) for team, org in user.team_memberships.values_list("team_id", "team__organization_id")
        )
    return UserFacts(
        user_id=user.user_id,
        platform_role=user.user_role,
        is_system=bool(user.is_system),
        org_roles=org_roles,
        teams=teams,
    )


def team_target(team: Any) -> Target:
    return Target(
        organization_id=_s(team.organization_id),
        team_id=_s(team.team_id),
        member_permissions=tuple(team.member_permissions) if team.member_permissions is not None else None,
        is_global=team.organization_id is None,
    )


def organization_target(organization: Any) -> Target:
    return Target(organization_id=_s(organization.pk))


def user_target(user: Any, *, new_platform_role: str | None = None) -> Target:
    """A user's facts, with the organizations and teams they belong to (two queries unless prefetched,
    with `team_memberships__team`)."""
    facts = user_facts(user)
    return Target(
        owner_user_id=user.user_id,
        user_org_ids=facts.org_ids,
        user_team_ids=tuple(team for team, _ in facts.teams),
        new_platform_role=new_platform_role,
        owner_platform_role=user.user_role,
        owner=facts,
    )


def access_group_target(group: Any) -> Target:
    return Target(organization_id=_s(group.organization_id), is_global=group.organization_id is None)


def bulk_job_target(job: Any) -> Target:
    # "system" marks a job no user started (the admin's or a command's): no user owns it.
    owner = job.requested_by if job.requested_by not in ("", "system") else None
    return Target(organization_id=_s(job.organization_id), owner_user_id=owner,
                  is_global=job.organization_id is None)
