"""Property (hypothesis) over the service commands that write teams, organizations, access groups and new
users: for every actor role × command × row of another tenant (or above the actor), the command authorizes
itself (`by=`) and is refused, and the database is unchanged (a dump of the touched tables before and after)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accessctl import policy
from accessctl.errors import ServiceError
from accessgroups import services as group_services
from accessgroups.models import AccessGroup, KeyAccessGroup, TeamAccessGroup
from keys.models import VirtualKey
from orgs import services as org_services
from orgs.models import Budget, Organization, OrganizationMembership, Team, TeamMembership, User
from tests.factories import (
    AccessGroupFactory,
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
COMMANDS = (
    "team_update_alias", "team_update_models", "team_move_to_other_org", "team_delete",
    "organization_update_alias", "organization_update_models", "organization_delete",
    "access_group_update", "access_group_delete", "access_group_assign", "access_group_unassign",
    "global_group_delete", "global_group_assign", "user_create_in_other_org", "user_create_proxy_admin",
    "user_create_system_user",
)


def _dump() -> tuple:
    return (
        sorted(Team.objects.values_list("team_id", "team_alias", "organization_id", "models", "blocked")),
        sorted(Organization.objects.values_list("organization_id", "organization_alias", "models", "deleted_at")),
        sorted(Budget.objects.values_list("budget_id", "max_budget")),
        sorted(AccessGroup.objects.values_list("access_group_id", "access_group_name", "access_model_names")),
        sorted(TeamAccessGroup.objects.values_list("team_id", "access_group_id")),
        sorted(KeyAccessGroup.objects.values_list("key_id", "access_group_id")),
        sorted(VirtualKey.objects.values_list("token", "team_id", "models")),
        sorted(User.objects.values_list("user_id", "user_role", "is_system")),
        sorted(OrganizationMembership.objects.values_list("organization_id", "user_id", "user_role")),
        sorted(TeamMembership.objects.values_list("team_id", "user_id", "role")),
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        org, other = OrganizationFactory(models=["openai/*"]), OrganizationFactory()
        team, other_team = TeamFactory(organization=org), TeamFactory(organization=other)
        callers = {role: UserFactory(user_id=f"rows-{role}@a.test") for role in ROLES}
        OrganizationMembershipFactory(organization=org, user=callers["org_admin"], user_role="org_admin")
        OrganizationMembershipFactory(organization=org, user=callers["team_admin"])
        TeamMembershipFactory(team=team, user=callers["team_admin"], role="admin")
        OrganizationMembershipFactory(organization=org, user=callers["member"])
        TeamMembershipFactory(team=team, user=callers["member"], role="user")
        other_group = AccessGroupFactory(organization=other, access_group_name="rows-theirs")
        global_group = AccessGroupFactory(access_group_name="rows-everyone")
        other_key = KeyFactory(team=other_team, user=None)
        group_services.access_group_assign(actor=None, group=other_group, teams=[other_team], keys=[other_key])
        yield {"org": org, "other": other, "team": team, "other_team": other_team, "callers": callers,
               "other_group": other_group, "global_group": global_group, "other_key": other_key}
        delete_committed_rows()


def _run(command: str, w: dict, role: str) -> None:
    caller = w["callers"][role]
    by = policy.actor_for(caller)
    if command == "team_update_alias":
        org_services.team_update(actor=caller, by=by, team=w["other_team"], data={"team_alias": "owned"})
    elif command == "team_update_models":
        # Their own team's ceiling: org admins may, so they raise it past the organization's instead.
        models = ["anthropic/claude-3"] if role == "org_admin" else ["openai/gpt-4o"]
        org_services.team_update(actor=caller, by=by, team=w["team"], data={"models": models})
    elif command == "team_move_to_other_org":
        org_services.team_update(actor=caller, by=by, team=w["team"], data={"organization": w["other"]})
    elif command == "team_delete":
        org_services.team_delete(actor=caller, by=by, team=w["other_team"])
    elif command == "organization_update_alias":
        org_services.organization_update(actor=caller, by=by, organization=w["other"],
                                         data={"organization_alias": "owned"})
    elif command == "organization_update_models":
        org_services.organization_update(actor=caller, by=by, organization=w["org"], data={"models": ["*"]})
    elif command == "organization_delete":
        org_services.organization_delete(actor=caller, by=by, organization=w["org"])
    elif command == "access_group_update":
        group_services.access_group_update(actor=caller, by=by, group=w["other_group"],
                                           data={"access_model_names": ["*"]})
    elif command == "access_group_delete":
        group_services.access_group_delete(actor=caller, by=by, group=w["other_group"])
    elif command == "access_group_assign":
        group_services.access_group_assign(actor=caller, by=by, group=w["other_group"], keys=[w["other_key"]])
    elif command == "access_group_unassign":
        group_services.access_group_unassign(actor=caller, by=by, group=w["other_group"], teams=[w["other_team"]])
    elif command == "global_group_delete":
        group_services.access_group_delete(actor=caller, by=by, group=w["global_group"])
    elif command == "global_group_assign":
        group_services.access_group_assign(actor=caller, by=by, group=w["global_group"], teams=[w["team"]])
    elif command == "user_create_in_other_org":
        org_services.user_create(actor=caller, by=by, user_id="rows-new@b.test", organizations=[w["other"]])
    elif command == "user_create_proxy_admin":
        org_services.user_create(actor=caller, by=by, user_id="rows-root@a.test", organizations=[w["org"]],
                                 user_role="proxy_admin")
    elif command == "user_create_system_user":
        org_services.user_create(actor=caller, by=by, user_id="rows-gw@a.test", organizations=[w["org"]],
                                 is_system=True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(role=st.sampled_from(ROLES), command=st.sampled_from(COMMANDS))
def test_service_command_on_a_row_of_another_tenant_or_above_the_actor_is_refused_and_changes_nothing(
    world, role, command
):
    before = _dump()
    with pytest.raises(ServiceError):
        _run(command, world, role)
    assert _dump() == before
