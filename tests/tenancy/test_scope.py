"""`TenantContext.scope`: the context's filter, applied inside the query."""
from __future__ import annotations

import pytest

from accessctl import policy
from accessctl.tenancy import ALL, ORGANIZATION, PERSONAL, TenantContext
from keys.models import VirtualKey
from orgs.models import Team
from tests.factories import KeyFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


def _teams(context: TenantContext) -> set:
    return set(context.scope(Team.objects.all(), org_field="organization", team_field="team_id"))


def test_scope_of_admin_in_all_mode_is_unfiltered(tenant_a, tenant_b):
    context = TenantContext(policy.Actor(user_id="root", platform_role="proxy_admin"), ALL)

    assert _teams(context) == {tenant_a.team, tenant_b.team}


def test_scope_of_admin_in_organization_mode_is_that_organization(tenant_a, tenant_b):
    context = TenantContext(policy.Actor(user_id="root", platform_role="proxy_admin"), ORGANIZATION, tenant_b.org)

    assert not context.bypass
    assert _teams(context) == {tenant_b.team}


def test_scope_of_system_user_bypasses_even_an_organization(tenant_a, tenant_b):
    gateway = policy.Actor(user_id="gw", platform_role="internal_user", is_system=True)

    assert _teams(TenantContext(gateway, ORGANIZATION, tenant_a.org)) == {tenant_a.team, tenant_b.team}


def test_scope_personal_holds_own_rows_teams_and_organizations(tenant_a, tenant_b):
    loner_team = TeamFactory()
    actor = policy.actor_for(tenant_a.member)
    context = TenantContext(actor, PERSONAL)

    keys = set(context.scope(VirtualKey.objects.all(), org_field="organization", owner_field="user__user_id",
                             team_field="team"))

    assert _teams(context) == {tenant_a.team}
    assert loner_team not in _teams(context)
    assert tenant_a.team_key in keys and tenant_b.team_key not in keys


def test_scope_personal_without_memberships_holds_only_own_rows(tenant_a):
    user = UserFactory()
    own = KeyFactory(user=user)
    context = TenantContext(policy.actor_for(user), PERSONAL)

    keys = set(context.scope(VirtualKey.objects.all(), org_field="organization", owner_field="user__user_id",
                             team_field="team"))

    assert keys == {own}
    assert _teams(context) == set()
