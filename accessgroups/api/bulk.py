"""REST API for bulk assignment: start a background job on an access group, then poll it."""
from __future__ import annotations

import uuid

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import NotFound
from accessctl.ids import IdField, as_id
from accessctl.policy import access_group_target
from accessctl.tenancy import TenantAPIView
from accessgroups.bulk import KEYS, Selection
from accessgroups.bulk_jobs import bulk_assign_start, bulk_job_resume, job_group_target, job_stalled
from accessgroups.bulk_sql import TEAMS
from accessgroups.models import AccessGroup, BulkJob

MAX_IDS = 100_000


class BulkAssignInput(serializers.Serializer):
    target = serializers.ChoiceField(choices=[KEYS, TEAMS], default=KEYS, help_text="Assign to keys or teams.")
    ids = serializers.ListField(
        child=serializers.CharField(max_length=255), required=False, default=list, max_length=MAX_IDS,
        help_text="Key ids or tokens, or team ids.",
    )
    team_id = IdField(required=False, help_text="Keys of this team.")
    organization_id = IdField(required=False, help_text="Keys or teams of this organization.")
    alias_prefix = serializers.CharField(required=False, max_length=255, help_text="Alias starts with this.")
    all = serializers.BooleanField(default=False, help_text="Every key or team in reach (with the other filters).")
    unassign = serializers.BooleanField(default=False, help_text="Remove the group instead of assigning it.")
    dry_run = serializers.BooleanField(default=False, help_text="Count what would change; write nothing.")


class BulkJobOutput(serializers.ModelSerializer):
    organization_id = IdField(allow_null=True, read_only=True)
    progress = serializers.SerializerMethodField(help_text="Share of the matched keys or teams handled, 0 to 1.")
    stalled = serializers.SerializerMethodField(
        help_text="Queued or running with no progress for a while (its worker is likely gone): resume it."
    )

    class Meta:
        model = BulkJob
        fields = [
            "job_id", "status", "operation", "target", "access_group_ids", "selection", "dry_run",
            "organization_id", "requested_by", "matched", "processed", "changed", "progress", "stalled",
            "heartbeat_at", "result", "error", "created_at", "started_at", "finished_at",
        ]
        read_only_fields = fields

    def get_stalled(self, job: BulkJob) -> bool:
        return job_stalled(job)

    def get_progress(self, job: BulkJob) -> float:
        if job.status == BulkJob.SUCCEEDED:
            return 1.0
        return round(job.processed / job.matched, 4) if job.matched else 0.0


def _job_url(job: BulkJob) -> str:
    return reverse("bulk-job-detail", kwargs={"job_id": job.pk})


class AccessGroupBulkAssignView(TenantAPIView):
    """Assign (or remove) one access group to many keys or teams, in the background."""

    @extend_schema(
        request=BulkAssignInput,
        responses={202: BulkJobOutput, 400: OpenApiResponse(description="Bad input, naming the field."),
                   404: OpenApiResponse(description="No such access group in your tenant.")},
        summary="Start a bulk assignment job",
    )
    def post(self, request, access_group_id: str) -> Response:
        group = self._group(access_group_id)
        self.check("access_group:assign", access_group_target(group))
        data = BulkAssignInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        selection = Selection(
            ids=tuple(values["ids"]),
            team_id=str(values["team_id"]) if values.get("team_id") else None,
            organization_id=str(values["organization_id"]) if values.get("organization_id") else None,
            alias_prefix=values.get("alias_prefix") or None,
            all=values["all"],
        )
        job = bulk_assign_start(
            actor=request.user if getattr(request.user, "pk", None) else None,
            target=values["target"],
            group_refs=[str(group.pk)],
            selection=selection,
            unassign=values["unassign"],
            dry_run=values["dry_run"],
            organization=request.tenant.organization or group.organization,
        )
        job.refresh_from_db()  # an eager (broker-less) run has already finished
        return Response(BulkJobOutput(job).data, status=status.HTTP_202_ACCEPTED, headers={"Location": _job_url(job)})

    def _group(self, access_group_id: str) -> AccessGroup:
        """The group if the caller's tenant can see it; anything else is the same 404."""
        pk = as_id(access_group_id)
        tenant = self.request.tenant
        visible = tenant.scope(AccessGroup.objects.all(), org_field="organization")
        group = None
        if pk is not None:
            group = (visible | AccessGroup.objects.filter(organization__isnull=True)).filter(pk=pk).first()
        if group is None:
            raise NotFound(f"Access group '{access_group_id}' not found", param="access_group_id")
        return group


def _visible_job(request, job_id: str) -> BulkJob:
    """The job if the caller's tenant can see it; anything else is the same 404."""
    try:
        pk = uuid.UUID(job_id)
    except ValueError:
        pk = None
    jobs = request.tenant.scope(BulkJob.objects.all(), org_field="organization", owner_field="requested_by")
    job = jobs.filter(pk=pk).first() if pk is not None else None
    if job is None or not policy.can(request.actor, "bulk_job:read", policy.bulk_job_target(job)):
        # Not the requester nor an admin of its organization: the same 404 as a missing job.
        raise NotFound(f"Bulk job '{job_id}' not found", param="job_id")
    return job


class BulkJobDetailView(TenantAPIView):
    """A bulk assignment job's progress and, once finished, its result."""

    @extend_schema(responses={200: BulkJobOutput, 404: OpenApiResponse(description="No such job in your tenant.")},
                   summary="Get a bulk assignment job")
    def get(self, request, job_id: str) -> Response:
        return Response(BulkJobOutput(_visible_job(request, job_id)).data)


class BulkJobResumeView(TenantAPIView):
    """Queue a stalled job again; it continues after its last completed batch."""

    @extend_schema(
        request=None,
        responses={202: BulkJobOutput, 403: OpenApiResponse(description="Not allowed to assign the job's group."),
                   404: OpenApiResponse(description="No such job in your tenant."),
                   409: OpenApiResponse(description="The job is not stalled (finished, or making progress).")},
        summary="Resume a stalled bulk assignment job",
    )
    def post(self, request, job_id: str) -> Response:
        request.data  # noqa: B018 (takes no body, but a malformed or oversized one is refused like everywhere)
        job = _visible_job(request, job_id)
        self.check("access_group:assign", job_group_target(job))
        job = bulk_job_resume(actor=request.user if getattr(request.user, "pk", None) else None, job=job)
        return Response(BulkJobOutput(job).data, status=status.HTTP_202_ACCEPTED, headers={"Location": _job_url(job)})
