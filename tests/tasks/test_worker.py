"""A real Celery worker, consuming from the machine's Redis, runs a bulk job queued by the API."""
from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_prerun
from django.db import OperationalError

from accessctl.celery import app
from accessgroups.models import BulkJob, KeyAccessGroup
from accessgroups.services import sync_all
from tests.factories import AccessGroupFactory, AdminFactory, KeyFactory, TeamFactory

# A database of its own on the shared Redis, and a queue of its own, so no other worker takes the job.
BROKER_URL = os.environ.get("ACCESSCTL_TEST_BROKER_URL", "redis://127.0.0.1:6379/14")


def _redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def worker_queue():
    """Point the Celery app at the broker (not eager) and start a worker thread on a private queue."""
    queue = f"accessctl-test-{uuid.uuid4().hex[:12]}"
    changed = {
        "broker_url": BROKER_URL,
        "task_always_eager": False,
        "task_routes": {"accessgroups.run_bulk_job": {"queue": queue}},
        "broker_connection_retry_on_startup": False,
    }
    saved = {name: app.conf[name] for name in changed}
    app.conf.update(changed)
    _forget_broker_state()
    try:
        with start_worker(app, queues=[queue], perform_ping_check=False, shutdown_timeout=20):
            yield queue
    finally:
        app.conf.update(saved)
        _forget_broker_state()
        import redis

        client = redis.Redis.from_url(BROKER_URL)
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def _forget_broker_state() -> None:
    # The app caches its router and broker pools; drop them (as Celery does after a fork) so they are
    # rebuilt from the configuration just changed.
    app.amqp.flush_routes()
    app.amqp.__dict__.pop("router", None)
    app.amqp._producer_pool = None
    app._pool = None


def wait_for(job_id: str, timeout: float = 30.0) -> BulkJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job = BulkJob.objects.get(pk=job_id)
        except OperationalError:  # SQLite's shared in-memory database is briefly locked by the worker
            job = None
        if job is not None and job.status in (BulkJob.SUCCEEDED, BulkJob.FAILED):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout}s")


@pytest.mark.django_db(transaction=True)
def test_bulk_job_runs_on_a_real_worker(client, worker_queue):
    # A missing broker is a failure, never a skip: `make test` starts Redis first.
    assert _redis_reachable(), f"no Redis broker at {BROKER_URL}: start it (make services)"
    ran_in: list[str] = []
    main_thread = threading.current_thread()

    def note_thread(sender=None, **kwargs):
        if sender is not None and sender.name == "accessgroups.run_bulk_job":
            ran_in.append("request" if threading.current_thread() is main_thread else "worker")

    task_prerun.connect(note_thread, weak=False)
    try:
        _run_a_job_through_the_worker(client, ran_in)
    finally:
        task_prerun.disconnect(note_thread)


def _run_a_job_through_the_worker(client, ran_in: list[str]) -> None:
    admin_key = KeyFactory(user=AdminFactory())
    team = TeamFactory()
    keys = [KeyFactory(team=team, user=None) for _ in range(4)]
    group = AccessGroupFactory()
    response = client.post(
        f"/api/v1/access-groups/{group.pk}/bulk-assign/",
        {"team_id": str(team.pk)},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {admin_key.raw}",
    )
    assert response.status_code == 202
    job = wait_for(response.json()["job_id"])
    assert ran_in == ["worker"]  # consumed from the broker by the worker, not run eagerly by the request
    assert (job.status, job.result["changed"], job.error) == ("succeeded", 4, "")
    assert KeyAccessGroup.objects.filter(access_group=group).count() == len(keys)
    assert sync_all(repair=False) == {"teams": [], "keys": [], "groups": []}
