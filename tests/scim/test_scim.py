"""SCIM 2.0 provisioning (SPEC §10) through /scim/v2/: users and groups written through the services,
deprovisioning refuses the user's keys on the next check, unknown attributes are a 400 naming them."""
from __future__ import annotations

import json

import pytest

from orgs.models import AuditEntry, Organization, ScimGroup, TeamMembership, User
from tests.factories import KeyFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "scim-token-for-tests-0002"
SCIM = "application/scim+json"
GPT = "openai/gpt-4o"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def scim(client, settings):
    settings.ACCESSCTL_SCIM_TOKEN = TOKEN
    settings.ACCESSCTL_SCIM_GROUPS = {"target": "team", "organization_id": str(OrganizationFactory().pk)}

    def call(method: str, path: str, body=None, token: str | None = TOKEN):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        data = json.dumps(body) if body is not None else ""
        return client.generic(method, f"/scim/v2/{path}", data, content_type=SCIM, **headers)

    return call


def check(client, raw):
    return client.post("/api/v1/authz/check", {"model": GPT}, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_scim_creates_a_user_through_the_services(scim):
    response = scim("POST", "Users", {"schemas": [USER_SCHEMA], "userName": "dana@acme.test", "externalId": "okta-1",
                                      "emails": [{"value": "dana@acme.test", "primary": True}], "active": True})
    assert response.status_code == 201, response.content
    user = User.objects.get(user_id="dana@acme.test")
    assert (user.user_email, user.scim_external_id, response.json()["id"]) == ("dana@acme.test", "okta-1", str(user.pk))
    assert AuditEntry.objects.filter(action="user_create", object_id="dana@acme.test").exists()


def test_scim_deprovisioning_refuses_the_users_keys_on_the_next_check(scim, client, django_capture_on_commit_callbacks):
    user = UserFactory()
    key = KeyFactory(user=user)
    assert check(client, key.raw).status_code == 200  # cached now
    patch = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]}
    with django_capture_on_commit_callbacks(execute=True):
        assert scim("PATCH", f"Users/{user.pk}", patch).status_code == 200
    refused = check(client, key.raw)
    assert (refused.status_code, refused.json()["error"]["type"]) == (403, "user_blocked")


def test_scim_delete_removes_the_user_and_their_keys(scim, client, django_capture_on_commit_callbacks):
    user = UserFactory()
    key = KeyFactory(user=user)
    assert check(client, key.raw).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert scim("DELETE", f"Users/{user.pk}").status_code == 204
    assert check(client, key.raw).status_code == 401
    assert not User.objects.filter(pk=user.pk).exists()


def test_scim_unknown_attribute_is_400_naming_it_and_creates_nothing(scim):
    before = User.objects.count()
    response = scim("POST", "Users", {"schemas": [USER_SCHEMA], "userName": "eve@acme.test", "shoeSize": 44})
    assert response.status_code == 400
    body = response.json()
    assert body["scimType"] == "invalidSyntax" and '"shoeSize"' in body["detail"]
    assert User.objects.count() == before


def test_scim_unknown_patch_path_is_400(scim):
    user = UserFactory()
    patch = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "shoeSize", "value": 44}]}
    response = scim("PATCH", f"Users/{user.pk}", patch)
    assert response.status_code == 400 and "shoesize" in response.json()["detail"].lower()


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_scim_without_the_bearer_token_is_401(scim, token):
    assert scim("GET", "Users", token=token).status_code == 401


def test_scim_is_off_without_a_token_configured(client, settings):
    settings.ACCESSCTL_SCIM_TOKEN = ""
    assert client.get("/scim/v2/Users", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_scim_malformed_id_is_404_not_500(scim):
    assert scim("GET", "Users/not-a-number").status_code == 404
    assert scim("GET", "Groups/not-a-uuid").status_code == 404


def test_scim_group_is_a_team_whose_members_follow_the_idp(scim, django_capture_on_commit_callbacks):
    alice, bob = UserFactory(), UserFactory()
    response = scim("POST", "Groups", {"schemas": [GROUP_SCHEMA], "displayName": "ml-engineers",
                                       "members": [{"value": str(alice.pk)}, {"value": str(bob.pk)}]})
    assert response.status_code == 201, response.content
    group = ScimGroup.objects.get(display_name="ml-engineers")
    assert group.team.team_alias == "ml-engineers"
    assert set(TeamMembership.objects.filter(team=group.team).values_list("user_id", flat=True)) == {alice.pk, bob.pk}
    patch = {"schemas": [PATCH_SCHEMA],
             "Operations": [{"op": "remove", "path": f'members[value eq "{bob.pk}"]'}]}
    assert scim("PATCH", f"Groups/{group.pk}", patch).status_code == 200
    assert list(TeamMembership.objects.filter(team=group.team).values_list("user_id", flat=True)) == [alice.pk]


def test_scim_group_can_be_an_organization(scim, settings):
    settings.ACCESSCTL_SCIM_GROUPS = {"target": "organization"}
    carol = UserFactory()
    response = scim("POST", "Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Initech",
                                       "members": [{"value": str(carol.pk)}]})
    assert response.status_code == 201, response.content
    organization = Organization.objects.get(organization_alias="Initech")
    assert organization.memberships.get().user == carol


def test_scim_group_with_an_unknown_member_is_400_and_creates_nothing(scim):
    response = scim("POST", "Groups", {"schemas": [GROUP_SCHEMA], "displayName": "ghosts", "members": [{"value": "999999"}]})
    assert response.status_code == 400
    assert not ScimGroup.objects.exists()
