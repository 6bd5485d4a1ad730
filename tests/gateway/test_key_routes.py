"""The gateway's routes and a key's key_type / allowed_routes (SPEC §2): model routes for llm_api keys,
never for management or read-only keys; decided from the cached snapshot, which follows every change."""
from __future__ import annotations

import dataclasses
import pickle

import pytest
from django.test import Client

from accessgroups.models import CatalogModel
from keys import cache as snapshot_cache
from keys import services
from keys.authz import KeySnapshot
from tests.factories import KeyFactory, UserFactory

from .conftest import CHECK_URL, bearer, error_type, listed

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"


@pytest.fixture(autouse=True)
def catalog():
    CatalogModel.objects.create(model_name=GPT, provider="openai")


def test_check_by_llm_api_key_is_allowed(check):
    assert check(KeyFactory(key_type="llm_api").raw, model=GPT).status_code == 200


def test_model_list_by_llm_api_key_lists_its_models(list_models):
    response = list_models(KeyFactory(key_type="llm_api").raw)

    assert (response.status_code, listed(response)) == (200, [GPT])


def test_check_by_management_key_is_403_key_route_access_denied(check):
    response = check(KeyFactory(key_type="management").raw, model=GPT)

    assert (response.status_code, error_type(response)) == (403, "key_route_access_denied")
    assert "management" in response.json()["error"]["message"]


def test_check_query_form_by_management_key_says_why_in_the_header(client: Client):
    response = client.get(CHECK_URL, {"model": GPT}, **bearer(KeyFactory(key_type="management").raw))

    assert response.status_code == 403
    assert '"key_route_access_denied"' in response["X-Accessctl-Error"]


def test_check_by_read_only_key_is_403_key_route_access_denied(check):
    response = check(KeyFactory(key_type="read_only").raw, model=GPT)

    assert (response.status_code, error_type(response)) == (403, "key_route_access_denied")


def test_model_list_by_read_only_key_is_allowed(list_models):
    assert list_models(KeyFactory(key_type="read_only").raw).status_code == 200


def test_model_list_by_management_key_is_403(list_models):
    response = list_models(KeyFactory(key_type="management").raw)

    assert (response.status_code, error_type(response)) == (403, "key_route_access_denied")


def test_check_by_key_whose_allowed_routes_omit_it_is_403(check):
    response = check(KeyFactory(allowed_routes=["/v1/models"]).raw, model=GPT)

    assert (response.status_code, error_type(response)) == (403, "key_route_access_denied")


def test_check_by_key_whose_allowed_routes_name_the_model_routes_is_allowed(check):
    assert check(KeyFactory(allowed_routes=["llm_api_routes"]).raw, model=GPT).status_code == 200


def test_usage_by_system_users_management_key_is_403(report_usage):
    gateway = KeyFactory(user=UserFactory(is_system=True), key_type="management").raw

    response = report_usage(gateway, key=KeyFactory().raw, model=GPT, spend=0.1)

    assert (response.status_code, error_type(response)) == (403, "key_route_access_denied")


def test_usage_by_system_users_llm_api_key_is_accepted(report_usage):
    gateway = KeyFactory(user=UserFactory(is_system=True), key_type="llm_api").raw

    assert report_usage(gateway, key=KeyFactory().raw, model=GPT, spend=0.1).status_code == 202


def test_check_follows_a_key_type_change_on_the_next_request(check, committed):
    key = KeyFactory()
    assert check(key.raw, model=GPT).status_code == 200  # cached

    with committed():
        services.key_update(actor=None, key=key, data={"key_type": "management"})

    assert error_type(check(key.raw, model=GPT)) == "key_route_access_denied"


def test_check_follows_an_allowed_routes_change_on_the_next_request(check, committed):
    key = KeyFactory(allowed_routes=["/key/info"])
    assert check(key.raw, model=GPT).status_code == 403  # cached

    with committed():
        services.key_update(actor=None, key=key, data={"allowed_routes": ["/key/info", "/api/v1/authz/check"]})

    assert check(key.raw, model=GPT).status_code == 200


def test_warm_check_of_an_unrestricted_key_makes_no_query(check, django_assert_num_queries):
    raw = KeyFactory().raw
    check(raw, model=GPT)

    with django_assert_num_queries(0):
        assert check(raw, model=GPT).status_code == 200


def test_snapshot_cached_by_an_older_release_loads_as_unrestricted():
    """A snapshot pickled before key_type existed has none of the route fields: it reads their defaults."""
    key = KeyFactory()
    new = snapshot_cache.load_snapshot(key.token)
    old = KeySnapshot.__new__(KeySnapshot)
    route_fields = {"refused_routes", "key_type", "allowed_routes"}
    old.__dict__.update({f.name: getattr(new, f.name) for f in dataclasses.fields(new) if f.name not in route_fields})

    loaded = pickle.loads(pickle.dumps(old))

    assert (loaded.refused_routes, loaded.key_type, loaded.allowed_routes) == (frozenset(), "default", ())
    assert loaded.route_decision(CHECK_URL, "POST").allowed
