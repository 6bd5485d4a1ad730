"""Key expiry: an expired key is refused by the check, listed as expired, and swept into the audit log once."""
from __future__ import annotations

import datetime
import time

import pytest
from django.core.cache import cache
from django.utils import timezone

from keys import services as key_services
from keys.cache import cache_key, get_snapshot
from keys.tasks import EXPIRY_ACTION, key_expiry_sweep
from orgs.models import AuditEntry
from tests.factories import AdminFactory, KeyFactory

pytestmark = pytest.mark.django_db


def expire(key, when: datetime.datetime):
    return key_services.key_update(actor=None, key=key, data={"expires": when})


def bearer(key) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key.raw}"}


def check(client, key):
    return client.post("/api/v1/authz/check", {"model": "openai/gpt-4o"}, content_type="application/json",
                       **bearer(key))


def test_expired_key_refused_on_the_check_while_its_snapshot_is_cached(client):
    key = KeyFactory(duration="1s")
    assert check(client, key).status_code == 200  # the snapshot is now cached, with its expiry
    time.sleep(max(0.0, (key.expires - timezone.now()).total_seconds()) + 0.05)
    assert cache.get(cache_key(key.token)) is not None  # no write happened: time alone expires it
    response = check(client, key)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "expired_key"


def test_expired_key_listed_as_expired(client):
    admin_key = KeyFactory(user=AdminFactory())
    expired, active = KeyFactory(), KeyFactory()
    expire(expired, timezone.now() - datetime.timedelta(minutes=5))
    listed = client.get("/key/list", {"status": "expired"}, **bearer(admin_key)).json()["keys"]
    assert listed == [expired.token]
    info = client.get("/key/info", {"key": expired.token}, **bearer(admin_key)).json()["info"]
    assert info["status"] == "expired"
    assert active.token not in listed


def test_key_expiry_sweep_audits_each_expired_key_once():
    now = timezone.now()
    soon, later, never = KeyFactory(), KeyFactory(), KeyFactory()
    expire(soon, now + datetime.timedelta(minutes=1))
    expire(later, now + datetime.timedelta(hours=1))
    assert key_expiry_sweep(now=now) == []
    assert key_expiry_sweep(now=now + datetime.timedelta(minutes=2)) == [soon.token]
    assert key_expiry_sweep(now=now + datetime.timedelta(minutes=3)) == []
    assert key_expiry_sweep(now=now + datetime.timedelta(hours=2)) == [later.token]
    entries = AuditEntry.objects.filter(action=EXPIRY_ACTION)
    assert sorted(t for e in entries for t in e.after["tokens"]) == sorted([soon.token, later.token])
    assert never.token not in {t for e in entries for t in e.after["tokens"]}


def test_key_expiry_sweep_drops_the_cached_snapshot(django_capture_on_commit_callbacks):
    key = KeyFactory()
    expire(key, timezone.now() + datetime.timedelta(minutes=1))
    get_snapshot(key.token)
    with django_capture_on_commit_callbacks(execute=True):
        key_expiry_sweep(now=timezone.now() + datetime.timedelta(minutes=2))
    assert cache.get(cache_key(key.token)) is None


def test_key_expiry_sweep_batches_share_one_high_water_mark():
    now = timezone.now()
    keys = [KeyFactory() for _ in range(3)]
    for key in keys:
        expire(key, now - datetime.timedelta(seconds=30))
    swept = key_expiry_sweep(now=now, batch_size=2)
    assert sorted(swept) == sorted(k.token for k in keys)
    assert AuditEntry.objects.filter(action=EXPIRY_ACTION).count() == 2
    assert key_expiry_sweep(now=now + datetime.timedelta(seconds=1)) == []
