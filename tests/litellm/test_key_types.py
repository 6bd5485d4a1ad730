"""`key_type` and `allowed_routes` on LiteLLM's routes (SPEC §2): accepted by /key/generate and /key/update,
shown by /key/info and /key/list, and obeyed by every management route the key calls."""
from __future__ import annotations

import pytest

from keys.models import VirtualKey
from orgs.models import Organization, Team
from tests.factories import KeyFactory, UserFactory

from .conftest import assert_detail, assert_error, key_of

pytestmark = pytest.mark.django_db

DENIED = "key_route_access_denied"


# --- stored and shown -------------------------------------------------------------------------------


def test_key_generate_stores_key_type_and_allowed_routes(api):
    body = api.post("/key/generate", {"key_type": "management", "allowed_routes": ["/key/info", "/key/list"]}).json()

    key = VirtualKey.objects.get(token=body["token"])
    assert (key.key_type, key.allowed_routes) == ("management", ["/key/info", "/key/list"])
    assert (body["key_type"], body["allowed_routes"]) == ("management", ["/key/info", "/key/list"])


def test_key_generate_without_key_type_is_default_and_unrestricted(api):
    body = api.post("/key/generate", {}).json()

    assert (body["key_type"], body["allowed_routes"]) == ("default", [])


def test_key_info_shows_key_type_and_allowed_routes(api):
    key = KeyFactory(key_type="read_only", allowed_routes=["/key/info"])

    info = api.get("/key/info", {"key": key.token}).json()["info"]

    assert (info["key_type"], info["allowed_routes"]) == ("read_only", ["/key/info"])


def test_key_list_full_objects_show_key_type(api):
    key = KeyFactory(key_type="llm_api")

    rows = api.get("/key/list", {"return_full_object": "true", "key_hash": key.token}).json()["keys"]

    assert [row["key_type"] for row in rows] == ["llm_api"]


def test_key_update_sets_key_type_and_allowed_routes(api):
    key = KeyFactory()

    body = api.post("/key/update", {"key": key.token, "key_type": "llm_api", "allowed_routes": ["llm_api_routes"]})

    assert body.status_code == 200
    assert (body.json()["key_type"], body.json()["allowed_routes"]) == ("llm_api", ["llm_api_routes"])
    key.refresh_from_db()
    assert (key.key_type, key.allowed_routes) == ("llm_api", ["llm_api_routes"])


def test_key_update_with_null_key_type_makes_it_default(api):
    key = KeyFactory(key_type="management")

    api.post("/key/update", {"key": key.token, "key_type": None})

    key.refresh_from_db()
    assert key.key_type == "default"


# --- obeyed on management routes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/key/generate", {}, id="key-generate"),
        pytest.param("GET", "/key/info", None, id="key-info"),
        pytest.param("POST", "/team/new", {"team_alias": "x"}, id="team-new"),
        pytest.param("POST", "/organization/new", {"organization_alias": "x"}, id="organization-new"),
        pytest.param("GET", "/user/list", None, id="user-list"),
        pytest.param("GET", "/api/v1/keys/", None, id="rest-key-list"),
        pytest.param("POST", "/api/v1/keys/", {}, id="rest-key-create"),
    ],
)
def test_llm_api_key_on_a_management_route_is_403(api, method, path, body):
    admin = UserFactory(user_role="proxy_admin")
    raw = key_of(admin, key_type="llm_api")  # even a proxy admin's key: the key narrows its user's rights
    keys, teams, orgs = VirtualKey.objects.count(), Team.objects.count(), Organization.objects.count()

    response = api.call(method, path, key=raw, json_body=body)

    assert_error(response, 403, DENIED)
    assert (VirtualKey.objects.count(), Team.objects.count(), Organization.objects.count()) == (keys, teams, orgs)


def test_llm_api_key_on_the_access_group_routes_is_403_in_their_shape(api):
    admin = UserFactory(user_role="proxy_admin")

    response = api.get("/v1/access_group", key=key_of(admin, key_type="llm_api"))

    assert "not allowed" in str(assert_detail(response, 403))


def test_management_key_generates_an_llm_api_key(api):
    user = UserFactory()
    response = api.post("/key/generate", {"key_type": "llm_api"}, key=key_of(user, key_type="management"))

    assert response.status_code == 200
    assert response.json()["key_type"] == "llm_api"


def test_read_only_key_reads_its_keys(api):
    user = UserFactory()
    raw = key_of(user, key_type="read_only")

    assert api.get("/key/info", key=raw).status_code == 200
    assert api.get("/key/list", key=raw).status_code == 200
    assert api.post("/key/health", key=raw).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/key/generate", {}, id="key-generate"),
        pytest.param("/key/update", {"key_alias": "x"}, id="key-update"),
        pytest.param("/key/block", {}, id="key-block"),
    ],
)
def test_read_only_key_on_a_write_route_is_403(api, path, body):
    user = UserFactory()
    key = KeyFactory(user=user, key_type="read_only")

    response = api.post(path, {**body, "key": key.token} if path != "/key/generate" else body, key=key.raw)

    assert_error(response, 403, DENIED)
    key.refresh_from_db()
    assert (key.key_alias, key.blocked) == (None, False)


def test_key_with_allowed_routes_calls_them(api):
    raw = key_of(UserFactory(), allowed_routes=["/key/info"])

    assert api.get("/key/info", key=raw).status_code == 200


def test_key_with_allowed_routes_is_403_elsewhere(api):
    raw = key_of(UserFactory(), allowed_routes=["/key/info"])

    error = assert_error(api.get("/key/list", key=raw), 403, DENIED)
    assert "/key/info" in error["message"]


def test_key_with_wildcard_allowed_routes_calls_the_routes_under_it(api):
    raw = key_of(UserFactory(), allowed_routes=["/key/*"])

    assert api.get("/key/list", key=raw).status_code == 200
    assert_error(api.get("/team/list", key=raw), 403, DENIED)


# --- who may set them ----------------------------------------------------------------------------------------


def test_key_widening_its_own_key_type_is_403_and_changes_nothing(api):
    key = KeyFactory(user=UserFactory(), key_type="management")

    response = api.post("/key/update", {"key": key.token, "key_type": "default"}, key=key.raw)

    assert_error(response, 403)
    key.refresh_from_db()
    assert key.key_type == "management"


def test_key_dropping_its_own_allowed_routes_is_403(api):
    key = KeyFactory(user=UserFactory(), allowed_routes=["/key/update", "/key/info"])

    response = api.post("/key/update", {"key": key.token, "allowed_routes": []}, key=key.raw)

    assert_error(response, 403)
    key.refresh_from_db()
    assert key.allowed_routes == ["/key/update", "/key/info"]


def test_key_widening_itself_through_regenerate_is_403(api):
    key = KeyFactory(user=UserFactory(), key_type="management")

    response = api.post("/key/regenerate", {"key": key.token, "key_type": "default"}, key=key.raw)

    assert_error(response, 403)
    key.refresh_from_db()
    assert key.key_type == "management"


def test_key_narrowing_itself_is_allowed(api):
    key = KeyFactory(user=UserFactory(), key_type="management")

    response = api.post("/key/update", {"key": key.token, "allowed_routes": ["/key/info"]}, key=key.raw)

    assert response.status_code == 200
    key.refresh_from_db()
    assert key.allowed_routes == ["/key/info"]


def test_owner_widens_a_key_with_another_of_their_keys(api):
    user = UserFactory()
    restricted = KeyFactory(user=user, key_type="llm_api")

    response = api.post("/key/update", {"key": restricted.token, "key_type": "default"}, key=key_of(user))

    assert response.status_code == 200
    restricted.refresh_from_db()
    assert restricted.key_type == "default"


def test_key_type_of_someone_elses_key_cannot_be_set(api):
    other = KeyFactory(user=UserFactory(), key_type="llm_api")

    response = api.post("/key/update", {"key": other.token, "key_type": "default"}, key=key_of(UserFactory()))

    assert_error(response, 403)
    other.refresh_from_db()
    assert other.key_type == "llm_api"


def test_member_without_the_update_grant_cannot_set_a_team_keys_key_type(api, team, member):
    team.member_permissions = ["/key/info"]
    team.save(update_fields=["member_permissions"])
    team_key = KeyFactory(user=member, team=team, key_type="llm_api")

    response = api.post("/key/update", {"key": team_key.token, "key_type": "default"}, key=key_of(member))

    assert_error(response, 401, "team_member_permission_error")
    team_key.refresh_from_db()
    assert team_key.key_type == "llm_api"
