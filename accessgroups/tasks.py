"""Celery tasks of access groups: bulk assignment jobs started from the API or the admin."""
from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(
    name="accessgroups.run_bulk_job",
    acks_late=True,  # a worker lost mid-job leaves the message queued; the job resumes after its cursor
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def run_bulk_job(job_id: str) -> dict:
    """Run or resume one `BulkJob`; returns its status and summary."""
    from .bulk import bulk_job_run

    job = bulk_job_run(job_id)
    return {"job_id": str(job.pk), "status": job.status, "result": job.result, "error": job.error}
