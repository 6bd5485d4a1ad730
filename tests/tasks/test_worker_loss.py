"""Bulk jobs survive worker loss (issue 16, reproduction 4), with real Celery workers on the real Redis.

A worker runs as a process of its own (so it can be killed with SIGKILL) on the test database, which
must therefore be PostgreSQL. Killing the pool process used to leave the job "running" for ever (its
message was acknowledged); killing the whole worker left the message invisible for Redis's default
hour. Now the job completes, and the access lists stay consistent.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.db import connection

from accessctl.celery import app
from accessgroups.bulk import Selection
from accessgroups.bulk_jobs import bulk_assign_start
from accessgroups.models import BulkJob, KeyAccessGroup
from accessgroups.services import sync_all
from keys import crypto
from keys.models import VirtualKey
from tests.factories import AccessGroupFactory, AdminFactory, KeyFactory, OrganizationFactory, TeamFactory

from .test_worker import BROKER_URL, _forget_broker_state, _redis_reachable

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
KEYS = 1500
BATCH = 25
VISIBILITY_TIMEOUT = 4
STALL_SECONDS = 3
IN_SYNC = {"teams": [], "keys": [], "groups": []}


@pytest.fixture
def queue(settings):
    if connection.vendor != "postgresql":
        pytest.skip("the worker is a process of its own: it needs the PostgreSQL test database")
    assert _redis_reachable(), f"no Redis broker at {BROKER_URL}: start it (make services)"
    name = f"accessctl-loss-{uuid.uuid4().hex[:12]}"
    changed = {"broker_url": BROKER_URL, "task_always_eager": False,
               "task_routes": {"accessgroups.run_bulk_job": {"queue": name}}}
    saved = {key: app.conf[key] for key in changed}
    app.conf.update(changed)
    _forget_broker_state()
    settings.BULK_JOB_STALL_SECONDS = STALL_SECONDS
    workers: list[subprocess.Popen] = []
    try:
        yield name, workers
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        app.conf.update(saved)
        _forget_broker_state()
        client = redis.Redis.from_url(BROKER_URL)
        client.delete(name, f"_kombu.binding.{name}")


def start_worker(queue_name: str, workers: list[subprocess.Popen]) -> subprocess.Popen:
    """`celery worker` as its own process group, one pool process, on the test database."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}",
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": queue_name,  # a job's next slice is queued where the worker listens
        "CELERY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT),
        "BULK_JOB_BATCH_SIZE": str(BATCH),
        "BULK_JOB_SLICE_SECONDS": "2",  # below the visibility timeout, as in production
        "BULK_JOB_STALL_SECONDS": str(STALL_SECONDS),
    }
    log_path = os.environ.get("ACCESSCTL_WORKER_LOG", os.devnull)  # set it to see the worker's log
    with open(log_path, "a") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "accessctl", "worker", "-Q", queue_name, "-c", "1", "-P",
             "prefork", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"{uuid.uuid4().hex[:8]}@%h", "--loglevel", os.environ.get("ACCESSCTL_WORKER_LOGLEVEL", "WARNING")],
            cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log,
        )
    workers.append(worker)
    return worker


def pool_processes(worker: subprocess.Popen) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == worker.pid:
                children.append(int(entry.name))
    return children


def kill_whole_worker(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def a_big_job() -> BulkJob:
    team = TeamFactory(organization=OrganizationFactory())
    KeyFactory(team=team, user=None)  # one made the usual way, with its signals
    VirtualKey.objects.bulk_create(
        VirtualKey(token=crypto.hash_secret(f"sk-loss-{uuid.uuid4().hex}"), key_name="sk-...loss", team=team,
                   organization=team.organization, key_alias=None)
        for _ in range(KEYS - 1)
    )
    group = AccessGroupFactory()
    return bulk_assign_start(actor=AdminFactory(), target="keys", group_refs=[str(group.pk)],
                             selection=Selection(team_id=str(team.pk)))


def wait_for(job: BulkJob, predicate, timeout: float, what: str) -> BulkJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if predicate(job):
            return job
        if job.status == BulkJob.FAILED:
            raise AssertionError(f"the job failed: {job.error}")
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s: {job.status} {job.processed}/{job.matched}")


def mid_job(job: BulkJob) -> bool:
    return job.status == BulkJob.RUNNING and 4 * BATCH <= job.processed < job.matched - 4 * BATCH


def finished(job: BulkJob) -> bool:
    return job.status == BulkJob.SUCCEEDED


def assert_completed_and_consistent(job: BulkJob) -> None:
    assert (job.status, job.processed, job.changed, job.result["changed"]) == ("succeeded", KEYS, KEYS, KEYS)
    assert KeyAccessGroup.objects.filter(access_group_id=job.access_group_ids[0]).count() == KEYS
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_job_completes_after_its_pool_process_is_killed(queue):
    name, workers = queue
    worker = start_worker(name, workers)
    job = a_big_job()
    wait_for(job, mid_job, 60, "the job did not get under way")

    for pid in pool_processes(worker):
        os.kill(pid, signal.SIGKILL)

    # The message went back on the queue; the worker's new pool process resumes after the last batch.
    assert_completed_and_consistent(wait_for(job, finished, 180, "the job did not complete"))


def test_bulk_job_completes_after_the_whole_worker_is_killed_and_another_starts(queue):
    name, workers = queue
    first = start_worker(name, workers)
    job = a_big_job()
    wait_for(job, mid_job, 60, "the job did not get under way")

    kill_whole_worker(first)
    progress = job.processed
    start_worker(name, workers)

    # Redis gives the unacknowledged message to the new worker once the visibility timeout has passed.
    job = wait_for(job, finished, 180, "the job did not complete")
    assert progress < KEYS
    assert_completed_and_consistent(job)


def test_bulk_job_stalled_by_a_killed_worker_is_resumed_through_the_api(queue, client):
    name, workers = queue
    admin_key = KeyFactory(user=AdminFactory())
    headers = {"HTTP_AUTHORIZATION": f"Bearer {admin_key.raw}"}
    first = start_worker(name, workers)
    job = a_big_job()
    wait_for(job, mid_job, 60, "the job did not get under way")
    kill_whole_worker(first)

    url = f"/api/v1/bulk-jobs/{job.pk}/"
    deadline = time.monotonic() + 30
    while not client.get(url, **headers).json()["stalled"]:
        assert time.monotonic() < deadline, "the job never showed as stalled"
        time.sleep(0.2)
    response = client.post(f"{url}resume/", **headers)
    assert response.status_code == 202
    start_worker(name, workers)

    job = wait_for(job, finished, 90, "the resumed job did not complete")
    assert_completed_and_consistent(job)
    assert client.get(url, **headers).json()["stalled"] is False
