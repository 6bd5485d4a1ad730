"""The bulk assignment jobs page: progress, and a resume for a stalled job."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from accessctl import policy
from accessctl.admin import (
    ReadOnlyAdmin,
    request_actor,
)
from accessctl.errors import ServiceError
from accessgroups.bulk_jobs import bulk_job_resume, job_group_target, job_stalled
from accessgroups.models import (
    BulkJob,
)


@admin.register(BulkJob)
class BulkJobAdmin(ReadOnlyAdmin):
    """Background bulk assignments (started here or by the API): their progress, then their result."""

    policy_actions = {"view": "access_group:read"}
    tenant_fields = {"org_field": "organization"}
    list_display = ("created_at", "operation", "target", "status", "progress", "matched", "changed",
                    "requested_by", "organization")
    list_select_related = ("organization",)
    list_filter = ("status", "operation", "target")
    search_fields = ("requested_by",)
    fields = ("job_id", "status", "progress", "stalled", "heartbeat_at", "operation", "target", "access_group_ids", "selection_summary",
              "dry_run", "organization", "requested_by", "matched", "processed", "changed", "result", "error",
              "created_at", "started_at", "finished_at")
    readonly_fields = fields
    show_full_result_count = False

    def policy_target(self, obj: BulkJob | None) -> policy.Target | None:
        if obj is None:
            return None
        return policy.Target(organization_id=str(obj.organization_id) if obj.organization_id else None,
                             is_global=obj.organization_id is None)

    @admin.display(description="progress")
    def progress(self, obj: BulkJob) -> str:
        share = 1.0 if obj.status == BulkJob.SUCCEEDED else (obj.processed / obj.matched if obj.matched else 0.0)
        percent = round(100 * share)
        return format_html('<progress max="100" value="{}"></progress> {} %', percent, percent)

    @admin.display(description="selection")
    def selection_summary(self, obj: BulkJob) -> str:
        ids = obj.selection.get("ids") or []
        rest = {k: v for k, v in obj.selection.items() if k != "ids"}
        return f"{len(ids)} ids" + (f", {rest}" if rest else "") if ids else str(rest)

    @admin.display(description="stalled", boolean=True)
    def stalled(self, obj: BulkJob) -> bool:
        return job_stalled(obj)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # The page reloads itself while the job runs, so its progress is seen moving; a stalled job stops
        # reloading and offers to resume it (to those who may start such a job).
        stalled = obj is not None and job_stalled(obj)
        running = obj is not None and obj.status in (BulkJob.QUEUED, BulkJob.RUNNING)
        context["refresh_seconds"] = 2 if running and not stalled else 0
        context["job_stalled"] = stalled
        context["can_resume"] = stalled and self._may_resume(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _may_resume(self, request: HttpRequest, job: BulkJob) -> bool:
        try:
            target = job_group_target(job)
        except ServiceError:
            return False
        return policy.can(request_actor(request), "access_group:assign", target).allowed

    def get_urls(self):
        resume = path(
            "<path:object_id>/resume/", self.admin_site.admin_view(self.resume_view), name="accessgroups_bulkjob_resume"
        )
        return [resume, *super().get_urls()]

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: queue a stalled job again (authorized as starting it); it continues after its last batch."""
        job = self.get_object(request, object_id)
        if job is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:accessgroups_bulkjob_change", args=[job.pk]))
        try:
            verdict = policy.can(request_actor(request), "access_group:assign", job_group_target(job))
            if not verdict:
                raise PermissionDenied(verdict.message)
            bulk_job_resume(actor=request.user, job=job)
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, "The job was queued again; it continues after its last completed batch.")
        return HttpResponseRedirect(reverse("admin:accessgroups_bulkjob_change", args=[job.pk]))
