"""Two laws of SPEC §2-§3 over the REST API, drawn by hypothesis: whoever of tenant A calls whichever detail
route on a row of tenant B, with whatever body, gets 404 (a foreign row is a missing row), and the refused
request changes nothing (a dump of every table the routes write, before and after)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from accessgroups.models import AccessGroup, KeyAccessGroup, TeamAccessGroup
from keys.models import VirtualKey
from orgs.models import Budget, Organization, OrganizationMembership, Team, TeamMembership, User
from tests.api.conftest import make_tenant
from tests.api.test_isolation import DETAIL_ROUTES
from tests.factories import KeyFactory, OrganizationMembershipFactory, UserFactory, delete_committed_rows

pytestmark = pytest.mark.django_db


def _dump() -> tuple:
    return (
        sorted(
            Organization.objects.values_list("organization_id", "organization_alias", "models", "deleted_at")
        ),
        sorted(Team.objects.values_list("team_id", "team_alias", "organization_id", "models", "blocked")),
        sorted(User.objects.values_list("user_id", "user_role", "user_alias", "password", "is_active")),
        sorted(OrganizationMembership.objects.values_list("organization_id", "user_id", "user_role")),
        sorted(TeamMembership.objects.values_list("team_id", "user_id", "role")),
        sorted(
            VirtualKey.objects.values_list("token", "user_id", "team_id", "key_alias", "blocked", "models")
        ),
        sorted(AccessGroup.objects.values_list("access_group_id", "access_group_name", "access_model_names")),
        sorted(TeamAccessGroup.objects.values_list("team_id", "access_group_id")),
        sorted(KeyAccessGroup.objects.values_list("key_id", "access_group_id")),
        sorted(Budget.objects.values_list("budget_id", "max_budget")),
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        a, b = make_tenant("law-a"), make_tenant("law-b")
        viewer = UserFactory(user_id="viewer-law-a@example.test")
        OrganizationMembershipFactory(organization=a.org, user=viewer, user_role="internal_user_viewer")
        callers = {
            "org admin A, header A": (a.admin_key.raw, a.org.pk),
            "org admin A, personal scope": (a.admin_key.raw, None),
            "team member A, org-bound team key": (a.team_key.raw, None),
            "org viewer A, header A": (KeyFactory(user=viewer).raw, a.org.pk),
        }
        ids = {
            "org": str(b.org.pk),
            "team": str(b.team.pk),
            "user": b.member.user_id,
            "member": b.member.user_id,
            "token": b.team_key.token,
            "group": str(b.group.pk),
        }
        yield {"callers": callers, "ids": ids}
        delete_committed_rows()


BODIES = st.sampled_from(
    [
        {},
        {"organization_alias": "taken", "team_alias": "taken", "key_alias": "taken", "user_alias": "taken"},
        {"models": ["*"], "max_budget": 1e9},
        {"user_role": "proxy_admin", "role": "admin"},
        {"user_id": "admin-law-a@example.test", "role": "admin", "user_role": "org_admin"},
        {"blocked": False, "access_model_names": ["*"], "password": "taken-over-123"},
    ]
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    caller=st.sampled_from(
        [
            "org admin A, header A",
            "org admin A, personal scope",
            "team member A, org-bound team key",
            "org viewer A, header A",
        ]
    ),
    route=st.sampled_from(DETAIL_ROUTES),
    body=BODIES,
)
def test_a_row_of_another_tenant_answers_404_and_the_request_changes_nothing(world, caller, route, body):
    raw, org = world["callers"][caller]
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    if org is not None:
        headers["HTTP_X_ORGANIZATION_ID"] = str(org)
    client.credentials(**headers)
    method, path = route
    before = _dump()
    response = getattr(client, method)(path.format(**world["ids"]), body, format="json")
    assert response.status_code == 404, (response.status_code, response.content[:300])
    assert _dump() == before
