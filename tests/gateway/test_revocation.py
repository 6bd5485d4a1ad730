"""Every write that can change an answer is seen by the very next check (SPEC §6): check → change → check.

Each test runs three times: on the in-process cache, and on Redis and on the file cache with their
invalidation feeds, where the write acts as another process would: it never touches the checking
process's copies itself, so only what it announces can make the next check see the change.
"""
from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from accessgroups import services as access_services
from keys import cache as snapshot_cache
from keys import services as key_services
from keys.tasks import key_budget_reset
from orgs import services as org_services
from orgs.models import TeamMembership
from tests.factories import (
    AccessGroupFactory,
    KeyFactory,
    OrganizationFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)

from .conftest import error_type, until_current

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"


@pytest.fixture(autouse=True, params=["locmem", "redis-feed", "file-feed"])
def deployment(request, monkeypatch) -> str:
    if request.param != "locmem":
        request.getfixturevalue("redis_cache" if request.param == "redis-feed" else "file_cache")
        monkeypatch.setattr(snapshot_cache, "_forget", lambda names: None)  # the writer is another process
    return request.param


@pytest.fixture
def warm(check, deployment):
    """Check once (cold: caches the snapshot) and again (warm, from this process's copy); both must allow."""

    def _warm(raw: str, model: str = GPT) -> None:
        assert check(raw, model=model).status_code == 200
        if deployment != "locmem":
            until_current()
        assert check(raw, model=model).status_code == 200

    return _warm


def test_key_block_refuses_the_next_check(check, warm, committed):
    key = KeyFactory()
    warm(key.raw)

    with committed():
        key_services.key_block(actor=None, key=key)

    response = check(key.raw, model=GPT)
    assert response.status_code == 403
    assert error_type(response) == "key_blocked"


def test_key_unblock_allows_the_next_check(check, committed):
    key = KeyFactory(blocked=True)
    assert check(key.raw, model=GPT).status_code == 403

    with committed():
        key_services.key_unblock(actor=None, key=key)

    assert check(key.raw, model=GPT).status_code == 200


def test_key_delete_refuses_the_next_check_as_unknown(check, warm, committed):
    key = KeyFactory()
    warm(key.raw)

    with committed():
        key_services.key_delete(actor=None, key=key)

    assert check(key.raw, model=GPT).status_code == 401


def test_key_regenerate_refuses_the_old_secret_and_allows_the_new(check, warm, committed):
    key = KeyFactory()
    warm(key.raw)

    with committed():
        _, new_raw = key_services.key_regenerate(actor=None, key=key)

    assert check(key.raw, model=GPT).status_code == 401
    assert check(new_raw, model=GPT).status_code == 200


def test_key_update_of_models_refuses_a_removed_model_on_the_next_check(check, warm, committed):
    key = KeyFactory(models=[GPT, "x/y"])
    warm(key.raw)

    with committed():
        key_services.key_update(actor=None, key=key, data={"models": ["x/y"]})

    assert error_type(check(key.raw, model=GPT)) == "key_model_access_denied"


def test_key_spend_reset_allows_the_next_check_after_budget_exceeded(check, committed):
    key = KeyFactory(max_budget=1.0, spend=1.0)
    assert error_type(check(key.raw, model=GPT)) == "budget_exceeded"

    with committed():
        key_services.key_update(actor=None, key=key, data={"spend": 0.0})

    assert check(key.raw, model=GPT).status_code == 200


def test_team_block_refuses_the_next_check_of_every_team_key(check, warm, committed):
    team = TeamFactory()
    keys = [KeyFactory(team=team), KeyFactory(team=team, user=None)]
    for key in keys:
        warm(key.raw)

    with committed():
        org_services.team_update(actor=None, team=team, data={"blocked": True})

    assert [error_type(check(k.raw, model=GPT)) for k in keys] == ["team_blocked", "team_blocked"]


def test_team_models_narrowed_refuses_the_next_check(check, warm, committed):
    team = TeamFactory(models=[GPT])
    key = KeyFactory(team=team)
    warm(key.raw)

    with committed():
        org_services.team_update(actor=None, team=team, data={"models": ["x/y"]})

    assert error_type(check(key.raw, model=GPT)) == "team_model_access_denied"


def test_team_delete_refuses_the_next_check_as_unknown(check, warm, committed):
    team = TeamFactory()
    key = KeyFactory(team=team)
    warm(key.raw)

    with committed():
        org_services.team_delete(actor=None, team=team)

    assert check(key.raw, model=GPT).status_code == 401


def test_team_member_removal_refuses_their_team_keys_on_the_next_check(check, warm, committed):
    membership = TeamMembershipFactory()
    key = KeyFactory(team=membership.team, user=membership.user)
    warm(key.raw)

    with committed():
        org_services.team_member_delete(actor=None, membership=TeamMembership.objects.get(pk=membership.pk))

    assert check(key.raw, model=GPT).status_code == 401


def test_organization_soft_delete_refuses_the_next_check(check, warm, committed):
    org = OrganizationFactory()
    team_key = KeyFactory(team=TeamFactory(organization=org))
    direct_key = KeyFactory(organization=org)
    warm(team_key.raw)
    warm(direct_key.raw)

    with committed():
        org_services.organization_delete(actor=None, organization=org)

    assert error_type(check(team_key.raw, model=GPT)) == "organization_deleted"
    assert error_type(check(direct_key.raw, model=GPT)) == "organization_deleted"


def test_organization_models_narrowed_refuses_the_next_check(check, warm, committed):
    org = OrganizationFactory(models=[GPT, "x/y"])
    key = KeyFactory(team=TeamFactory(organization=org))
    warm(key.raw)

    with committed():
        org_services.organization_update(actor=None, organization=org, data={"models": ["x/y"]})

    assert error_type(check(key.raw, model=GPT)) == "org_model_access_denied"


def test_organization_budget_lowered_refuses_the_next_check(check, warm, committed):
    org = OrganizationFactory(spend=3.0)
    key = KeyFactory(team=TeamFactory(organization=org))
    warm(key.raw)

    with committed():
        org_services.organization_update(actor=None, organization=org, data={"max_budget": 2.0})

    assert error_type(check(key.raw, model=GPT)) == "budget_exceeded"


def test_user_deactivation_refuses_the_next_check(check, warm, committed):
    key = KeyFactory()
    warm(key.raw)

    with committed():
        org_services.user_update(actor=None, user=key.user, data={"is_active": False})

    assert error_type(check(key.raw, model=GPT)) == "user_blocked"


def test_access_group_models_changed_refuses_the_next_check(check, warm, committed):
    group = AccessGroupFactory(access_model_names=[GPT])
    key = KeyFactory(access_group_ids=[group.pk])
    warm(key.raw)

    with committed():
        access_services.access_group_update(actor=None, group=group, data={"access_model_names": ["x/y"]})

    assert error_type(check(key.raw, model=GPT)) == "key_model_access_denied"


def test_access_group_unassigned_from_team_refuses_the_next_check(check, warm, committed):
    group = AccessGroupFactory(access_model_names=[GPT])
    other = AccessGroupFactory(access_model_names=["x/y"])
    team = TeamFactory(access_group_ids=[group.pk, other.pk])
    key = KeyFactory(team=team)
    warm(key.raw)

    with committed():
        access_services.access_group_unassign(actor=None, group=group, teams=[team])

    assert error_type(check(key.raw, model=GPT)) == "team_model_access_denied"


def test_access_group_assigned_to_key_restricts_the_next_check(check, warm, committed):
    key = KeyFactory()
    warm(key.raw)
    group = AccessGroupFactory(access_model_names=["x/y"])

    with committed():
        access_services.access_group_assign(actor=None, group=group, keys=[key])

    assert error_type(check(key.raw, model=GPT)) == "key_model_access_denied"


def test_access_group_delete_refuses_the_next_check_of_assigned_keys(check, warm, committed):
    group = AccessGroupFactory(access_model_names=[GPT])
    other = AccessGroupFactory(access_model_names=["x/y"])
    key = KeyFactory(team=TeamFactory(access_group_ids=[group.pk, other.pk]), models=[GPT])
    warm(key.raw)

    with committed():
        access_services.access_group_delete(actor=None, group=group)

    assert error_type(check(key.raw, model=GPT)) == "team_model_access_denied"


def test_access_group_delete_refuses_the_next_check_of_keys_naming_it(check, warm, committed):
    group = AccessGroupFactory(access_group_name="beta-models", access_model_names=[GPT])
    key = KeyFactory(models=["beta-models"])
    warm(key.raw)

    with committed():
        access_services.access_group_delete(actor=None, group=group)

    assert error_type(check(key.raw, model=GPT)) == "key_model_access_denied"


def test_access_group_rename_refuses_the_next_check_of_keys_naming_the_old_name(check, warm, committed):
    group = AccessGroupFactory(access_group_name="beta-models", access_model_names=[GPT])
    key = KeyFactory(models=["beta-models"])
    warm(key.raw)

    with committed():
        access_services.access_group_update(actor=None, group=group, data={"access_group_name": "gamma-models"})

    assert error_type(check(key.raw, model=GPT)) == "key_model_access_denied"


def test_access_group_named_by_an_organization_changed_refuses_the_next_check(check, warm, committed):
    group = AccessGroupFactory(access_group_name="approved", access_model_names=[GPT, "x/y"])
    org = OrganizationFactory(models=["approved"])
    key = KeyFactory(team=TeamFactory(organization=org))
    warm(key.raw)

    with committed():
        access_services.access_group_update(actor=None, group=group, data={"access_model_names": ["x/y"]})

    assert error_type(check(key.raw, model=GPT)) == "org_model_access_denied"


def test_access_group_created_with_a_key_assigned_restricts_the_next_check(check, warm, committed):
    key = KeyFactory()
    warm(key.raw)

    with committed():
        AccessGroupFactory(access_model_names=["x/y"], assigned_key_ids=[key.token])

    assert error_type(check(key.raw, model=GPT)) == "key_model_access_denied"


def test_user_models_narrowed_refuses_the_next_check_of_a_personal_key(check, warm, committed):
    user = UserFactory(models=[GPT, "x/y"])
    key = KeyFactory(user=user, models=[GPT])
    warm(key.raw)

    with committed():
        org_services.user_update(actor=None, user=user, data={"models": ["x/y"]})

    assert error_type(check(key.raw, model=GPT)) == "user_model_access_denied"


def test_budget_reset_allows_the_next_check_after_budget_exceeded(check, committed):
    key = KeyFactory(max_budget=1.0, spend=1.0, budget_duration="1h")
    assert error_type(check(key.raw, model=GPT)) == "budget_exceeded"

    with committed():
        key_budget_reset(now=timezone.now() + datetime.timedelta(hours=2))

    assert check(key.raw, model=GPT).status_code == 200
