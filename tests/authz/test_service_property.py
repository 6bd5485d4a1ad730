"""Property (hypothesis) over the service commands: for every actor role × command × target in another
tenant or above the actor, the command is refused and the database is unchanged (row counts and a dump
of the touched tables, before and after)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accessctl import policy
from accessctl.errors import ServiceError
from keys import services as key_services
from keys.models import VirtualKey
from orgs import services as org_services
from orgs.models import OrganizationMembership, TeamMembership, User
from tests.factories import (
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
    delete_committed_rows,
)

pytestmark = pytest.mark.django_db

ROLES = ("org_admin", "team_admin", "member", "internal_user")
TARGETS = ("other_tenant_member", "other_tenant_admin", "proxy_admin", "system_user")
COMMANDS = ("key_generate", "key_update_owner", "org_member_add", "team_member_add", "user_update_password",
            "user_update_alias", "user_delete", "own_org_budget")


def _dump() -> tuple:
    return (
        sorted(VirtualKey.objects.values_list("token", "user_id", "team_id", "organization_id")),
        sorted(OrganizationMembership.objects.values_list("organization_id", "user_id", "user_role", "budget_id")),
        sorted(TeamMembership.objects.values_list("team_id", "user_id", "role", "budget_id")),
        sorted(User.objects.values_list("user_id", "password", "user_alias", "user_role")),
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        org, other = OrganizationFactory(), OrganizationFactory()
        team, other_team = TeamFactory(organization=org), TeamFactory(organization=other)
        callers = {role: UserFactory(user_id=f"prop-{role}@a.test") for role in ROLES}
        OrganizationMembershipFactory(organization=org, user=callers["org_admin"], user_role="org_admin")
        OrganizationMembershipFactory(organization=org, user=callers["team_admin"])
        TeamMembershipFactory(team=team, user=callers["team_admin"], role="admin")
        OrganizationMembershipFactory(organization=org, user=callers["member"])
        TeamMembershipFactory(team=team, user=callers["member"], role="user")
        targets = {
            "other_tenant_member": UserFactory(user_id="prop-dev@b.test"),
            "other_tenant_admin": UserFactory(user_id="prop-boss@b.test"),
            "proxy_admin": UserFactory(user_id="prop-root@x.test", user_role="proxy_admin"),
            "system_user": UserFactory(user_id="prop-gw@x.test", is_system=True),
        }
        OrganizationMembershipFactory(organization=other, user=targets["other_tenant_member"])
        TeamMembershipFactory(team=other_team, user=targets["other_tenant_member"])
        OrganizationMembershipFactory(organization=other, user=targets["other_tenant_admin"], user_role="org_admin")
        own_keys = {role: KeyFactory(user=user, team=team if role in ("team_admin", "member") else None,
                                     organization=org) for role, user in callers.items()}
        yield {"org": org, "team": team, "callers": callers, "targets": targets, "keys": own_keys}
        delete_committed_rows()


def _run(command: str, w: dict, role: str, target: User) -> None:
    caller = w["callers"][role]
    by = policy.actor_for(caller)
    if command == "key_generate":
        key_services.key_generate(actor=caller, by=by, user=target, organization=w["org"])
    elif command == "key_update_owner":
        key_services.key_update(actor=caller, by=by, key=w["keys"][role], data={"user": target})
    elif command == "org_member_add":
        org_services.organization_member_add(actor=caller, by=by, organization=w["org"], user=target,
                                             user_role="internal_user")
    elif command == "team_member_add":
        org_services.team_member_add(actor=caller, by=by, team=w["team"], user=target)
    elif command == "user_update_password":
        org_services.user_update(actor=caller, by=by, user=target, data={"password": "taken-over-123"})
    elif command == "user_update_alias":
        org_services.user_update(actor=caller, by=by, user=target, data={"user_alias": "owned"})
    elif command == "user_delete":
        org_services.user_delete(actor=caller, by=by, user=target)
    elif command == "own_org_budget":
        membership = OrganizationMembership.objects.filter(user=caller).first()
        if membership is None:
            raise ServiceError("no membership", status=403)
        org_services.organization_member_update(actor=caller, by=by, membership=membership,
                                                max_budget_in_organization=1e9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(role=st.sampled_from(ROLES), command=st.sampled_from(COMMANDS), target=st.sampled_from(TARGETS))
def test_service_command_on_a_user_of_another_tenant_or_above_is_refused_and_changes_nothing(
    world, role, command, target
):
    before = _dump()
    with pytest.raises(ServiceError):
        _run(command, world, role, world["targets"][target])
    assert _dump() == before
