"""Key rotation (SPEC §10): a grace period for the old secret, one winner among concurrent rotations,
idempotent retries, and the rotation schedule (auto_rotate / rotation_interval)."""
from __future__ import annotations

import datetime
import threading

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from keys import cache as snapshot_cache
from keys import services as key_services
from keys.crypto import hash_secret
from keys.models import KeyRotation, VirtualKey
from keys.services import KeyAlreadyRotated, mark_rotation_due
from orgs.models import AuditEntry
from tests.factories import AdminFactory, KeyFactory, OrganizationMembershipFactory, UserFactory
from tests.gateway.conftest import CHECK_URL, error_type, until_current
from tests.litellm.conftest import assert_error

from .conftest import MASTER_KEY

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"


def regenerate(api, key: str, *, idem: str | None = None, caller: str = MASTER_KEY, **body):
    headers = {"Idempotency-Key": idem} if idem else None
    return api.post("/key/regenerate", {"key": key, **body}, key=caller, headers=headers)


def rotations(token: str) -> int:
    return AuditEntry.objects.filter(action="key_regenerate", before__token=token).count()


# --- grace period -------------------------------------------------------------------------------


def test_regenerate_with_grace_period_keeps_both_secrets_working(api, check, committed):
    key = KeyFactory()
    with committed():
        response = regenerate(api, key.raw, grace_period="24h")
    assert response.status_code == 200, response.content
    body = response.json()
    until = datetime.datetime.fromisoformat(body["grace_period_until"])
    assert datetime.timedelta(hours=23, minutes=59) < until - timezone.now() <= datetime.timedelta(hours=24)

    assert check(key.raw, model=GPT).status_code == 200
    new = check(body["key"], model=GPT)
    assert new.status_code == 200
    assert check(key.raw, model=GPT).json()["key"]["token"] == body["token"]  # the same key answers


def test_regenerate_without_grace_period_refuses_the_old_secret(api, check, committed):
    key = KeyFactory()
    assert check(key.raw, model=GPT).status_code == 200  # cached before the rotation
    with committed():
        body = regenerate(api, key.raw).json()
    assert body["grace_period_until"] is None
    assert check(key.raw, model=GPT).status_code == 401
    assert check(body["key"], model=GPT).status_code == 200


def test_old_secret_warm_check_runs_no_query(api, check, committed, django_assert_num_queries):
    key = KeyFactory()
    with committed():
        regenerate(api, key.raw, grace_period="1h")
    assert check(key.raw, model=GPT).status_code == 200  # cold: loads the alias's snapshot
    with django_assert_num_queries(0):
        assert check(key.raw, model=GPT).status_code == 200


def test_old_secret_is_refused_once_the_grace_period_ends_even_when_cached(api, check, committed, monkeypatch):
    key = KeyFactory()
    with committed():
        regenerate(api, key.raw, grace_period="1h")
    assert check(key.raw, model=GPT).status_code == 200  # cached now
    later = timezone.now() + datetime.timedelta(hours=1, seconds=1)
    monkeypatch.setattr("keys.api.gateway.timezone.now", lambda: later)
    refused = check(key.raw, model=GPT)
    assert (refused.status_code, error_type(refused)) == (401, "auth_error")


def test_old_secret_authenticates_the_management_api_during_the_grace_period(api, committed):
    owner = UserFactory()
    key = KeyFactory(user=owner)
    with committed():
        regenerate(api, key.raw, grace_period="1h")
    assert api.get("/key/info", key=key.raw).status_code == 200


def test_second_rotation_drops_the_first_old_secret(api, check, committed):
    key = KeyFactory()
    with committed():
        first = regenerate(api, key.raw, grace_period="24h").json()
    assert check(key.raw, model=GPT).status_code == 200
    with committed():
        second = regenerate(api, first["key"], grace_period="24h").json()
    assert check(key.raw, model=GPT).status_code == 401  # at most two secrets are live
    assert check(first["key"], model=GPT).status_code == 200
    assert check(second["key"], model=GPT).status_code == 200


@pytest.mark.parametrize("grace", ["8d", "169h", "2w", "1mo", "soon", "-1h", "99999999999999999999d"])
def test_grace_period_over_the_maximum_or_malformed_is_400_and_changes_nothing(api, grace):
    key = KeyFactory()
    response = regenerate(api, key.raw, grace_period=grace)
    assert_error(response, 400, "bad_request_error", param="grace_period")
    key.refresh_from_db()
    assert (key.token, key.previous_token, rotations(key.token)) == (hash_secret(key.raw), None, 0)


def test_grace_period_at_the_maximum_is_accepted(api):
    key = KeyFactory()
    assert regenerate(api, key.raw, grace_period="7d").status_code == 200


def test_rest_regenerate_takes_a_grace_period(client, check, committed):
    key = KeyFactory()
    with committed():
        response = client.post(f"/api/v1/keys/{key.token}/regenerate/", {"grace_period": "24h"},
                               content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {MASTER_KEY}")
    assert response.status_code == 200, response.content
    assert response.json()["grace_period_until"] is not None
    assert check(key.raw, model=GPT).status_code == 200
    assert check(response.json()["key"], model=GPT).status_code == 200


def test_usage_report_for_the_old_secret_counts_during_the_grace_period(api, committed):
    key = KeyFactory()
    with committed():
        regenerate(api, key.raw, grace_period="1h")
    result = key_services.usage_report(actor=None, key=key.raw, model=GPT, spend=0.5)
    assert not result.duplicate
    key.refresh_from_db()  # applied at once in eager mode
    assert key.spend == 0.5


# --- blocking or deleting stops both secrets at once (every deployment of the cache) ---------------


@pytest.fixture(params=["locmem", "redis-feed", "file-feed"])
def deployment(request, monkeypatch) -> str:
    if request.param != "locmem":
        request.getfixturevalue("redis_cache" if request.param == "redis-feed" else "file_cache")
        monkeypatch.setattr(snapshot_cache, "_forget", lambda names: None)  # the writer is another process
    return request.param


def test_block_during_grace_period_refuses_both_secrets(api, check, committed, deployment):
    key = KeyFactory()
    old = key.raw
    with committed():
        new = regenerate(api, old, grace_period="24h").json()["key"]
    for raw in (old, new, old, new):
        assert check(raw, model=GPT).status_code == 200
        if deployment != "locmem":
            until_current()
    with committed():
        api.post("/key/block", {"key": new})
    for raw in (old, new):
        refused = check(raw, model=GPT)
        assert (refused.status_code, error_type(refused)) == (403, "key_blocked")


def test_delete_during_grace_period_refuses_both_secrets(api, check, committed, deployment):
    key = KeyFactory()
    old = key.raw
    with committed():
        new = regenerate(api, old, grace_period="24h").json()["key"]
    for raw in (old, new, old, new):
        assert check(raw, model=GPT).status_code == 200
        if deployment != "locmem":
            until_current()
    with committed():
        assert api.post("/key/delete", {"keys": [new]}).status_code == 200
    for raw in (old, new):
        assert check(raw, model=GPT).status_code == 401


# --- one winner ---------------------------------------------------------------------------------


def test_sequential_rotations_from_one_secret_rotate_once(api, check, committed):
    """The SQLite equivalent of the race: 20 rotations naming the same old secret, one after another."""
    key = KeyFactory()
    old = key.raw
    with committed():
        answers = [regenerate(api, old) for _ in range(20)]
    ok = [a for a in answers if a.status_code == 200]
    assert len(ok) == 1
    assert all(a.status_code == 404 for a in answers if a.status_code != 200)
    assert check(ok[0].json()["key"], model=GPT).status_code == 200
    assert check(old, model=GPT).status_code == 401
    assert rotations(hash_secret(old)) == 1


def test_rotation_that_lost_the_race_is_409_and_changes_nothing():
    """The loser read the key before the winner committed: under the row lock its secret is stale."""
    key = KeyFactory()
    stale = VirtualKey.objects.get(pk=key.pk)
    winner = key_services.key_regenerate(actor=None, key=key, expected_token=key.token)
    with pytest.raises(KeyAlreadyRotated) as refused:
        key_services.key_regenerate(actor=None, key=stale, expected_token=stale.token)
    assert refused.value.status == 409 and refused.value.type == "key_already_rotated"
    assert VirtualKey.objects.get(pk=key.pk).token == hash_secret(winner.raw)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_rotations_from_one_secret_one_wins(settings):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent row locks need PostgreSQL; the sequential test covers SQLite")
    settings.ACCESSCTL_MASTER_KEY = MASTER_KEY
    key = KeyFactory()
    old = key.raw
    barrier = threading.Barrier(20)
    answers: list = []
    lock = threading.Lock()

    def rotate() -> None:
        try:
            client = Client()
            barrier.wait()
            response = client.post("/key/regenerate", {"key": old}, content_type="application/json",
                                   HTTP_AUTHORIZATION=f"Bearer {MASTER_KEY}")
            with lock:
                answers.append(response)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=rotate) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 404, 409}, statuses
    winner = next(a for a in answers if a.status_code == 200).json()["key"]
    key.refresh_from_db()
    assert key.token == hash_secret(winner)
    assert rotations(hash_secret(old)) == 1
    checker = Client()
    assert checker.post(CHECK_URL, {"model": GPT}, content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {winner}").status_code == 200
    assert checker.post(CHECK_URL, {"model": GPT}, content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {old}").status_code == 401


# --- idempotency --------------------------------------------------------------------------------


def test_retry_with_the_same_idempotency_key_replays_without_rotating(api, check, committed):
    key = KeyFactory()
    old = key.raw
    with committed():
        first = regenerate(api, old, idem="rotate-1", grace_period="1h")
        retry = regenerate(api, old, idem="rotate-1", grace_period="1h")
    assert first.status_code == retry.status_code == 200
    assert first.json()["idempotent_replay"] is False and first.json()["key"].startswith("sk-")
    body = retry.json()
    assert body["key"] is None  # a secret is never shown twice
    assert body["idempotent_replay"] is True and "never shown again" in body["message"]
    assert retry["Idempotent-Replayed"] == "true"
    assert body["token"] == first.json()["token"] == VirtualKey.objects.get(pk=key.pk).token
    assert body["grace_period_until"] == first.json()["grace_period_until"]
    assert rotations(hash_secret(old)) == 1 and KeyRotation.objects.count() == 1
    assert check(first.json()["key"], model=GPT).status_code == 200


def test_retry_through_rest_with_the_same_idempotency_key_replays(client):
    key = KeyFactory()
    url = f"/api/v1/keys/{key.token}/regenerate/"
    headers = {"HTTP_AUTHORIZATION": f"Bearer {MASTER_KEY}", "HTTP_IDEMPOTENCY_KEY": "r-9"}
    first = client.post(url, content_type="application/json", **headers)
    retry = client.post(url, content_type="application/json", **headers)
    assert (first.status_code, retry.status_code) == (200, 200), retry.content
    assert first.json()["key"] and retry.json()["key"] is None and retry.json()["idempotent_replay"] is True
    assert rotations(key.token) == 1


def test_a_new_idempotency_key_with_the_old_secret_is_refused(api):
    key = KeyFactory()
    assert regenerate(api, key.raw, idem="a").status_code == 200
    assert_error(regenerate(api, key.raw, idem="b"), 404)
    assert rotations(key.token) == 1


def test_idempotent_replay_is_not_shown_to_another_tenant(api, org, other_org, org_admin):
    owner = UserFactory()
    OrganizationMembershipFactory(organization=other_org, user=owner, user_role="internal_user")
    key = KeyFactory(user=owner, organization=other_org)
    assert regenerate(api, key.raw, idem="shared").status_code == 200
    outsider = KeyFactory(user=org_admin, organization=org).raw
    assert_error(regenerate(api, key.raw, idem="shared", caller=outsider), 404)


def test_blank_idempotency_key_is_400(api):
    key = KeyFactory()
    assert_error(regenerate(api, key.raw, idem=" "), 400, param="Idempotency-Key")
    assert rotations(key.token) == 0


# --- the rotation schedule ----------------------------------------------------------------------


def test_generate_with_auto_rotate_sets_the_due_date(api):
    body = api.post("/key/generate", {"auto_rotate": True, "rotation_interval": "30d"}).json()
    key = VirtualKey.objects.get(token=body["token"])
    assert body["auto_rotate"] is True and body["rotation_interval"] == "30d"
    assert key.rotation_due_at == key.created_at + datetime.timedelta(days=30)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"auto_rotate": True}, id="no-interval"),
        pytest.param({"auto_rotate": True, "rotation_interval": "often"}, id="malformed-interval"),
    ],
)
def test_generate_with_a_bad_rotation_schedule_is_400(api, body):
    before = VirtualKey.objects.count()
    assert_error(api.post("/key/generate", body), 400, param="rotation_interval")
    assert VirtualKey.objects.count() == before


def test_rotation_resets_the_due_date():
    key = KeyFactory(auto_rotate=True, rotation_interval="7d")
    result = key_services.key_regenerate(actor=None, key=key)
    assert result.key.rotation_due_at == result.key.last_rotated_at + datetime.timedelta(days=7)


def test_due_keys_are_audited_once_for_their_owner():
    owner = UserFactory()
    due = KeyFactory(user=owner, auto_rotate=True, rotation_interval="1d")
    KeyFactory(user=owner, auto_rotate=True, rotation_interval="30d")
    KeyFactory(user=owner)
    later = timezone.now() + datetime.timedelta(days=2)

    assert mark_rotation_due(now=later) == [due.token]
    assert mark_rotation_due(now=later) == []  # told once per due date
    entry = AuditEntry.objects.get(action="key_rotation_due")
    assert entry.object_id == due.token and entry.after["owner"] == owner.user_id
    assert due.raw not in str(entry.after)


def test_update_turns_auto_rotate_on_through_the_litellm_route(api):
    key = KeyFactory()
    response = api.post("/key/update", {"key": key.token, "auto_rotate": True, "rotation_interval": "12h"})
    assert response.status_code == 200, response.content
    key.refresh_from_db()
    assert key.auto_rotate and key.rotation_due_at is not None


def test_command_lists_the_keys_due_for_rotation(capsys):
    due = KeyFactory(key_alias="old-one", auto_rotate=True, rotation_interval="1d")
    KeyFactory(key_alias="fresh", auto_rotate=True, rotation_interval="30d")
    VirtualKey.objects.filter(pk=due.pk).update(rotation_due_at=timezone.now() - datetime.timedelta(days=1))
    call_command("keys_due_for_rotation")
    out = capsys.readouterr().out
    assert "old-one" in out and "fresh" not in out and "1 key(s) due for rotation." in out
    assert due.raw not in out


def test_admin_lists_the_keys_due_for_rotation(client):
    client.force_login(AdminFactory())
    due = KeyFactory(key_alias="due-key", auto_rotate=True, rotation_interval="1d")
    KeyFactory(key_alias="not-due", auto_rotate=True, rotation_interval="30d")
    VirtualKey.objects.filter(pk=due.pk).update(rotation_due_at=timezone.now() - datetime.timedelta(hours=1))
    page = client.get("/admin/keys/virtualkey/?rotation=due").content.decode()
    assert "due-key" in page and "not-due" not in page


def test_admin_regenerate_with_a_grace_period(client, check, committed):
    client.force_login(AdminFactory())
    key = KeyFactory()
    with committed():
        response = client.post(f"/admin/keys/virtualkey/{key.pk}/regenerate/",
                               {"grace_period": "24h", "token": key.token})
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.previous_token == hash_secret(key.raw) and key.in_grace_period
    assert check(key.raw, model=GPT).status_code == 200
