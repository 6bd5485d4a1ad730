"""A bulk job whose worker died shows as stalled and can be resumed (API and admin), authorized like
starting it; one run holds a job at a time, and a long job runs in slices (issue 16, reproduction 4)."""
from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.utils import timezone

from accessctl.roles import OrgRole
from accessgroups import bulk_jobs
from accessgroups.bulk_jobs import bulk_job_run
from accessgroups.models import BulkJob, KeyAccessGroup
from accessgroups.services import sync_all
from orgs.models import AuditEntry
from tests.factories import (
    AccessGroupFactory,
    AdminFactory,
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    UserFactory,
)

from .test_bulk_api import IN_SYNC, bulk_url, job_url

pytestmark = pytest.mark.django_db

LONG_AGO = datetime.timedelta(hours=1)


def resume_url(job_id) -> str:
    return f"/api/v1/bulk-jobs/{job_id}/resume/"


@pytest.fixture
def call(client):
    def _call(method: str, url: str, key, body=None):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key.raw}"}
        if method == "post":
            return client.post(url, body or {}, content_type="application/json", **headers)
        return client.get(url, **headers)

    return _call


@pytest.fixture
def admin_key():
    return KeyFactory(user=AdminFactory())


@pytest.fixture
def team_keys():
    team = TeamFactory(organization=OrganizationFactory())
    return team, [KeyFactory(team=team, user=None) for _ in range(5)]


def _queued_job(call, admin_key, team) -> str:
    """A job queued by the API whose message never ran (its worker died before it started)."""
    group = AccessGroupFactory()
    return call("post", bulk_url(group.pk), admin_key, {"team_id": str(team.pk)}).json()["job_id"]


def _stall(job_id: str, **fields) -> None:
    BulkJob.objects.filter(pk=job_id).update(
        status=BulkJob.RUNNING, runner="dead-worker-task", heartbeat_at=timezone.now() - LONG_AGO, **fields
    )


def test_bulk_job_without_a_heartbeat_for_a_while_shows_stalled(call, admin_key, team_keys):
    job_id = _queued_job(call, admin_key, team_keys[0])
    assert call("get", job_url(job_id), admin_key).json()["stalled"] is False

    _stall(job_id)

    assert call("get", job_url(job_id), admin_key).json()["stalled"] is True


def test_bulk_job_queued_long_ago_and_never_started_shows_stalled(call, admin_key, team_keys):
    job_id = _queued_job(call, admin_key, team_keys[0])
    BulkJob.objects.filter(pk=job_id).update(created_at=timezone.now() - LONG_AGO)

    assert call("get", job_url(job_id), admin_key).json()["stalled"] is True


def test_bulk_job_resume_of_a_stalled_job_finishes_it_after_its_last_batch(
    call, admin_key, team_keys, django_capture_on_commit_callbacks, settings, monkeypatch
):
    settings.BULK_JOB_BATCH_SIZE = 2
    team, keys = team_keys
    job_id = _queued_job(call, admin_key, team)
    # The dead worker had committed the first batch (two keys) and its cursor, and died.
    with monkeypatch.context() as dying:
        dying.setattr(bulk_jobs, "_queue_run", lambda job_id, runner: None)
        bulk_job_run(job_id, runner="dead-worker-task", slice_seconds=0)
    job = BulkJob.objects.get(pk=job_id)
    assert (job.status, job.processed) == ("running", 2)
    _stall(job_id)

    with django_capture_on_commit_callbacks(execute=True):
        response = call("post", resume_url(job_id), admin_key)

    assert response.status_code == 202
    job = BulkJob.objects.get(pk=job_id)
    assert (job.status, job.processed, job.changed, job.result["changed"]) == ("succeeded", 5, 5, 5)
    assert KeyAccessGroup.objects.count() == len(keys)
    assert sync_all(repair=False) == IN_SYNC
    assert AuditEntry.objects.filter(action="bulk_job_resume", object_id=job_id).count() == 1


@pytest.mark.parametrize("state", ["running", "succeeded"])
def test_bulk_job_resume_of_a_job_that_is_not_stalled_answers_409(call, admin_key, team_keys, state):
    job_id = _queued_job(call, admin_key, team_keys[0])
    BulkJob.objects.filter(pk=job_id).update(status=state, heartbeat_at=timezone.now(), runner="live")

    response = call("post", resume_url(job_id), admin_key)

    assert response.status_code == 409
    assert BulkJob.objects.get(pk=job_id).runner == "live"


def test_bulk_job_resume_of_another_tenants_job_answers_404(call, team_keys):
    org = OrganizationFactory()
    group = AccessGroupFactory(organization=org)
    job = BulkJob.objects.create(operation="assign", target="keys", access_group_ids=[str(group.pk)],
                                 selection={"all": True}, organization=org, requested_by="someone")
    _stall(str(job.pk))
    outsider = UserFactory()
    OrganizationMembershipFactory(organization=OrganizationFactory(), user=outsider, user_role=OrgRole.ORG_ADMIN)

    response = call("post", resume_url(job.pk), KeyFactory(user=outsider))

    assert response.status_code == 404
    assert BulkJob.objects.get(pk=job.pk).runner == "dead-worker-task"


def test_bulk_job_resume_by_a_member_who_may_not_assign_its_group_answers_403(call):
    org = OrganizationFactory()
    member = UserFactory()
    OrganizationMembershipFactory(organization=org, user=member, user_role=OrgRole.INTERNAL_USER)
    group = AccessGroupFactory(organization=org)
    job = BulkJob.objects.create(operation="assign", target="keys", access_group_ids=[str(group.pk)],
                                 selection={"all": True}, organization=org, requested_by=member.user_id)
    _stall(str(job.pk))

    response = call("post", resume_url(job.pk), KeyFactory(user=member))

    assert response.status_code == 403
    assert BulkJob.objects.get(pk=job.pk).runner == "dead-worker-task"


def test_bulk_job_held_by_a_live_run_is_not_run_by_another_message(call, admin_key, team_keys):
    job_id = _queued_job(call, admin_key, team_keys[0])
    BulkJob.objects.filter(pk=job_id).update(status=BulkJob.RUNNING, runner="resumed", heartbeat_at=timezone.now())

    job = bulk_job_run(job_id, runner="old-message-redelivered")

    assert (job.status, job.runner, job.processed) == ("running", "resumed", 0)
    assert KeyAccessGroup.objects.count() == 0


def test_bulk_job_redelivered_to_the_same_task_takes_over_where_it_stopped(
    call, admin_key, team_keys, settings, monkeypatch
):
    settings.BULK_JOB_BATCH_SIZE = 2
    job_id = _queued_job(call, admin_key, team_keys[0])
    with monkeypatch.context() as dying:
        dying.setattr(bulk_jobs, "_queue_run", lambda job_id, runner: None)
        bulk_job_run(job_id, runner="task-1", slice_seconds=0)  # one batch, then its worker died
    assert BulkJob.objects.get(pk=job_id).processed == 2

    BulkJob.objects.filter(pk=job_id).update(runner="task-1")  # its hand-over never went out
    job = bulk_job_run(job_id, runner="task-1")

    assert (job.status, job.processed, job.changed) == ("succeeded", 5, 5)
    assert sync_all(repair=False) == IN_SYNC


def test_bulk_job_run_in_slices_hands_over_to_a_new_task_and_finishes(call, admin_key, team_keys, settings):
    settings.BULK_JOB_BATCH_SIZE = 2
    job_id = _queued_job(call, admin_key, team_keys[0])

    # A slice of no time: one batch per task; each hands over to the next (eagerly, here).
    job = bulk_job_run(job_id, runner="first", slice_seconds=0)

    job.refresh_from_db()
    assert (job.status, job.processed, job.changed) == ("succeeded", 5, 5)
    assert job.runner not in ("", "first")
    assert sync_all(repair=False) == IN_SYNC


# --- admin --------------------------------------------------------------------------------------


def _admin_client() -> Client:
    client = Client()
    client.force_login(AdminFactory(is_staff=True))
    return client


def test_bulk_job_admin_page_of_a_stalled_job_offers_a_resume(call, admin_key, team_keys):
    job_id = _queued_job(call, admin_key, team_keys[0])
    _stall(job_id)

    page = _admin_client().get(f"/admin/accessgroups/bulkjob/{job_id}/change/")

    assert page.status_code == 200
    assert f"/admin/accessgroups/bulkjob/{job_id}/resume/" in page.content.decode()
    assert b'http-equiv="refresh"' not in page.content


def test_bulk_job_admin_page_of_a_running_job_offers_no_resume(call, admin_key, team_keys):
    job_id = _queued_job(call, admin_key, team_keys[0])
    BulkJob.objects.filter(pk=job_id).update(status=BulkJob.RUNNING, heartbeat_at=timezone.now())

    page = _admin_client().get(f"/admin/accessgroups/bulkjob/{job_id}/change/")

    assert "/resume/" not in page.content.decode()


def test_bulk_job_admin_resume_finishes_the_stalled_job(call, admin_key, team_keys, django_capture_on_commit_callbacks):
    job_id = _queued_job(call, admin_key, team_keys[0])
    _stall(job_id)

    with django_capture_on_commit_callbacks(execute=True):
        response = _admin_client().post(f"/admin/accessgroups/bulkjob/{job_id}/resume/")

    assert response.status_code == 302
    assert BulkJob.objects.get(pk=job_id).status == "succeeded"
    assert KeyAccessGroup.objects.count() == 5
