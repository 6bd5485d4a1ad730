"""Bulk assignment as a background job (Celery): start, run in slices that resume after their cursor, notice
a stalled job and resume it. Each slice runs `accessgroups.bulk.bulk_assign`."""
from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from accessctl.errors import Conflict, NotFound, ServiceError
from accessctl.policy import Target, access_group_target
from orgs.audit import record
from orgs.models import Organization, User

from .bulk import (
    ASSIGN,
    UNASSIGN,
    JobTakenOver,
    _ids,
    bulk_assign,
)
from .bulk_plan import (
    Selection,
    _uuid,
    plan,
)
from .models import AccessGroup, BulkJob


def bulk_assign_start(
    *,
    actor: User | None,
    target: str,
    group_refs: Iterable[str],
    selection: Selection,
    unassign: bool = False,
    dry_run: bool = False,
    organization: Organization | None = None,
) -> BulkJob:
    """Validate now (400 naming the field), then queue the run as a Celery task once this commits.

    The entry point for the REST API and the admin's bulk actions. Returns the job to poll.
    """
    group_refs = list(group_refs)
    p = plan(target=target, group_refs=group_refs, selection=selection, organization=organization)
    with transaction.atomic():
        job = BulkJob.objects.create(
            operation=UNASSIGN if unassign else ASSIGN,
            target=target,
            access_group_ids=_ids(g.pk for g in p.groups),
            selection=selection.as_dict(),
            dry_run=dry_run,
            organization_id=p.organization_id,
            requested_by=actor.user_id if actor is not None else "system",
            matched=len(p.positions) if p.positions is not None else 0,
        )
        from .tasks import run_bulk_job

        transaction.on_commit(lambda: run_bulk_job.delay(str(job.pk)))
    return job


def job_stalled(job: BulkJob, now: datetime.datetime | None = None) -> bool:
    """Queued or running, and no batch (nor a start or a resume) for `BULK_JOB_STALL_SECONDS`: its worker
    is most likely gone. A stalled job may be resumed."""
    if job.status not in (BulkJob.QUEUED, BulkJob.RUNNING):
        return False
    now = now or timezone.now()
    last = job.heartbeat_at or job.created_at
    return (now - last).total_seconds() > settings.BULK_JOB_STALL_SECONDS


def job_group_target(job: BulkJob) -> Target:
    """What resuming a job is judged on: the same as starting it (`access_group:assign` on its group)."""
    group = AccessGroup.objects.filter(pk__in=job.access_group_ids).first()
    if group is None:
        raise Conflict("The job's access group no longer exists; start a new job.", param="job_id")
    return access_group_target(group)


def _queue_run(job_id: str, runner: str) -> None:
    from .tasks import run_bulk_job

    run_bulk_job.apply_async((job_id,), task_id=runner)


def bulk_job_resume(*, actor: User | None, job: BulkJob) -> BulkJob:
    """Queue a stalled job again; it continues after its last committed batch. 409 unless it is stalled.

    The new run holds the job from now on: the old message, should the broker still redeliver it,
    finds the job held by another live run and stops (and so does the old run, were it only slow).
    The caller has been authorized as for starting the job (`access_group:assign` on its group).
    """
    with transaction.atomic():
        job = BulkJob.objects.select_for_update().get(pk=job.pk)
        if not job_stalled(job):
            state = "finished" if job.status in (BulkJob.SUCCEEDED, BulkJob.FAILED) else "making progress"
            raise Conflict(f"The job is {state}; only a stalled job can be resumed.", param="job_id")
        runner = uuid.uuid4().hex
        before = {"runner": job.runner, "heartbeat_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None}
        BulkJob.objects.filter(pk=job.pk).update(runner=runner, heartbeat_at=timezone.now())
        record(
            actor=actor,
            action="bulk_job_resume",
            object_type="bulk_job",
            object_id=job.pk,
            organization_id=job.organization_id,
            before=before,
            after={"runner": runner, "processed": job.processed, "cursor": job.cursor},
        )
        transaction.on_commit(lambda: _queue_run(str(job.pk), runner))
    job.refresh_from_db()
    return job


def bulk_job_run(job_id: Any, *, runner: str | None = None, slice_seconds: float | None = None) -> BulkJob:
    """Run (or resume) a queued job; records the summary, or the reason it failed. Safe to call twice.

    `runner` is the Celery task id: the job is held by one run at a time (`BulkJob.runner`), taken over
    only by a redelivery of the same message (its worker died), by a resume, or once its heartbeat is
    stale. With `slice_seconds` the run stops after that long and hands the job to a new task, so no
    message runs longer than the broker's visibility timeout. Without `runner` (a command, a test) it
    runs here, under the same rules.
    """
    runner = runner or f"direct-{uuid.uuid4().hex}"
    job = BulkJob.objects.filter(pk=_uuid(job_id)).first()
    if job is None:
        raise NotFound(f"Bulk job {job_id} not found", param="job_id")
    if job.status in (BulkJob.SUCCEEDED, BulkJob.FAILED):
        return job
    now = timezone.now()
    stale_before = now - datetime.timedelta(seconds=settings.BULK_JOB_STALL_SECONDS)
    claimed = (
        BulkJob.objects.filter(pk=job.pk, status__in=(BulkJob.QUEUED, BulkJob.RUNNING))
        .filter(Q(runner__in=("", runner)) | Q(heartbeat_at__lt=stale_before))
        .update(status=BulkJob.RUNNING, runner=runner, heartbeat_at=now, started_at=job.started_at or now)
    )
    job.refresh_from_db()
    if not claimed:
        return job  # finished meanwhile, or another live run holds it
    actor = User.objects.filter(user_id=job.requested_by).first()
    organization = Organization.objects.filter(pk=job.organization_id).first() if job.organization_id else None
    try:
        result = bulk_assign(
            actor=actor,
            target=job.target,
            group_refs=job.access_group_ids,
            selection=Selection.from_dict(job.selection),
            unassign=job.operation == UNASSIGN,
            dry_run=job.dry_run,
            organization=organization,
            job=job,
            resume_after=job.cursor,
            batch_size=settings.BULK_JOB_BATCH_SIZE,
            deadline=None if slice_seconds is None else time.monotonic() + slice_seconds,
        )
    except JobTakenOver:
        job.refresh_from_db()
        return job
    except ServiceError as exc:
        BulkJob.objects.filter(pk=job.pk, runner=runner).update(
            status=BulkJob.FAILED, error=exc.message, finished_at=timezone.now()
        )
    except OperationalError:
        raise  # the database went away: the task retries, and the job resumes after its cursor
    except Exception as exc:
        # Anything else will fail again: say so on the job instead of leaving it "running" forever.
        BulkJob.objects.filter(pk=job.pk, runner=runner).update(
            status=BulkJob.FAILED, error=f"Internal error ({type(exc).__name__}); see the worker's log.",
            finished_at=timezone.now(),
        )
        raise
    else:
        if not result.finished:
            # The slice is over: hand the job to a new message, which continues after the cursor.
            successor = uuid.uuid4().hex
            if BulkJob.objects.filter(pk=job.pk, runner=runner).update(runner=successor,
                                                                          heartbeat_at=timezone.now()):
                _queue_run(str(job.pk), successor)
            job.refresh_from_db()
            return job
        job.refresh_from_db(fields=["changed"])
        # A resumed job's counters span every attempt; this attempt's result only covers what was left.
        summary = {**result.as_dict(), "changed": job.changed, "unchanged": result.matched - job.changed}
        BulkJob.objects.filter(pk=job.pk, runner=runner).update(
            status=BulkJob.SUCCEEDED, result=summary, processed=result.matched, finished_at=timezone.now()
        )
    job.refresh_from_db()
    return job
