"""Celery tasks of access groups: bulk assignment jobs started from the API or the admin."""
from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from . import bulk_jobs  # which enqueues this module's task from inside its functions (a cycle otherwise)


@shared_task(
    bind=True,
    name="accessgroups.run_bulk_job",
    # Acknowledged only once it returns, and put back on the queue if its worker process dies: the job
    # then resumes after its last committed batch (see accessgroups.bulk_jobs.bulk_job_run).
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def run_bulk_job(self, job_id: str) -> dict:
    """Run or resume one `BulkJob` for at most one slice; returns its status and summary."""
    # Eagerly (no broker) the run is in-process: no broker redelivers it, so it runs to the end.
    slice_seconds = None if self.request.is_eager else settings.BULK_JOB_SLICE_SECONDS
    job = bulk_jobs.bulk_job_run(job_id, runner=self.request.id, slice_seconds=slice_seconds)
    return {"job_id": str(job.pk), "status": job.status, "result": job.result, "error": job.error}
