"""OpenID Connect login for the admin against a real provider process (SPEC §10): mapped roles on first
login, re-derived on every login; forged, misdirected and expired ID tokens refused with nothing changed."""
from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from orgs.models import AuditEntry, OrganizationMembership, TeamMembership, User
from orgs.sso import parse_role_map
from tests.factories import OrganizationFactory, TeamFactory, UserFactory

from .conftest import sso_login, sso_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenants(settings, provider):
    acme, other = OrganizationFactory(organization_alias="Acme"), OrganizationFactory(organization_alias="Globex")
    ml_team = TeamFactory(organization=acme, team_alias="ml")
    sso_settings(settings, provider, {
        "platform-admins": {"platform": "proxy_admin"},
        "acme-admins": {"organization": str(acme.pk), "role": "org_admin"},
        "acme-members": {"organization": str(acme.pk), "role": "internal_user"},
        "ml-team-admins": {"team": str(ml_team.pk), "role": "admin"},
    })
    return acme, other, ml_team


def test_first_sso_login_creates_the_user_with_the_mapped_roles(client, provider, tenants):
    acme, _, _ = tenants
    response = sso_login(client, provider, "alice")
    assert (response.status_code, response["Location"]) == (302, "/admin/")
    user = User.objects.get(sso_user_id="sub-alice")
    assert (user.user_id, user.user_email, user.user_role) == ("alice@acme.test", "alice@acme.test", "internal_user")
    assert OrganizationMembership.objects.get(user=user).organization == acme
    assert OrganizationMembership.objects.get(user=user).user_role == "org_admin"
    assert client.get("/admin/").status_code == 200
    assert AuditEntry.objects.filter(action="organization_member_add", object_id__endswith=":alice@acme.test").exists()


def test_sso_login_maps_team_and_platform_roles(client, provider, tenants):
    _, _, ml_team = tenants
    sso_login(client, provider, "bob")
    bob = User.objects.get(sso_user_id="sub-bob")
    assert TeamMembership.objects.get(user=bob, team=ml_team).role == "admin"
    sso_login(client, provider, "root")
    assert User.objects.get(sso_user_id="sub-root").user_role == "proxy_admin"


def test_a_group_removed_at_the_idp_removes_the_role_at_the_next_login(client, provider, tenants):
    _, _, ml_team = tenants
    sso_login(client, provider, "bob")
    bob = User.objects.get(sso_user_id="sub-bob")
    assert TeamMembership.objects.filter(user=bob, team=ml_team).exists()
    provider.set_user("bob", groups=["acme-members"])
    client.logout()
    sso_login(client, provider, "bob")
    assert not TeamMembership.objects.filter(user=bob, team=ml_team).exists()
    provider.set_user("root", groups=[])
    sso_login(client, provider, "root")
    assert User.objects.get(sso_user_id="sub-root").user_role == "internal_user"


def test_memberships_outside_the_role_map_are_left_alone(client, provider, tenants):
    _, other, _ = tenants
    sso_login(client, provider, "alice")
    alice = User.objects.get(sso_user_id="sub-alice")
    OrganizationMembership.objects.create(organization=other, user=alice, user_role="internal_user")
    client.logout()
    sso_login(client, provider, "alice")
    assert OrganizationMembership.objects.filter(user=alice, organization=other).exists()


@pytest.mark.parametrize(
    ("username", "reason"),
    [
        pytest.param("mallory-signature", "signature does not verify", id="forged-signature"),
        pytest.param("mallory-audience", "wrong audience", id="wrong-audience"),
        pytest.param("mallory-expired", "expired", id="expired"),
    ],
)
def test_bad_id_token_is_refused_with_a_clear_error_and_changes_nothing(client, provider, tenants, username, reason):
    users, entries = User.objects.count(), AuditEntry.objects.count()
    response = sso_login(client, provider, username)
    assert response.status_code == 400
    page = response.content.decode()
    assert "Single sign-on failed" in page and reason in page
    assert (User.objects.count(), AuditEntry.objects.count()) == (users, entries)
    assert client.get("/admin/").status_code == 302  # not logged in


def test_bad_id_token_for_a_known_user_leaves_their_roles(client, provider, tenants):
    sso_login(client, provider, "alice")
    alice = User.objects.get(sso_user_id="sub-alice")
    client.logout()
    provider.set_user("alice", groups=["platform-admins"], flaw="audience")
    assert sso_login(client, provider, "alice").status_code == 400
    alice.refresh_from_db()
    assert alice.user_role == "internal_user"
    assert OrganizationMembership.objects.get(user=alice).user_role == "org_admin"


def test_sso_never_takes_over_an_unlinked_local_account(client, provider, tenants):
    local = UserFactory(user_id="alice@acme.test", user_role="proxy_admin")
    response = sso_login(client, provider, "alice")
    assert response.status_code == 400 and "not linked" in response.content.decode()
    local.refresh_from_db()
    assert local.sso_user_id is None and not OrganizationMembership.objects.filter(user=local).exists()


def test_password_login_turned_off_refuses_the_right_password(client, settings, provider, tenants):
    settings.ACCESSCTL_PASSWORD_LOGIN = False
    settings.AUTHENTICATION_BACKENDS = ["orgs.sso.PasswordLoginOffBackend", "orgs.sso.SSOBackend"]
    admin = UserFactory(user_role="proxy_admin")
    admin.set_password("a-long-password")
    admin.save()
    page = client.post("/admin/login/", {"username": admin.user_id, "password": "a-long-password"})
    assert page.status_code == 200 and "Password login is turned off" in page.content.decode()
    assert client.get("/admin/").status_code == 302
    assert sso_login(client, provider, "alice")["Location"] == "/admin/"  # SSO still logs in


def test_login_page_offers_single_sign_on_when_configured(client, provider, tenants):
    assert b'id="sso-login-link"' in client.get("/admin/login/").content


def test_sso_routes_are_404_when_not_configured(client):
    assert client.get("/sso/login/").status_code == 404


@pytest.mark.parametrize(
    "role_map",
    [
        pytest.param({"g": {"platform": "root"}}, id="unknown-platform-role"),
        pytest.param({"g": {"organization": "x", "role": "owner"}}, id="unknown-org-role"),
        pytest.param({"g": {"colour": "blue"}}, id="unknown-grant"),
    ],
)
def test_role_map_mistakes_fail_naming_the_group(role_map):
    with pytest.raises(ImproperlyConfigured, match="'g'"):
        parse_role_map(role_map)
