"""Virtual keys: the secrets gateway clients present, stored only as SHA-256 hashes (SPEC §1, §9)."""
from __future__ import annotations

import datetime
import uuid

from django.db import models as db
from django.utils import timezone

from orgs.models import BudgetFields, Organization, SpendFields, Team, User


class VirtualKey(BudgetFields, SpendFields):
    """A virtual API key. `token` is the SHA-256 hex of the secret; the secret itself is never stored."""

    id = db.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    token = db.CharField(
        max_length=64, unique=True, editable=False, help_text="SHA-256 hex of the secret; the key's public id."
    )
    key_name = db.CharField(
        max_length=32, editable=False, help_text="Masked form of the secret, e.g. sk-...abcd."
    )
    key_alias = db.CharField(
        max_length=255, null=True, blank=True, unique=True, help_text="Optional name, unique across all keys."
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

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name = "virtual key"
        indexes = [db.Index(fields=["team", "created_at"]), db.Index(fields=["user", "created_at"])]

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
