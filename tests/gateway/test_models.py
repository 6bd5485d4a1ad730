"""GET /v1/models (and /models): the OpenAI list shape, and never a disagreement with the check."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from accessgroups import services as access_services
from tests.factories import (
    AccessGroupFactory,
    CatalogModelFactory,
    KeyFactory,
    OrganizationFactory,
    TeamFactory,
    UserFactory,
)

from .conftest import error_type, listed

pytestmark = pytest.mark.django_db

CATALOG = ["openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-3", "mistral/large", "meta/llama-3"]
NOT_IN_CATALOG = ["openai/gpt-5-preview", "private/finetune"]


@pytest.fixture
def catalog():
    for name in CATALOG:
        CatalogModelFactory(model_name=name, provider=name.split("/")[0])
    CatalogModelFactory(model_name="openai/retired", provider="openai", active=False)


def test_model_list_answers_the_openai_list_shape(list_models, catalog):
    key = KeyFactory(models=["openai/gpt-4o"])

    response = list_models(key.raw)

    assert response.status_code == 200
    assert response.json() == {
        "object": "list",
        "data": [{"id": "openai/gpt-4o", "object": "model", "created": 1677610602, "owned_by": "openai"}],
    }


def test_model_list_alias_answers_the_same_list(list_models, catalog):
    key = KeyFactory(models=["openai/*"])

    assert list_models(key.raw, "/models").json() == list_models(key.raw).json()


def test_model_list_unrestricted_key_lists_the_active_catalog_only(list_models, catalog):
    key = KeyFactory()

    assert listed(list_models(key.raw)) == sorted(CATALOG)


def test_model_list_warm_runs_no_database_query(list_models, catalog, django_assert_num_queries):
    key = KeyFactory(models=["openai/*"])
    list_models(key.raw)

    with django_assert_num_queries(0):
        response = list_models(key.raw)

    assert listed(response) == ["openai/gpt-4o", "openai/gpt-4o-mini"]


def test_model_list_catalog_change_is_listed_on_the_next_request(list_models, catalog, django_capture_on_commit_callbacks):
    key = KeyFactory(models=["openai/*"])
    list_models(key.raw)

    with django_capture_on_commit_callbacks(execute=True):
        access_services.catalog_upsert(actor=None, kind="model", data={"model_name": "openai/o3", "provider": "openai"})

    assert "openai/o3" in listed(list_models(key.raw))


def test_model_list_blocked_key_answers_403(list_models, catalog):
    key = KeyFactory(blocked=True)

    response = list_models(key.raw)

    assert response.status_code == 403
    assert error_type(response) == "key_blocked"


def test_model_list_unknown_key_answers_401(list_models):
    assert list_models("sk-unknown-secret-0000000000").status_code == 401


def test_model_list_master_key_lists_the_whole_catalog(list_models, catalog, settings):
    settings.ACCESSCTL_MASTER_KEY = "sk-master-key-for-tests"

    assert listed(list_models("sk-master-key-for-tests")) == sorted(CATALOG)


def _group(*models: str):
    return AccessGroupFactory(access_model_names=list(models))


def _case(make_key: Callable[[], object], expected: list[str], case_id: str):
    return pytest.param(make_key, expected, id=case_id)


# One key per case of the resolver table (SPEC §5), with what it lists.
RESOLVER_CASES = [
    _case(lambda: KeyFactory(models=["openai/gpt-4o", "private/finetune"]), ["openai/gpt-4o", "private/finetune"],
          "key-explicit-names"),
    _case(lambda: KeyFactory(models=["openai/*"]), ["openai/gpt-4o", "openai/gpt-4o-mini"], "key-pattern"),
    _case(lambda: KeyFactory(models=["all-proxy-models"]), sorted(CATALOG), "key-all-proxy-models"),
    _case(lambda: KeyFactory(user=UserFactory(models=["mistral/large"])), ["mistral/large"],
          "personal-key-follows-user-models"),
    _case(lambda: KeyFactory(user=UserFactory(models=["openai/*"]), models=["openai/gpt-4o", "mistral/large"]),
          ["openai/gpt-4o"], "personal-key-within-user-models"),
    _case(lambda: KeyFactory(access_group_ids=[_group("anthropic/claude-3").pk]), ["anthropic/claude-3"],
          "key-access-group"),
    _case(lambda: KeyFactory(team=TeamFactory(models=["openai/*", "anthropic/claude-3"]),
                             access_group_ids=[_group("openai/gpt-4o").pk]),
          ["openai/gpt-4o"], "key-access-group-never-widened-by-team"),
    _case(lambda: KeyFactory(models=[AccessGroupFactory(access_group_name="beta", access_model_names=["meta/*"])
                                     .access_group_name]),
          ["meta/llama-3"], "key-names-a-group"),
    _case(lambda: KeyFactory(team=TeamFactory(models=["openai/gpt-4o-mini", "meta/llama-3"])),
          ["meta/llama-3", "openai/gpt-4o-mini"], "team-models"),
    _case(lambda: KeyFactory(team=TeamFactory(access_group_ids=[_group("mistral/*").pk])), ["mistral/large"],
          "team-access-groups"),
    _case(lambda: KeyFactory(team=TeamFactory(models=["openai/*"]), models=["openai/gpt-4o", "anthropic/claude-3"]),
          ["openai/gpt-4o"], "key-within-team"),
    _case(lambda: KeyFactory(team=TeamFactory(models=["anthropic/*"]), models=["all-team-models"]),
          ["anthropic/claude-3"], "all-team-models"),
    _case(lambda: KeyFactory(team=TeamFactory(organization=OrganizationFactory(models=["openai/gpt-4o"]))),
          ["openai/gpt-4o"], "organization-caps-team"),
    _case(lambda: KeyFactory(user=None, team=TeamFactory(models=["meta/llama-3"])), ["meta/llama-3"],
          "service-account-key"),
    _case(lambda: KeyFactory(models=["openai/*"], model_max_budget={"openai/gpt-4o": 1.0},
                             model_spend={"openai/gpt-4o": 1.0}),
          ["openai/gpt-4o-mini"], "model-budget-spent"),
    _case(lambda: KeyFactory(max_budget=1.0, spend=2.0), [], "key-budget-spent"),
    _case(lambda: KeyFactory(models=["no-default-models"], access_group_ids=[_group("openai/gpt-4o-mini").pk]),
          ["openai/gpt-4o-mini"], "no-default-models-with-group"),
]


@pytest.mark.parametrize(("make_key", "expected"), RESOLVER_CASES)
def test_model_list_lists_what_the_resolver_allows(make_key, expected, catalog, list_models):
    key = make_key()

    assert listed(list_models(key.raw)) == expected


@pytest.mark.parametrize(("make_key", "expected"), RESOLVER_CASES)
def test_model_list_and_check_agree(make_key, expected, catalog, check, list_models):
    key = make_key()

    names = set(listed(list_models(key.raw)))
    allowed = {name for name in CATALOG + NOT_IN_CATALOG if check(key.raw, model=name).status_code == 200}

    assert names <= allowed  # everything listed is allowed by the check
    assert allowed & set(CATALOG) <= names  # every allowed catalog model is listed
