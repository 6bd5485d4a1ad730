"""Virtual keys: the secrets gateway clients present, stored only as SHA-256 hashes (SPEC §1, §9)."""
from __future__ import annotations

import datetime

from django.db import models as db
from django.db.models import Q
from django.utils import timezone

from accessctl.ids import uuid7
from accessctl.policy import KEY_TYPE_DEFAULT, KEY_TYPES
from orgs.models import BudgetFields, Organization, SpendFields, Team, User


class VirtualKey(BudgetFields, SpendFields):
    """A virtual API key. `token` is the SHA-256 hex of the secret; the secret itself is never stored."""

    id = db.UUIDField(primary_key=True, default=uuid7, editable=False)  # time-ordered: see accessctl.ids.uuid7
    token = db.CharField(
        max_length=64, unique=True, editable=False, help_text="SHA-256 hex of the secret; the key's public id."
    )
    key_name = db.CharField(
        max_length=32, editable=False, help_text="Masked form of the secret, e.g. sk-...abcd."
    )
    # Unique per tenant, not globally: a global rule would tell one organization which aliases another
    # uses ("already exists"). See Meta.constraints and README "Key aliases".
    key_alias = db.CharField(
        max_length=255,
        null=True,
        blank=True,
        db_index=True,
        help_text="Optional name, unique within the key's organization (or, for a key outside any "
        "organization, among its owner's keys).",
    )
    # No single-column index on `user` or `team`: the (user, created_at) and (team, created_at) indexes
    # serve those lookups, and every extra index is rewritten on each bulk access-group update.
    user = db.ForeignKey(
        User,
        null=True,
        blank=True,
        db_index=False,
        on_delete=db.CASCADE,
        related_name="keys",
        help_text="Owner; empty for a team service-account key.",
    )
    team = db.ForeignKey(
        Team,
        null=True,
        blank=True,
        db_index=False,
        on_delete=db.CASCADE,
        related_name="keys",
        help_text="Team the key acts for.",
    )
    organization = db.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=db.PROTECT,
        related_name="keys",
        help_text="Tenant of the key: the team's organization, or set directly on a personal key.",
    )
    access_group_ids = db.JSONField(
        default=list, blank=True, editable=False, help_text="Kept equal to the key's access-group assignments."
    )
    expires = db.DateTimeField(null=True, blank=True, db_index=True, help_text="Empty means never.")
    blocked = db.BooleanField(default=False, help_text="A blocked key is refused on every request.")
    metadata = db.JSONField(default=dict, blank=True)
    created_at = db.DateTimeField(default=timezone.now, db_index=True)
    updated_at = db.DateTimeField(auto_now=True)
    created_by = db.CharField(max_length=255, blank=True, default="")
    updated_by = db.CharField(max_length=255, blank=True, default="")
    last_rotated_at = db.DateTimeField(null=True, blank=True)
    previous_token = db.CharField(
        max_length=64,
        null=True,
        blank=True,
        unique=True,
        editable=False,
        help_text="SHA-256 hex of the secret before the last rotation; accepted until previous_token_expires.",
    )
    previous_token_expires = db.DateTimeField(
        null=True, blank=True, editable=False, help_text="End of the rotation's grace period for the old secret."
    )
    auto_rotate = db.BooleanField(
        default=False, help_text="Rotate this key every rotation_interval; the owner is told when it is due."
    )
    rotation_interval = db.CharField(
        max_length=16, null=True, blank=True, help_text="How often the key is due for rotation, e.g. 30d or 12w."
    )
    rotation_due_at = db.DateTimeField(
        null=True, blank=True, db_index=True, editable=False, help_text="When the key is next due for rotation."
    )
    rotation_due_notified_at = db.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the owner was told (audit log) that rotation is due."
    )
    models = db.JSONField(
        default=list,
        blank=True,
        help_text="Models this key may call; empty means its access groups, else its team's, else its owner's.",
    )
    # Which routes the key may call (SPEC §2), on top of its user's rights; values in accessctl.policy.
    key_type = db.CharField(
        max_length=16,
        choices=[(t, t) for t in KEY_TYPES],
        default=KEY_TYPE_DEFAULT,
        help_text="default: any route; llm_api: the model routes only (the gateway's check, /v1/models); "
        "management: the management routes only; read_only: info and list routes only.",
    )
    allowed_routes = db.JSONField(
        default=list,
        blank=True,
        help_text="Narrows the routes further: route paths (/key/info, /api/v1/keys, /team/*) or the groups "
        "llm_api_routes, management_routes, info_routes. Empty: no further limit.",
    )

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name = "virtual key"
        indexes = [db.Index(fields=["team", "created_at"]), db.Index(fields=["user", "created_at"])]
        constraints = [
            db.UniqueConstraint(
                fields=["organization", "key_alias"],
                condition=Q(organization__isnull=False),
                name="key_alias_unique_in_organization",
            ),
            db.UniqueConstraint(
                fields=["user", "key_alias"],
                condition=Q(organization__isnull=True, user__isnull=False),
                name="key_alias_unique_for_owner",
            ),
            db.UniqueConstraint(
                fields=["key_alias"],
                condition=Q(organization__isnull=True, user__isnull=True),
                name="key_alias_unique_without_owner",
            ),
        ]

    def __str__(self) -> str:
        return self.key_alias or self.key_name

    def __repr__(self) -> str:
        return f"<VirtualKey {self.key_name} alias={self.key_alias!r}>"

    @property
    def in_grace_period(self) -> bool:
        """Whether the secret before the last rotation is still accepted."""
        return self.previous_token_expires is not None and self.previous_token_expires > timezone.now()

    @property
    def is_expired(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now()

    @property
    def status(self) -> str:
        if self.blocked:
            return "blocked"
        if self.is_expired:
            return "expired"
        return "active"


class Invalidation(db.Model):
    """A durable note that the cached decisions of these keys (or of every key) went stale.

    Written right after a write that changes who may call what commits, before its response; every serving
    process reads the new notes a few times a second (`keys.revocations`) and refuses to serve a cached
    decision older than a note that names it. A revocation therefore takes effect even when the shared
    cache could not be told (down, paused, partitioned from the writer): the database holds it.
    """

    id = db.BigAutoField(primary_key=True)
    at = db.DateTimeField(default=timezone.now, db_index=True)
    tokens = db.JSONField(default=list, blank=True)
    everything = db.BooleanField(default=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"invalidation {self.id}: " + ("every key" if self.everything else f"{len(self.tokens)} keys")


class UsageReport(db.Model):
    """One spend report from a gateway, buffered until the applier adds it to the key's path (SPEC §6).

    Append-only: the report is committed before the gateway gets its 2xx, and the applier marks it applied
    in the same transaction that adds its spend, so a crash on either side neither loses nor doubles it.
    Applied reports without an idempotency key are deleted at once; those with one are kept for
    `USAGE_IDEMPOTENCY_RETENTION_SECONDS` so a retry is still recognised.
    """

    id = db.BigAutoField(primary_key=True)
    caller = db.CharField(max_length=64, help_text="Who reported it (`master` or `user:<pk>`); idempotency is per caller.")
    idempotency_key = db.CharField(
        max_length=128, null=True, blank=True, help_text="The caller's id for this report; a retry with it counts once."
    )
    # No foreign-key constraint: a key deleted before its spend is applied must not block the delete, and
    # no index on the insert path beyond the pending ones below.
    key = db.ForeignKey(
        VirtualKey, db_constraint=False, db_index=False, on_delete=db.DO_NOTHING, related_name="+",
        help_text="The key that spent.",
    )
    model = db.CharField(max_length=255)
    spend = db.FloatField(help_text="Spend in USD.")
    prompt_tokens = db.BigIntegerField(default=0)
    completion_tokens = db.BigIntegerField(default=0)
    received_at = db.DateTimeField(default=timezone.now)
    applied_at = db.DateTimeField(null=True, blank=True, help_text="When its spend landed; empty while pending.")

    class Meta:
        verbose_name = "usage report"
        constraints = [
            db.UniqueConstraint(
                fields=["caller", "idempotency_key"],
                condition=db.Q(idempotency_key__isnull=False),
                name="usage_report_idempotency_key_once_per_caller",
            ),
        ]
        indexes = [
            # The applier's queue, and the pending spend of a key's path: only pending rows are indexed.
            db.Index(fields=["id"], condition=db.Q(applied_at__isnull=True), name="usage_report_pending"),
            db.Index(fields=["key"], condition=db.Q(applied_at__isnull=True), name="usage_report_pending_key"),
            db.Index(fields=["applied_at"], condition=db.Q(applied_at__isnull=False), name="usage_report_applied"),
        ]

    def __str__(self) -> str:
        state = "applied" if self.applied_at else "pending"
        return f"{self.spend:g} USD on {self.model} ({state})"


class UsageBatch(db.Model):
    """One run of the usage applier: how many reports it applied and how late (for metrics and the bench)."""

    id = db.BigAutoField(primary_key=True)
    applied_at = db.DateTimeField(default=timezone.now, db_index=True)
    reports = db.IntegerField(default=0)
    rows_updated = db.IntegerField(default=0, help_text="Key, team, organization and user rows written.")
    spend = db.FloatField(default=0.0)
    max_lag_ms = db.FloatField(default=0.0, help_text="From the oldest report's arrival to this batch's commit.")
    mean_lag_ms = db.FloatField(default=0.0)

    class Meta:
        verbose_name = "usage batch"
        verbose_name_plural = "usage batches"

    def __str__(self) -> str:
        return f"usage batch {self.pk}: {self.reports} reports"
# How long a rotation's Idempotency-Key is remembered; a retry after that rotates again.
IDEMPOTENCY_WINDOW = datetime.timedelta(hours=24)


class KeyRotation(db.Model):
    """A rotation made with an `Idempotency-Key`: a retry with the same header finds it and replays the
    outcome instead of rotating again (the new secret itself is never stored, so it is not shown twice)."""

    key = db.ForeignKey(VirtualKey, on_delete=db.CASCADE, related_name="rotations")
    idempotency_key = db.CharField(max_length=255, help_text="The client's Idempotency-Key header.")
    old_token = db.CharField(max_length=64, help_text="The token the rotation replaced.")
    new_token = db.CharField(max_length=64, help_text="The token the rotation set.")
    new_key_name = db.CharField(max_length=32, help_text="Masked form of the new secret.")
    grace_until = db.DateTimeField(null=True, blank=True, help_text="End of the old secret's grace period.")
    actor_id = db.CharField(max_length=255, help_text="Who rotated.")
    created_at = db.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            db.UniqueConstraint(fields=["idempotency_key", "key"], name="keyrotation_unique_idempotency_key")
        ]

    def __str__(self) -> str:
        return f"rotation of {self.new_key_name} ({self.idempotency_key})"
