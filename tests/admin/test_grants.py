"""Object-level grants ("may manage team X") are guardian object permissions on a direct foreign-key
table, written by services (audited), and honoured by the policy — so by the admin and the API alike."""
from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accessctl.roles import TeamRole
from orgs import services as org_services
from orgs.models import MANAGE_TEAM_PERMISSION, AuditEntry, TeamUserObjectPermission
from tests.admin.conftest import admin_url, logged_in
from tests.factories import KeyFactory, OrganizationFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return TeamFactory(organization=OrganizationFactory())


def _api(key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw}")
    return client


def test_team_grant_manage_stores_a_direct_foreign_key_object_permission(team):
    user = UserFactory()
    assert org_services.team_grant_manage(actor=None, team=team, user=user) is True
    assert TeamUserObjectPermission.objects.filter(content_object=team, user=user).count() == 1
    assert user.has_perm(MANAGE_TEAM_PERMISSION, team)


def test_team_grant_manage_is_audited_with_the_acting_user(team, admin_user):
    user = UserFactory()
    org_services.team_grant_manage(actor=admin_user, team=team, user=user)
    entry = AuditEntry.objects.get(action="team_grant_manage")
    assert (entry.actor_id, entry.object_id, entry.organization_id) == (
        admin_user.user_id, f"{team.pk}:{user.user_id}", team.organization_id)


def test_team_grant_manage_twice_grants_once_and_records_once(team):
    user = UserFactory()
    org_services.team_grant_manage(actor=None, team=team, user=user)
    assert org_services.team_grant_manage(actor=None, team=team, user=user) is False
    assert AuditEntry.objects.filter(action="team_grant_manage").count() == 1


def test_team_revoke_manage_removes_the_permission_and_is_audited(team):
    user = UserFactory()
    org_services.team_grant_manage(actor=None, team=team, user=user)
    assert org_services.team_revoke_manage(actor=None, team=team, user=user) is True
    assert not TeamUserObjectPermission.objects.filter(content_object=team).exists()
    assert AuditEntry.objects.filter(action="team_revoke_manage").count() == 1


def test_team_revoke_manage_without_a_grant_changes_nothing(team):
    assert org_services.team_revoke_manage(actor=None, team=team, user=UserFactory()) is False
    assert not AuditEntry.objects.filter(action="team_revoke_manage").exists()


def test_team_delete_deletes_its_grants(team):
    org_services.team_grant_manage(actor=None, team=team, user=UserFactory())
    org_services.team_delete(actor=None, team=team)
    assert not TeamUserObjectPermission.objects.exists()


def test_actor_of_granted_user_holds_the_team_admin_role(team):
    from accessctl.policy import actor_for

    user = UserFactory()
    org_services.team_grant_manage(actor=None, team=team, user=user)
    actor = actor_for(user)
    assert actor.team_role(str(team.pk)) == TeamRole.ADMIN and actor.granted_team_ids == {str(team.pk)}


def test_actor_grant_on_team_of_soft_deleted_organization_counts_for_nothing(team):
    from accessctl.policy import actor_for

    user = UserFactory()
    org_services.team_grant_manage(actor=None, team=team, user=user)
    org_services.organization_delete(actor=None, organization=team.organization)
    assert actor_for(user).team_roles == {}


def test_api_team_detail_for_granted_user_answers_200(team):
    user = UserFactory()
    org_services.team_grant_manage(actor=None, team=team, user=user)
    response = _api(KeyFactory(user=user)).get(reverse("team-detail", args=[team.pk]))
    assert response.status_code == 200 and response.json()["team_id"] == str(team.pk)


def test_api_team_detail_after_grant_revoked_answers_404(team):
    user = UserFactory()
    key = KeyFactory(user=user)
    org_services.team_grant_manage(actor=None, team=team, user=user)
    org_services.team_revoke_manage(actor=None, team=team, user=user)
    assert _api(key).get(reverse("team-detail", args=[team.pk])).status_code == 404


def test_api_team_key_block_by_granted_user_succeeds(team):
    user = UserFactory()
    org_services.team_grant_manage(actor=None, team=team, user=user)
    key = KeyFactory(team=team, user=None)
    response = _api(KeyFactory(user=user)).post(reverse("key-block", args=[key.token]))
    assert response.status_code == 200 and response.json()["blocked"] is True


def test_admin_team_page_manager_inline_grants_through_the_service(world):
    from tests.foundation.html_forms import form_data

    team, newcomer = world.own.rows["orgs.team"], UserFactory(user_id="newcomer@example.test")
    client = logged_in(world.users["org_admin"])
    url = admin_url("orgs.team", "change", team.pk)
    data = form_data(client.get(url).content.decode(), "team_form")
    data.update({"user_grants-TOTAL_FORMS": "2", "user_grants-1-user": newcomer.user_id})
    assert client.post(url, data).status_code == 302
    assert newcomer.has_perm(MANAGE_TEAM_PERMISSION, team)
    assert AuditEntry.objects.get(action="team_grant_manage", object_id=f"{team.pk}:{newcomer.user_id}").actor_id == (
        world.users["org_admin"].user_id)


def test_admin_team_page_manager_inline_for_granted_user_lists_the_grant(world):
    client = logged_in(world.users["granted"])
    page = client.get(admin_url("orgs.team", "change", world.own.rows["orgs.team"].pk)).content.decode()
    assert 'value="granted@example.test"' in page
