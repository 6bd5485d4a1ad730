"""Celery beat runs `keys.mark_rotation_due` and a real worker tells the owner of a due key (audit log)."""
from __future__ import annotations

import datetime
import time
import uuid

import pytest
from celery.beat import EmbeddedService
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from accessctl.celery import app
from keys.models import VirtualKey
from orgs.models import AuditEntry
from tests.factories import KeyFactory, UserFactory
from tests.tasks.test_worker import BROKER_URL, _forget_broker_state, _redis_reachable


def test_beat_schedule_runs_the_rotation_task_every_minute():
    entry = settings.CELERY_BEAT_SCHEDULE["mark-keys-due-for-rotation"]
    assert entry["task"] == "keys.mark_rotation_due" and entry["schedule"] <= 60


@pytest.mark.django_db(transaction=True)
def test_beat_and_worker_mark_a_due_key_and_tell_its_owner(tmp_path):
    assert _redis_reachable(), f"no Redis broker at {BROKER_URL}: start it (make services)"
    owner = UserFactory()
    key = KeyFactory(user=owner, auto_rotate=True, rotation_interval="1d")
    VirtualKey.objects.filter(pk=key.pk).update(rotation_due_at=timezone.now() - datetime.timedelta(minutes=1))
    queue = f"accessctl-test-{uuid.uuid4().hex[:12]}"
    changed = {
        "broker_url": BROKER_URL,
        "task_always_eager": False,
        "broker_connection_retry_on_startup": False,
        "beat_schedule": {"rotation": {"task": "keys.mark_rotation_due", "schedule": 0.5,
                                        "options": {"queue": queue}}},
    }
    saved = {name: app.conf[name] for name in changed}
    app.conf.update(changed)
    _forget_broker_state()
    beat = EmbeddedService(app, thread=True, schedule_filename=str(tmp_path / "beat-schedule"), max_interval=0.5)
    try:
        with start_worker(app, queues=[queue], perform_ping_check=False, shutdown_timeout=20):
            beat.start()
            entry = _wait_for_entry(key.token)
    finally:
        beat.stop()
        app.conf.update(saved)
        _forget_broker_state()
        import redis

        redis.Redis.from_url(BROKER_URL).delete(queue, f"_kombu.binding.{queue}")
    assert entry.after["owner"] == owner.user_id and entry.actor_id == "system"
    assert VirtualKey.objects.get(pk=key.pk).rotation_due_notified_at is not None


def _wait_for_entry(token: str, timeout: float = 30.0) -> AuditEntry:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            entry = AuditEntry.objects.filter(action="key_rotation_due", object_id=token).first()
        except OperationalError:  # SQLite's shared database is briefly locked by the worker
            entry = None
        if entry is not None:
            return entry
        time.sleep(0.1)
    raise AssertionError("the beat task never marked the key due")
