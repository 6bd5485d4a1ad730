"""Forms refuse what the policy refuses, with its message; fields a role may not change are read-only;
an admin viewer gets no write control at all and its POSTs are refused."""
from __future__ import annotations

import pytest

from accessctl.roles import PlatformRole
from accessgroups.models import AccessGroup
from keys.models import VirtualKey
from orgs.models import AuditEntry, OrganizationMembership, Team, User
from tests.admin.conftest import admin_url, logged_in
from tests.factories import UserFactory
from tests.foundation.html_forms import form_data

pytestmark = pytest.mark.django_db


def _submit(client, label: str, view: str, *args, form_id: str, **fields):
    url = admin_url(label, view, *args)
    data = form_data(client.get(url).content.decode(), form_id)
    data.update(fields)
    return client.post(url, data)


def _errors(response) -> str:
    return str(response.context["adminform"].form.errors)


def test_admin_team_add_by_org_admin_without_organization_shows_the_policy_refusal(world):
    client = logged_in(world.users["org_admin"])
    response = _submit(client, "orgs.team", "add", form_id="team_form", team_alias="orphan", organization="")
    assert response.status_code == 200 and "organization admins may create teams" in _errors(response)
    assert not Team.objects.filter(team_alias="orphan").exists()


def test_admin_team_add_by_org_admin_in_own_organization_creates_it(world):
    client = logged_in(world.users["org_admin"])
    response = _submit(client, "orgs.team", "add", form_id="team_form", team_alias="new team",
                       organization=str(world.own.organization.pk))
    assert response.status_code == 302
    assert Team.objects.get(team_alias="new team").organization == world.own.organization


def test_admin_team_add_by_org_admin_in_other_organization_is_an_invalid_choice(world):
    client = logged_in(world.users["org_admin"])
    response = _submit(client, "orgs.team", "add", form_id="team_form", team_alias="intruder",
                       organization=str(world.other.organization.pk))
    assert "organization" in response.context["adminform"].form.errors
    assert not Team.objects.filter(team_alias="intruder").exists()


def test_admin_organization_form_for_org_admin_shows_models_and_budget_read_only(world):
    client = logged_in(world.users["org_admin"])
    response = client.get(admin_url("orgs.organization", "change", world.own.organization.pk))
    fields = response.context["adminform"].form.fields
    assert "organization_alias" in fields and not {"models", "max_budget", "spend"} & set(fields)


def test_admin_team_form_for_team_admin_shows_limits_read_only(world):
    client = logged_in(world.users["team_admin"])
    response = client.get(admin_url("orgs.team", "change", world.own.rows["orgs.team"].pk))
    fields = response.context["adminform"].form.fields
    assert "team_alias" in fields and not {"models", "blocked", "max_budget", "organization"} & set(fields)


def test_admin_team_rename_by_team_admin_is_saved(world):
    team = world.own.rows["orgs.team"]
    client = logged_in(world.users["team_admin"])
    response = _submit(client, "orgs.team", "change", team.pk, form_id="team_form", team_alias="renamed")
    assert response.status_code == 302 and Team.objects.get(pk=team.pk).team_alias == "renamed"


def test_admin_key_add_by_team_admin_for_user_outside_the_team_shows_the_refusal(world):
    outsider = UserFactory(user_id="outsider@example.test")
    client = logged_in(world.users["team_admin"])
    response = _submit(client, "keys.virtualkey", "add", form_id="virtualkey_form", key_alias="for-outsider",
                       user=outsider.user_id, team=str(world.own.rows["orgs.team"].pk))
    # A user the team admin does not manage cannot even be chosen as the owner (SPEC §2).
    assert "No active user has this user_id." in _errors(response)
    assert not VirtualKey.objects.filter(key_alias="for-outsider").exists()


def test_admin_key_add_by_team_admin_for_a_member_creates_a_team_key(world):
    member = world.own.rows["orgs.user"]
    client = logged_in(world.users["team_admin"])
    response = _submit(client, "keys.virtualkey", "add", form_id="virtualkey_form", key_alias="member-key",
                       user=member.user_id, team=str(world.own.rows["orgs.team"].pk))
    assert response.status_code == 200 and "new-key-secret" in response.content.decode()
    assert VirtualKey.objects.get(key_alias="member-key").organization == world.own.organization


def test_admin_key_add_with_unknown_user_id_names_the_field(world):
    client = logged_in(world.users["org_admin"])
    response = _submit(client, "keys.virtualkey", "add", form_id="virtualkey_form", key_alias="nobody",
                       user="nobody@example.test", team=str(world.own.rows["orgs.team"].pk))
    assert "No active user has this user_id." in str(response.context["adminform"].form.errors["user"])


def test_admin_user_add_by_org_admin_makes_the_user_a_member(world):
    client = logged_in(world.users["org_admin"])
    response = _submit(client, "orgs.user", "add", form_id="user_form", user_id="hire@example.test",
                       organization=str(world.own.organization.pk))
    assert response.status_code == 302
    assert OrganizationMembership.objects.filter(user__user_id="hire@example.test",
                                                 organization=world.own.organization).exists()


def test_admin_user_add_by_org_admin_without_organization_is_refused(world):
    client = logged_in(world.users["org_admin"])
    response = _submit(client, "orgs.user", "add", form_id="user_form", user_id="stray@example.test",
                       organization="")
    assert "organization" in response.context["adminform"].form.errors


def test_admin_user_form_for_org_admin_shows_the_platform_role_read_only(world):
    client = logged_in(world.users["org_admin"])
    response = client.get(admin_url("orgs.user", "change", world.own.rows["orgs.user"].pk))
    assert "user_role" not in response.context["adminform"].form.fields


def test_admin_access_group_add_by_org_admin_without_organization_shows_the_refusal(world):
    client = logged_in(world.users["org_admin"])
    response = _submit(client, "accessgroups.accessgroup", "add", form_id="accessgroup_form",
                       access_group_name="global-attempt", organization="")
    assert "Only platform admins manage global access groups." in _errors(response)
    assert not AccessGroup.objects.filter(access_group_name="global-attempt").exists()


# --- the admin viewer: read-only everywhere ------------------------------------------------------------


def test_admin_changelist_for_admin_viewer_has_no_add_link_and_only_the_export_action(world):
    response = logged_in(world.users["admin_viewer"]).get(admin_url("keys.virtualkey", "changelist"))
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices if name]
    assert response.context["has_add_permission"] is False and actions == ["export_csv"]
    assert "addlink" not in response.content.decode()


def test_admin_change_page_for_admin_viewer_has_no_save_or_delete_button(world):
    response = logged_in(world.users["admin_viewer"]).get(
        admin_url("orgs.team", "change", world.own.rows["orgs.team"].pk))
    page = response.content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page


def test_admin_change_post_by_admin_viewer_is_refused(world):
    team = world.own.rows["orgs.team"]
    response = logged_in(world.users["admin_viewer"]).post(
        admin_url("orgs.team", "change", team.pk), {"team_alias": "hijacked"})
    assert response.status_code == 403 and Team.objects.get(pk=team.pk).team_alias != "hijacked"


def test_admin_delete_post_by_admin_viewer_is_refused(world):
    key = world.own.rows["keys.virtualkey"]
    response = logged_in(world.users["admin_viewer"]).post(admin_url("keys.virtualkey", "delete", key.pk),
                                                           {"post": "yes"})
    assert response.status_code == 403 and VirtualKey.objects.filter(pk=key.pk).exists()


def test_admin_user_role_of_viewer_is_not_a_hand_set_staff_flag():
    viewer = UserFactory(user_role=PlatformRole.PROXY_ADMIN_VIEWER)
    assert viewer.is_staff and not viewer.is_superuser


def test_admin_user_page_of_a_platform_admin_in_own_org_is_read_only_for_org_admin(world):
    from accessctl.roles import OrgRole
    from tests.factories import OrganizationMembershipFactory

    boss = OrganizationMembershipFactory(organization=world.own.organization,
                                         user=UserFactory(user_role=PlatformRole.PROXY_ADMIN),
                                         user_role=OrgRole.INTERNAL_USER).user
    response = logged_in(world.users["org_admin"]).get(admin_url("orgs.user", "change", boss.pk))
    assert response.status_code == 200 and response.context["has_change_permission"] is False


def test_admin_user_password_post_for_a_platform_admin_by_org_admin_is_refused(world):
    from accessctl.roles import OrgRole
    from tests.factories import OrganizationMembershipFactory

    boss = OrganizationMembershipFactory(organization=world.own.organization,
                                         user=UserFactory(user_role=PlatformRole.PROXY_ADMIN),
                                         user_role=OrgRole.INTERNAL_USER).user
    response = logged_in(world.users["org_admin"]).post(
        admin_url("orgs.user", "change", boss.pk), {"new_password1": "taken-over-1", "new_password2": "taken-over-1"})
    assert response.status_code == 403
    boss.refresh_from_db()
    assert not boss.check_password("taken-over-1")


def test_admin_key_add_with_key_type_and_allowed_routes_stores_them(world):
    member = world.own.rows["orgs.user"]
    client = logged_in(world.users["team_admin"])
    response = _submit(client, "keys.virtualkey", "add", form_id="virtualkey_form", key_alias="app-key",
                       user=member.user_id, team=str(world.own.rows["orgs.team"].pk), key_type="llm_api",
                       allowed_routes="llm_api_routes\n/api/v1/authz/check")
    assert response.status_code == 200 and "new-key-secret" in response.content.decode()
    key = VirtualKey.objects.get(key_alias="app-key")
    assert (key.key_type, key.allowed_routes) == ("llm_api", ["llm_api_routes", "/api/v1/authz/check"])


def test_admin_key_change_of_key_type_is_saved_and_audited(world):
    key = world.own.rows["keys.virtualkey"]
    client = logged_in(world.users["team_admin"])
    response = _submit(client, "keys.virtualkey", "change", key.pk, form_id="virtualkey_form", key_type="read_only")
    assert response.status_code == 302
    assert VirtualKey.objects.get(pk=key.pk).key_type == "read_only"
    assert AuditEntry.objects.filter(action="key_update", object_id=key.token,
                                     after__key_type="read_only").exists()


def test_admin_key_change_with_a_bad_allowed_route_names_the_refusal(world):
    key = world.own.rows["keys.virtualkey"]
    client = logged_in(world.users["team_admin"])
    response = _submit(client, "keys.virtualkey", "change", key.pk, form_id="virtualkey_form",
                       allowed_routes="key/info")
    assert response.status_code == 200 and "allowed_routes" in _errors(response)
    assert VirtualKey.objects.get(pk=key.pk).allowed_routes == []


def test_admin_user_add_of_a_system_user_by_org_admin_is_refused(world):
    # A system user reads every tenant's keys: only a proxy admin makes one (the user service decides).
    client = logged_in(world.users["org_admin"])
    response = _submit(client, "orgs.user", "add", form_id="user_form", user_id="gateway@example.test",
                       organization=str(world.own.organization.pk), is_system="on")
    assert response.status_code == 200 and "proxy admin" in _errors(response)
    assert not User.objects.filter(user_id="gateway@example.test").exists()


def test_admin_user_add_of_a_system_user_by_proxy_admin_is_saved(world):
    client = logged_in(world.users["proxy_admin"])
    response = _submit(client, "orgs.user", "add", form_id="user_form", user_id="gateway@example.test",
                       is_system="on")
    assert response.status_code == 302
    assert User.objects.get(user_id="gateway@example.test").is_system


def test_admin_team_delete_by_team_admin_is_refused(world):
    team = world.own.rows["orgs.team"]
    client = logged_in(world.users["team_admin"])
    response = client.post(admin_url("orgs.team", "delete", team.pk), {"post": "yes"})
    assert response.status_code == 403
    assert Team.objects.filter(pk=team.pk).exists()


def test_admin_organization_delete_by_org_admin_is_refused(world):
    org = world.own.organization
    client = logged_in(world.users["org_admin"])
    response = client.post(admin_url("orgs.organization", "delete", org.pk), {"post": "yes"})
    assert response.status_code == 403
    org.refresh_from_db()
    assert org.deleted_at is None
