"""The escalation table (issue 11): for each route that names a user — a key's owner, a member add, a user's
password, profile and deletion — each role, each kind of target user → allowed or refused, through the
LiteLLM routes, REST and the admin alike. A refusal changes nothing (the touched rows are compared)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client

from keys.models import VirtualKey
from orgs.models import OrganizationMembership, TeamMembership, User
from tests.admin.conftest import admin_url
from tests.authz.conftest import Api
from tests.factories import (
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)
from tests.foundation.html_forms import form_data

pytestmark = pytest.mark.django_db

ROLES = ("org_admin", "team_admin", "member")
# Targets already in the caller's team and organization (only *who* they are differs) …
IN_TEAM = ("self", "colleague", "proxy_admin", "admin_of_other_org", "system_user")
# … and targets not yet in the caller's tenant (for member adds).
OUTSIDE = ("loner", "proxy_admin", "member_of_other_org", "system_user")


@dataclass
class World:
    org: object
    team: object
    callers: dict
    keys: dict
    targets: dict


def _world(fresh_targets: bool) -> World:
    org, other = OrganizationFactory(models=[]), OrganizationFactory()
    team = TeamFactory(organization=org, member_permissions=["/key/generate", "/key/update", "/key/info"])
    callers = {role: UserFactory(user_id=f"{role}@a.test", password="pw-not-used-123") for role in ROLES}
    OrganizationMembershipFactory(organization=org, user=callers["org_admin"], user_role="org_admin")
    for role, team_role in (("team_admin", "admin"), ("member", "user")):
        OrganizationMembershipFactory(organization=org, user=callers[role], user_role="internal_user")
        TeamMembershipFactory(team=team, user=callers[role], role=team_role)
    targets = {
        "loner": UserFactory(user_id="loner@x.test"),
        "colleague": UserFactory(user_id="colleague@a.test"),
        "proxy_admin": UserFactory(user_id="root@x.test", user_role="proxy_admin"),
        "admin_of_other_org": UserFactory(user_id="boss@b.test"),
        "member_of_other_org": UserFactory(user_id="dev@b.test"),
        "system_user": UserFactory(user_id="gateway@x.test", is_system=True),
    }
    OrganizationMembershipFactory(organization=other, user=targets["admin_of_other_org"], user_role="org_admin")
    OrganizationMembershipFactory(organization=other, user=targets["member_of_other_org"])
    if not fresh_targets:
        for name in ("colleague", "proxy_admin", "admin_of_other_org", "system_user"):
            OrganizationMembershipFactory(organization=org, user=targets[name])
            TeamMembershipFactory(team=team, user=targets[name])
    keys = {role: KeyFactory(user=user, organization=org).raw for role, user in callers.items()}
    return World(org, team, callers, keys, targets)


def _target(world: World, role: str, name: str) -> User:
    return world.callers[role] if name == "self" else world.targets[name]


def _snapshot() -> tuple:
    """The rows these routes touch: keys, memberships, users (with their password hashes)."""
    return (
        sorted(VirtualKey.objects.values_list("token", "user_id", "team_id")),
        sorted(OrganizationMembership.objects.values_list("organization_id", "user_id", "user_role")),
        sorted(TeamMembership.objects.values_list("team_id", "user_id", "role")),
        sorted(User.objects.values_list("user_id", "password", "user_alias")),
    )


# --- what SPEC §2 says -------------------------------------------------------------------------------


def may_own_key(role: str, target: str) -> bool:
    """A team key for the target: the caller themself (if their team role lets them mint), or a member they
    manage; never a platform admin, a system user, or someone who also belongs to another organization."""
    if target == "self":
        return role in ("team_admin", "member")  # the org admin is not in the team
    return target == "colleague" and role in ("org_admin", "team_admin")


def may_add_member(role: str, target: str) -> bool:
    return target == "loner" and role in ("org_admin", "team_admin")


def may_set_password(role: str, target: str) -> bool:
    return target == "self"


def may_update_profile(role: str, target: str) -> bool:
    return target == "self" or (target == "colleague" and role == "org_admin")


def may_delete(role: str, target: str) -> bool:
    return False  # deleting an account is a proxy admin's


# --- the routes, per interface ---------------------------------------------------------------------------


def litellm_key_owner(api, w, role, user):
    return api.post("/key/generate", {"user_id": user.user_id, "team_id": str(w.team.pk)}, key=w.keys[role])


def rest_key_owner(api, w, role, user):
    return api.post("/api/v1/keys/", {"user_id": user.user_id, "team_id": str(w.team.pk)}, key=w.keys[role])


def admin_key_owner(api, w, role, user):
    client = Client()
    client.force_login(w.callers[role])
    url = admin_url("keys.virtualkey", "add")
    page = client.get(url)
    if page.status_code != 200:
        return page
    data = form_data(page.content.decode(), "virtualkey_form")
    data.update(user=user.user_id, team=str(w.team.pk), key_alias=f"t-{role}-{user.pk}")
    return client.post(url, data)


def litellm_member_add(api, w, role, user):
    if role == "org_admin":
        return api.post("/organization/member_add", {
            "organization_id": str(w.org.pk), "member": {"user_id": user.user_id, "role": "internal_user"},
        }, key=w.keys[role])
    return api.post("/team/member_add", {"team_id": str(w.team.pk), "member": {"user_id": user.user_id, "role": "user"}},
                    key=w.keys[role])


def rest_member_add(api, w, role, user):
    if role == "org_admin":
        return api.post(f"/api/v1/organizations/{w.org.pk}/members/",
                        {"user_id": user.user_id, "user_role": "internal_user"}, key=w.keys[role])
    return api.post(f"/api/v1/teams/{w.team.pk}/members/", {"user_id": user.user_id, "role": "user"},
                    key=w.keys[role])


def litellm_password(api, w, role, user):
    return api.post("/user/update", {"user_id": user.user_id, "password": "new-password-123"}, key=w.keys[role])


def rest_password(api, w, role, user):
    return api.patch(f"/api/v1/users/{user.user_id}/", {"password": "new-password-123"}, key=w.keys[role])


def litellm_profile(api, w, role, user):
    return api.post("/user/update", {"user_id": user.user_id, "user_alias": "renamed"}, key=w.keys[role])


def rest_profile(api, w, role, user):
    return api.patch(f"/api/v1/users/{user.user_id}/", {"user_alias": "renamed"}, key=w.keys[role])


def litellm_delete(api, w, role, user):
    return api.post("/user/delete", {"user_ids": [user.user_id]}, key=w.keys[role])


def rest_delete(api, w, role, user):
    return api.delete(f"/api/v1/users/{user.user_id}/", key=w.keys[role])


ROUTES = [
    # (route, interface, call, rule, targets, targets already in the tenant?)
    ("key owner", "litellm", litellm_key_owner, may_own_key, IN_TEAM, True),
    ("key owner", "rest", rest_key_owner, may_own_key, IN_TEAM, True),
    # A team member (role user) has no admin login at all.
    ("key owner", "admin", admin_key_owner, lambda r, t: r != "member" and may_own_key(r, t), IN_TEAM, True),
    ("member add", "litellm", litellm_member_add, may_add_member, OUTSIDE, False),
    ("member add", "rest", rest_member_add, may_add_member, OUTSIDE, False),
    ("user password", "litellm", litellm_password, may_set_password, IN_TEAM, True),
    ("user password", "rest", rest_password, may_set_password, IN_TEAM, True),
    ("user profile", "litellm", litellm_profile, may_update_profile, IN_TEAM, True),
    ("user profile", "rest", rest_profile, may_update_profile, IN_TEAM, True),
    ("user delete", "litellm", litellm_delete, may_delete, IN_TEAM, True),
    ("user delete", "rest", rest_delete, may_delete, IN_TEAM, True),
]


def _rows():
    for route, interface, call, rule, targets, in_tenant in ROUTES:
        for role in ROLES:
            for target in targets:
                expect = "allowed" if rule(role, target) else "refused"
                yield pytest.param(call, role, target, in_tenant, expect,
                                   id=f"{route} | {interface} | {role} -> {target} | {expect}")


def _allowed(interface_response) -> bool:
    status = interface_response.status_code
    if interface_response.get("Content-Type", "").startswith("text/html"):
        # The admin answers a refused form with the form again; a saved key shows its secret once.
        return status == 200 and "Copy the new key now" in interface_response.content.decode(errors="replace")
    return status in (200, 201, 204)


@pytest.mark.parametrize(("call", "role", "target", "in_tenant", "expect"), list(_rows()))
def test_escalation_table(client, call, role, target, in_tenant, expect, settings):
    settings.ACCESSCTL_MASTER_KEY = "sk-master-key-for-tests-0001"
    world = _world(fresh_targets=not in_tenant)
    before = _snapshot()
    response = call(Api(client), world, role, _target(world, role, target))
    allowed = _allowed(response)
    assert allowed == (expect == "allowed"), (response.status_code, response.content[:300])
    assert 200 <= response.status_code < 500  # never a 500
    if not allowed:
        assert _snapshot() == before  # a refused request changes nothing
