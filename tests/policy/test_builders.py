"""The builders that turn rows into the policy's `Actor` and `Target`."""
from __future__ import annotations

import pytest

from accessctl import policy
from orgs import selectors
from orgs import services as org_services
from orgs.models import User
from tests.factories import (
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_actor_for_loads_org_and_team_roles_in_two_queries(django_assert_num_queries):
    user = UserFactory()
    org = OrganizationFactory()
    OrganizationMembershipFactory(organization=org, user=user, user_role="org_admin")
    team = TeamFactory(organization=org)
    TeamMembershipFactory(team=team, user=user, role="admin")

    with django_assert_num_queries(2):
        actor = policy.actor_for(user)

    assert (actor.org_roles, actor.team_roles) == ({str(org.pk): "org_admin"}, {str(team.pk): "admin"})


def test_actor_for_ignores_memberships_of_a_soft_deleted_organization():
    user = UserFactory()
    org = OrganizationFactory()
    OrganizationMembershipFactory(organization=org, user=user, user_role="org_admin")
    TeamMembershipFactory(team=TeamFactory(organization=org), user=user, role="admin")
    org_services.organization_delete(actor=None, organization=org)

    actor = policy.actor_for(user)

    assert (actor.org_roles, actor.team_roles) == ({}, {})


def test_actor_for_the_master_key_is_a_proxy_admin():
    actor = policy.actor_for(UserFactory(user_id="default_user_id"), is_master=True)

    assert actor.is_proxy_admin and actor.reads_everything


def test_actor_for_a_service_account_key_knows_its_team():
    team = TeamFactory()
    key = KeyFactory(user=None, team=team)

    actor = policy.actor_for(None, key=key)

    assert actor.is_service_account
    assert (actor.key_team_id, actor.key_token) == (str(team.pk), key.token)


def test_key_target_of_a_team_key_carries_the_teams_organization_and_grants():
    org = OrganizationFactory()
    team = TeamFactory(organization=org, member_permissions=["/key/update"])
    owner = UserFactory()
    TeamMembershipFactory(team=team, user=owner)
    key = KeyFactory(user=owner, team=team)

    target = policy.key_target(key)

    assert target == policy.Target(
        organization_id=str(org.pk), team_id=str(team.pk), owner_user_id=owner.user_id,
        member_permissions=("/key/update",), key_token=key.token,
    )


def test_user_target_reads_prefetched_memberships_without_queries(django_assert_num_queries):
    user = UserFactory()
    org, team = OrganizationFactory(), TeamFactory()
    OrganizationMembershipFactory(organization=org, user=user)
    TeamMembershipFactory(team=team, user=user)
    loaded = selectors.with_memberships(User.objects.filter(pk=user.pk)).get()

    with django_assert_num_queries(0):
        target = policy.user_target(loaded)

    assert (target.user_org_ids, target.user_team_ids) == ((str(org.pk),), (str(team.pk),))
    assert target.owner.teams == ((str(team.pk), str(team.organization_id) if team.organization_id else None),)


def test_actor_for_knows_the_organization_of_each_team():
    org = OrganizationFactory()
    team = TeamFactory(organization=org)
    user = UserFactory()
    TeamMembershipFactory(team=team, user=user, role="admin")

    actor = policy.actor_for(user)

    assert actor.team_org_ids == {str(team.pk): str(org.pk)}
    assert actor.admin_team_org_ids == {str(org.pk)}
