"""Issue 11's reproductions, one test each: every one of them escalated on d0b0cdd and is refused now,
leaving the database as it was."""
from __future__ import annotations

import pytest

from accessgroups import services as group_services
from keys.models import VirtualKey
from orgs.models import OrganizationMembership, TeamMembership, User
from tests.authz.conftest import assert_error, key_of
from tests.factories import (
    AdminFactory,
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def _check(api, raw: str, model: str):
    return api.post("/api/v1/authz/check", {"model": model}, key=raw)


# 1. Keys never inherit the master key's identity -------------------------------------------------


def test_key_generated_by_master_without_user_has_no_user_and_manages_nothing(api):
    body = api.post("/key/generate", {"models": ["gpt-4o"]}).json()
    assert body["user_id"] is None
    raw = body["key"]
    assert api.post("/organization/new", {"organization_alias": "x"}, key=raw).status_code in (401, 403)
    assert api.get("/user/list", key=raw).status_code in (401, 403)
    assert api.post("/key/generate", {"models": ["all-proxy-models"]}, key=raw).status_code in (401, 403)
    assert api.get("/key/info", key=raw).json()["info"]["user_id"] is None  # it reads itself
    assert _check(api, raw, "gpt-4o").status_code == 200  # and calls what its rules allow


# 2. Minting a key for someone above you ----------------------------------------------------------


def test_key_generate_by_org_admin_for_a_proxy_admin_is_refused(api, org, org_admin):
    admin = AdminFactory(user_id="admin")
    response = api.post("/key/generate", {"user_id": admin.user_id, "organization_id": str(org.pk)},
                        key=key_of(org_admin))
    assert_error(response, 403)
    assert not VirtualKey.objects.filter(user=admin).exists()


def test_key_update_rebinding_own_key_to_a_proxy_admin_is_refused(api, org, org_admin):
    admin = AdminFactory(user_id="admin")
    own = KeyFactory(user=org_admin, organization=org)
    response = api.post("/key/update", {"key": own.token, "user_id": admin.user_id}, key=own.raw)
    assert_error(response, 403)
    own.refresh_from_db()
    assert own.user == org_admin


def test_rest_key_create_by_org_admin_for_a_proxy_admin_is_refused(api, org, org_admin):
    admin = AdminFactory(user_id="admin")
    response = api.post("/api/v1/keys/", {"user_id": admin.user_id}, key=key_of(org_admin, organization=org))
    assert response.status_code == 403
    assert not VirtualKey.objects.filter(user=admin).exists()


def test_team_admin_member_add_of_a_proxy_admin_is_refused(api, team, team_admin):
    admin = AdminFactory(user_id="admin")
    response = api.post("/team/member_add", {"team_id": str(team.pk), "member": {"user_id": "admin", "role": "user"}},
                        key=key_of(team_admin))
    assert_error(response, 403)
    assert not TeamMembership.objects.filter(team=team, user=admin).exists()


def test_member_granted_key_generate_cannot_mint_a_key_for_the_master_user(api, org):
    # The master's user is admin of every team the master creates.
    team_id = api.post("/team/new", {"team_alias": "made-by-master", "organization_id": str(org.pk),
                                     "team_member_permissions": ["/key/generate"]}).json()["team_id"]
    member = UserFactory()
    api.post("/team/member_add", {"team_id": team_id, "member": {"user_id": member.user_id, "role": "user"}})
    response = api.post("/key/generate", {"user_id": "default_user_id", "team_id": team_id}, key=key_of(member))
    assert response.status_code in (400, 403)
    assert not VirtualKey.objects.filter(user__user_id="default_user_id").exists()


# 3. Account takeover across tenants ---------------------------------------------------------------


def test_org_admin_cannot_adopt_another_organizations_admin(api, org, org_admin):
    other = OrganizationFactory()
    boss_b = UserFactory()
    OrganizationMembershipFactory(organization=other, user=boss_b, user_role="org_admin")
    response = api.post("/organization/member_add", {
        "organization_id": str(org.pk), "member": {"user_id": boss_b.user_id, "role": "internal_user"},
    }, key=key_of(org_admin))
    assert_error(response, 403)
    assert not OrganizationMembership.objects.filter(organization=org, user=boss_b).exists()


def test_org_admin_cannot_set_the_password_of_a_member(api, org, org_admin):
    colleague = UserFactory()
    OrganizationMembershipFactory(organization=org, user=colleague)
    response = api.post("/user/update", {"user_id": colleague.user_id, "password": "taken-over-1234"},
                        key=key_of(org_admin))
    assert_error(response, 403)
    colleague.refresh_from_db()
    assert not colleague.check_password("taken-over-1234")


def test_org_admin_cannot_take_over_or_delete_a_user_without_organization(api, org, org_admin):
    loner = UserFactory()
    api.post("/organization/member_add", {"organization_id": str(org.pk),
                                          "member": {"user_id": loner.user_id, "role": "internal_user"}},
             key=key_of(org_admin))  # allowed: they belong nowhere; their account stays theirs
    response = api.post("/user/update", {"user_id": loner.user_id, "password": "taken-over-1234"},
                        key=key_of(org_admin))
    assert response.status_code in (403, 404)
    assert api.post("/user/delete", {"user_ids": [loner.user_id]}, key=key_of(org_admin)).status_code in (403, 404)
    loner.refresh_from_db()
    assert not loner.check_password("taken-over-1234")


# 4. Access-group names never stand in for a ceiling's entries ---------------------------------------


def test_org_owned_group_named_like_an_org_model_does_not_widen_the_ceiling(api):
    org = OrganizationFactory(models=["gpt-4o"])
    team = TeamFactory(organization=org, models=["gpt-4o"])
    group_services.access_group_create(actor=None, organization=org, access_group_name="gpt-4o",
                                       access_model_names=["*"])
    raw = KeyFactory(team=team).raw
    assert _check(api, raw, "anthropic/claude-3-opus").status_code == 403


def test_litellm_access_group_put_with_everything_in_an_organization_is_refused(api, org_admin):
    org = OrganizationMembership.objects.get(user=org_admin).organization
    group = group_services.access_group_create(actor=None, organization=org, access_group_name="cheap",
                                               access_model_names=["openai/gpt-4o-mini"])
    response = api.put(f"/v1/access_group/{group.pk}", {"access_model_names": ["*"]}, key=key_of(org_admin))
    assert response.status_code == 403
    group.refresh_from_db()
    assert group.access_model_names == ["openai/gpt-4o-mini"]


# 5. Deleting an access group never widens a key --------------------------------------------------


def test_deleting_the_only_group_of_a_key_does_not_widen_it_to_the_team(api, org, django_capture_on_commit_callbacks):
    team = TeamFactory(organization=org, models=["openai/gpt-4o", "openai/gpt-4o-mini"])
    group = group_services.access_group_create(actor=None, organization=org, access_group_name="mini",
                                               access_model_names=["openai/gpt-4o-mini"])
    key = KeyFactory(team=team)
    group_services.access_group_assign(actor=None, group=group, keys=[key])
    assert _check(api, key.raw, "openai/gpt-4o").status_code == 403
    # The delete's invalidation runs as on a real commit: the next check decides from the rows, not from
    # the snapshot cached before the delete (which would refuse whatever the rows now say).
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/v1/access_group/{group.pk}").status_code == 204
    assert _check(api, key.raw, "openai/gpt-4o").status_code == 403


# 6. A refused request leaves no rows ----------------------------------------------------------------


def test_refused_key_generate_for_an_unknown_user_leaves_no_user_or_membership(api, org, org_admin):
    # `$OA`: the org admin's key bound to the organization, where they may create users and keys; the
    # model lies outside the organization, so the request is refused after the owner would be created.
    raw = key_of(org_admin, organization=org)
    users, memberships = User.objects.count(), OrganizationMembership.objects.count()
    response = api.post("/key/generate", {"user_id": "brand-new@example.test", "models": ["mistral/large"]},
                        key=raw)
    assert_error(response, 403)
    assert not User.objects.filter(user_id="brand-new@example.test").exists()
    assert (User.objects.count(), OrganizationMembership.objects.count()) == (users, memberships)


# 7. No self-service budget raise ----------------------------------------------------------------------


def test_org_admin_cannot_raise_their_own_budget_in_the_organization(api, org, org_admin):
    response = api.patch("/organization/member_update", {
        "organization_id": str(org.pk), "user_id": org_admin.user_id, "max_budget_in_organization": 1e6,
    }, key=key_of(org_admin))
    assert_error(response, 403)
    membership = OrganizationMembership.objects.get(organization=org, user=org_admin)
    assert membership.budget is None or membership.budget.max_budget != 1e6


def test_team_admin_cannot_raise_their_own_budget_in_the_team(api, team, team_admin):
    response = api.post("/team/member_update", {
        "team_id": str(team.pk), "user_id": team_admin.user_id, "max_budget_in_team": 1e6,
    }, key=key_of(team_admin))
    assert_error(response, 403)
    membership = TeamMembership.objects.get(team=team, user=team_admin)
    assert membership.budget is None or membership.budget.max_budget != 1e6
