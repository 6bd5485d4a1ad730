"""Whose: the users an actor manages, and who may own a key or join a tenant."""
from __future__ import annotations

from accessctl.roles import (
    ORG_ROLES,
    OrgRole,
    outranks,
)

from .facts import (
    ALLOW,
    Actor,
    Target,
    UserFacts,
    Verdict,
    deny,
)

# --- whose: the users an actor manages ---------------------------------------------------------


def manages_user(actor: Actor, user: UserFacts | None) -> bool:
    """May `actor` act *as* or *for* this user (own their key, change their profile, manage their membership)?

    A proxy admin manages everyone. An organization or team admin manages only members of their tenant who
    hold no platform role above internal_user, are not system users, belong to no organization they do not
    administer (a team admin: at most the organization of their team, with a role no higher than their own
    there) and to no team they do not run. Nobody "manages" themself: the caller's own rows are the caller's.
    """
    if actor.is_proxy_admin:
        return True
    if user is None or actor.user_id is None or user.user_id == actor.user_id or user.above_internal_user:
        return False
    in_tenant = False
    for org, role in user.org_roles:
        if org in actor.admin_org_ids:
            in_tenant = True
            continue
        # A team admin acts in their team's organization as (at least) an internal user there.
        mine = actor.org_role(org) or OrgRole.INTERNAL_USER
        if org in actor.admin_team_org_ids and role in ORG_ROLES and outranks(ORG_ROLES, mine, role):
            continue
        return False
    for team, org in user.teams:
        if team in actor.admin_team_ids or (org is not None and org in actor.admin_org_ids):
            in_tenant = True
            continue
        return False
    return in_tenant


def may_own_key(actor: Actor, target: Target) -> bool:
    """A key's owner is the caller, nobody (a key without a user), or a user the caller manages."""
    if actor.is_proxy_admin or target.owner_user_id is None or target.owner_user_id == actor.user_id:
        return True
    if target.owner is None:
        return False
    return manages_user(actor, target.owner)


def can_add_member(actor: Actor, user: UserFacts | None, *, organization_id: str | None) -> Verdict:
    """Adding an existing user who belongs elsewhere (another organization) or holds a platform role above
    internal_user needs a proxy admin; a user created by the request (None) belongs nowhere yet."""
    if actor.is_proxy_admin or user is None:
        return ALLOW
    if user.above_internal_user:
        return deny(403, f"Only a proxy admin may add {user.user_id}: they hold a platform role or are a system user.")
    elsewhere = [o for o in user.org_ids if o != organization_id and o not in actor.admin_org_ids]
    if elsewhere:
        return deny(403, f"Only a proxy admin may add {user.user_id}: they belong to another organization.")
    return ALLOW


def can_change_own_membership(actor: Actor, member_user_id: str | None) -> Verdict:
    """Nobody raises their own role or budget in an organization or team (SPEC §2); proxy admins may."""
    if actor.is_proxy_admin or member_user_id is None or member_user_id != actor.user_id:
        return ALLOW
    return deny(403, "You may not change your own role or budget in this organization or team.")
