"""Access groups, their assignments to teams and keys, and the catalog of what the gateway serves (SPEC §1, §4)."""
from __future__ import annotations

import uuid

from django.db import models as db
from django.db.models.functions import Lower
from django.utils import timezone

from accessctl.ids import ID_MAX_LENGTH, new_id
from keys.models import VirtualKey
from orgs.models import Organization, Team


class AccessGroup(db.Model):
    """A named bundle of models, MCP servers and agents, global or owned by one organization."""

    access_group_id = db.CharField(
        primary_key=True, max_length=ID_MAX_LENGTH, default=new_id, editable=False,
        help_text="Caller-chosen string id (SPEC §1); a UUID string when omitted.",
    )
    access_group_name = db.CharField(
        max_length=255, help_text="Unique per owner, ignoring case. May be used as an entry of a key's models."
    )
    description = db.TextField(blank=True, default="")
    organization = db.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=db.PROTECT,
        related_name="access_groups",
        help_text="Owning organization; empty for a global group that only platform admins manage.",
    )
    access_model_names = db.JSONField(default=list, blank=True, help_text="Model names (patterns allowed).")
    access_mcp_server_ids = db.JSONField(default=list, blank=True, help_text="MCP server ids.")
    access_agent_ids = db.JSONField(default=list, blank=True, help_text="Agent ids.")
    # Counts, not lists: a group may hold a million keys (issue 17). The relation is the truth; the
    # service that writes it keeps these equal to it, and check_access_sync compares them.
    assigned_team_count = db.PositiveIntegerField(
        default=0, editable=False, help_text="Teams assigned to the group; kept equal to its team assignments."
    )
    assigned_key_count = db.PositiveIntegerField(
        default=0, editable=False, help_text="Keys assigned to the group; kept equal to its key assignments."
    )
    created_at = db.DateTimeField(default=timezone.now)
    updated_at = db.DateTimeField(auto_now=True)
    created_by = db.CharField(max_length=255, blank=True, default="")
    updated_by = db.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "access_group_id"]
        constraints = [
            db.UniqueConstraint(
                Lower("access_group_name"),
                "organization",
                name="unique_access_group_name_per_org",
                condition=db.Q(organization__isnull=False),
            ),
            db.UniqueConstraint(
                Lower("access_group_name"),
                name="unique_global_access_group_name",
                condition=db.Q(organization__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.access_group_name


class TeamAccessGroup(db.Model):
    """The truth of a team's access groups; `Team.access_group_ids` mirrors it."""

    # The unique (team, access_group) index serves lookups by team; no second index to maintain.
    team = db.ForeignKey(Team, on_delete=db.CASCADE, db_index=False, related_name="access_group_assignments")
    access_group = db.ForeignKey(AccessGroup, on_delete=db.CASCADE, related_name="team_assignments")
    created_at = db.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [db.UniqueConstraint(fields=["team", "access_group"], name="unique_team_access_group")]

    def __str__(self) -> str:
        return f"{self.access_group_id} → team {self.team_id}"


class KeyAccessGroup(db.Model):
    """The truth of a key's access groups; `VirtualKey.access_group_ids` mirrors it.

    No foreign keys in the database (issue 17): checking two of them per row at commit was a third of a
    bulk assignment's time in PostgreSQL. Their guarantee is kept by the writers, which lock the row they
    point at: the services lock a group (or a key) before deleting it and its rows in the same transaction;
    a writer adding a row moves the group's count under the group's lock and fails if the group is gone
    (`services.count_assignments`), and writes the key's list under the key's lock, removing its row if the
    key is gone (`bulk_sql.apply_batch`, the signals). `check_access_sync` reports and repairs any row
    left pointing at nothing. Django still deletes a key's rows with the key (`on_delete`).
    """

    # The unique (key, access_group) index serves lookups by key; bulk assignment writes one index less.
    key = db.ForeignKey(
        VirtualKey, on_delete=db.CASCADE, db_constraint=False, db_index=False, related_name="access_group_assignments"
    )
    # Indexed with the row id below: a group's keys are read a page at a time in that order.
    access_group = db.ForeignKey(
        AccessGroup, on_delete=db.CASCADE, db_constraint=False, db_index=False, related_name="key_assignments"
    )
    created_at = db.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [db.UniqueConstraint(fields=["key", "access_group"], name="unique_key_access_group")]
        indexes = [db.Index(fields=["access_group", "id"], name="keyaccessgroup_group_row")]

    def __str__(self) -> str:
        return f"{self.access_group_id} → key {self.key_id}"


class CatalogModel(db.Model):
    """A model the gateway serves; what "all models" and patterns expand to in listings."""

    model_name = db.CharField(max_length=255, unique=True, help_text="What clients ask for, e.g. openai/gpt-4o.")
    provider = db.CharField(max_length=64, blank=True, default="", help_text="e.g. openai, anthropic.")
    description = db.TextField(blank=True, default="")
    active = db.BooleanField(default=True, help_text="Inactive models are not listed.")
    created_at = db.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model_name"]
        verbose_name = "catalog model"

    def __str__(self) -> str:
        return self.model_name


class MCPServer(db.Model):
    """An MCP server the gateway serves."""

    server_id = db.CharField(max_length=255, unique=True, help_text="Id used in access groups.")
    name = db.CharField(max_length=255)
    description = db.TextField(blank=True, default="")
    active = db.BooleanField(default=True)
    created_at = db.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["server_id"]
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.name


class Agent(db.Model):
    """An agent the gateway serves."""

    agent_id = db.CharField(max_length=255, unique=True, help_text="Id used in access groups.")
    name = db.CharField(max_length=255)
    description = db.TextField(blank=True, default="")
    active = db.BooleanField(default=True)
    created_at = db.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["agent_id"]

    def __str__(self) -> str:
        return self.name


class BulkJob(db.Model):
    """A bulk assignment run in the background (from the API or the admin): its request, progress and result."""

    QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
    STATUS_CHOICES = [(s, s) for s in (QUEUED, RUNNING, SUCCEEDED, FAILED)]

    job_id = db.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = db.CharField(max_length=16, choices=STATUS_CHOICES, default=QUEUED, db_index=True)
    operation = db.CharField(
        max_length=16, choices=[("assign", "assign"), ("unassign", "unassign")], help_text="Add or remove the groups."
    )
    target = db.CharField(
        max_length=8, choices=[("keys", "keys"), ("teams", "teams")], help_text="Whether keys or teams are chosen."
    )
    access_group_ids = db.JSONField(default=list, help_text="The groups assigned or removed.")
    selection = db.JSONField(default=dict, help_text="How the keys or teams were chosen: ids and/or filters.")
    dry_run = db.BooleanField(default=False, help_text="Only count what would change; write nothing.")
    organization = db.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=db.CASCADE,
        related_name="bulk_jobs",
        help_text="Tenant the job is restricted to; empty for a platform-wide job.",
    )
    requested_by = db.CharField(max_length=255, help_text="user_id of who started the job.")
    matched = db.IntegerField(default=0, help_text="Keys or teams the selection matched.")
    processed = db.IntegerField(default=0, help_text="Keys or teams handled so far.")
    changed = db.IntegerField(default=0, help_text="Keys or teams whose groups changed.")
    cursor = db.CharField(
        max_length=200, blank=True, default="", help_text="Last id handled; a retried job resumes after it."
    )
    runner = db.CharField(
        max_length=64, blank=True, default="",
        help_text="The task run that holds the job (one at a time); a redelivery of the same task takes it over.",
    )
    heartbeat_at = db.DateTimeField(
        null=True, blank=True, help_text="When the job last committed a batch (or started, or was resumed)."
    )
    result = db.JSONField(default=dict, blank=True, help_text="The summary once the job has finished.")
    error = db.TextField(blank=True, default="", help_text="Why the job failed.")
    created_at = db.DateTimeField(default=timezone.now, db_index=True)
    started_at = db.DateTimeField(null=True, blank=True)
    finished_at = db.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "job_id"]
        verbose_name = "bulk assignment job"

    def __str__(self) -> str:
        return f"{self.operation} {self.target} ({self.status})"
