"""Authorization of key writes: each command asks the policy itself, before its first write."""
from __future__ import annotations

import dataclasses
from typing import Any

from accessctl import policy
from accessctl.budgets import validate_models
from accessctl.errors import InvalidInput
from orgs.models import Organization, Team, User

from ..models import VirtualKey
from ..selectors import model_ceilings
from .validation import (
    _pk,
    validate_allowed_routes,
    validate_key_type,
)


def _is_member(team: Team | None, user: User | None) -> bool | None:
    if team is None or user is None:
        return None
    return team.memberships.filter(user=user).exists()


def _grant_models(by: policy.Actor, models: Any, team: Team | None, organization: Organization | None,
                  owner: User | None) -> None:
    if models:
        policy.raise_refusal(
            policy.can_grant_models(by, validate_models(models), model_ceilings(team, organization, owner)),
            param="models",
        )


def authorize_key_generate(
    by: policy.Actor,
    *,
    user: User | None,
    new_user_id: str | None,
    team: Team | None,
    organization: Organization | None,
    models: Any = None,
    access_group_ids: Any = None,
) -> None:
    """May `by` mint this key: there (team / organization), for that owner (the caller, nobody, or a user
    they manage), with those models and access groups? `new_user_id` names an owner the command would create."""
    owner_id = user.user_id if user is not None else new_user_id
    target = policy.new_key_target(
        owner_user_id=owner_id,
        team=team,
        organization_id=organization.pk if organization is not None and team is None else None,
        owner_in_team=_is_member(team, user) if user is not None else (False if new_user_id and team else None),
        owner=policy.user_facts(user),
    )
    if new_user_id is not None:
        # An owner this request creates joins the key's organization and nothing else.
        org_roles = ((str(organization.pk), "internal_user"),) if organization is not None else ()
        target = dataclasses.replace(target, owner=policy.UserFacts(user_id=new_user_id, org_roles=org_roles))
    policy.require(by, "key:generate", target)
    if access_group_ids:
        policy.require(by, "key:assign_access_groups", target)
    if new_user_id is not None and not policy.can(
        by, "user:create", policy.Target(organization_id=str(organization.pk) if organization is not None else None)
    ):
        raise InvalidInput(f"User {new_user_id} not found.", param="user_id")
    _grant_models(by, models, team, organization, user)


def authorize_key_update(by: policy.Actor, key: VirtualKey, data: dict[str, Any], *, action: str = "key:update",
                         new_user_id: str | None = None) -> None:
    """May `by` make this change to `key`? Each changed field's action comes from `policy.FIELD_ACTIONS`;
    moving a key (owner or team) is also creating it at the new place."""
    target = policy.key_target(key)
    owner = data.get("user", key.user) if new_user_id is None else None
    team = data.get("team", key.team)
    owner_changed = new_user_id is not None or ("user" in data and _pk(data["user"]) != key.user_id)
    team_changed = "team" in data and _pk(data["team"]) != key.team_id
    org_changed = "organization" in data and _pk(data["organization"]) != key.organization_id
    changed = {name for name in data if name not in ("user", "team", "organization")}
    for name, moved in (("user", owner_changed), ("team", team_changed), ("organization", org_changed)):
        if moved:
            changed.add(name)
    further = policy.actions_for("key", changed)
    if owner_changed:
        policy.require(by, "key:reassign", target)  # LiteLLM asks this before the route's own permission
    policy.require(by, action, target)
    for name in further:
        policy.require(by, name, target)
    if "blocked" in data and bool(data["blocked"]) != key.blocked:
        policy.require(by, "key:block" if data["blocked"] else "key:unblock", target)
    if "key_type" in data or "allowed_routes" in data:
        new_rule = (
            validate_key_type(data.get("key_type", key.key_type)),
            validate_allowed_routes(data.get("allowed_routes", key.allowed_routes)),
        )
        policy.raise_refusal(
            policy.can_change_routes(by, target, new=new_rule, old=(key.key_type, list(key.allowed_routes or []))),
            param="key_type" if "key_type" in data else "allowed_routes",
        )
    organization = team.organization if team is not None else data.get("organization", key.organization)
    if owner_changed or team_changed or org_changed:
        if owner is None and new_user_id is None and team is None:
            raise InvalidInput("A key needs an owner (user_id) or a team.", param="user_id")
        authorize_key_generate(by, user=owner, new_user_id=new_user_id, team=team, organization=organization)
    _grant_models(by, data.get("models"), team, organization, owner)
