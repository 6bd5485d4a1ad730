"""Users, organizations, teams, memberships, budgets and the audit log (SPEC §1)."""
from __future__ import annotations

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models as db
from django.utils import timezone
from django.utils.functional import cached_property
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from accessctl.ids import ID_MAX_LENGTH, new_id
from accessctl.policy import actor_for
from accessctl.roles import (
    DEFAULT_TEAM_MEMBER_PERMISSIONS,
    MANAGE_TEAM,
    ORG_ROLE_CHOICES,
    PLATFORM_ROLE_CHOICES,
    TEAM_ROLE_CHOICES,
    OrgRole,
    PlatformRole,
    TeamRole,
)

# MANAGE_TEAM (accessctl.roles): the object permission that lets a user manage one team without being its
# admin (django-guardian).


def default_team_member_permissions() -> list[str]:
    return list(DEFAULT_TEAM_MEMBER_PERMISSIONS)


class BudgetFields(db.Model):
    """Budget and limits, with the running spend, as LiteLLM keeps them on keys, teams, users and budgets."""

    max_budget = db.FloatField(
        null=True, blank=True, help_text="Hard spend cap in USD; empty means no cap."
    )
    soft_budget = db.FloatField(
        null=True, blank=True, help_text="Spend in USD at which to warn; never blocks."
    )
    tpm_limit = db.BigIntegerField(null=True, blank=True, help_text="Tokens per minute; empty means no limit.")
    rpm_limit = db.BigIntegerField(null=True, blank=True, help_text="Requests per minute; empty means no limit.")
    max_parallel_requests = db.IntegerField(
        null=True, blank=True, help_text="Concurrent requests; empty means no limit."
    )
    model_max_budget = db.JSONField(
        default=dict, blank=True, help_text='Per-model spend caps, e.g. {"openai/gpt-4o": 10.0}.'
    )
    budget_duration = db.CharField(
        max_length=16, null=True, blank=True, help_text='How often spend resets: "30s", "1h", "7d", "1mo".'
    )
    budget_reset_at = db.DateTimeField(null=True, blank=True, help_text="When spend next resets to zero.")

    class Meta:
        abstract = True


class SpendFields(db.Model):
    spend = db.FloatField(default=0.0, help_text="Spend in USD since the last budget reset.")
    model_spend = db.JSONField(default=dict, blank=True, help_text="Spend per model since the last reset.")

    class Meta:
        abstract = True


class Budget(BudgetFields):
    """A budget row (LiteLLM's `litellm_budget_table`): every organization has one, memberships may."""

    budget_id = db.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = db.DateTimeField(auto_now_add=True)
    updated_at = db.DateTimeField(auto_now=True)
    created_by = db.CharField(max_length=255, blank=True, default="")
    updated_by = db.CharField(max_length=255, blank=True, default="")

    def __str__(self) -> str:
        cap = "no cap" if self.max_budget is None else f"${self.max_budget:g}"
        return f"Budget {str(self.budget_id)[:8]} ({cap})"


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, user_id: str, password: str | None = None, **fields) -> User:
        user = self.model(user_id=user_id, **fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, user_id: str, password: str | None = None, **fields) -> User:
        fields["user_role"] = PlatformRole.PROXY_ADMIN
        return self.create_user(user_id, password, **fields)


class User(AbstractBaseUser, PermissionsMixin, BudgetFields, SpendFields):
    """A person or service account. `user_id` is the stable, caller-chosen identifier."""

    user_id = db.CharField(
        max_length=255, unique=True, help_text="Stable identifier chosen by the caller, e.g. alice@corp."
    )
    user_email = db.EmailField(null=True, blank=True, help_text="Optional contact address.")
    user_alias = db.CharField(max_length=255, null=True, blank=True, help_text="Display name.")
    user_role = db.CharField(
        max_length=32,
        choices=PLATFORM_ROLE_CHOICES,
        default=PlatformRole.INTERNAL_USER,
        help_text="Platform role: what this user may do outside their memberships.",
    )
    is_system = db.BooleanField(
        default=False, help_text="A gateway service account: reads what authorization needs, reports usage."
    )
    is_active = db.BooleanField(
        default=True, help_text="Inactive users cannot log in and their keys are refused."
    )
    models = db.JSONField(
        default=list, blank=True, help_text="Models this user may use on personal keys; empty means all."
    )
    metadata = db.JSONField(default=dict, blank=True, help_text="Free-form data for your own tooling.")
    sso_user_id = db.CharField(max_length=255, null=True, blank=True)
    scim_external_id = db.CharField(
        max_length=255, null=True, blank=True, help_text="The IdP's id of this user (SCIM externalId)."
    )
    created_at = db.DateTimeField(default=timezone.now)
    updated_at = db.DateTimeField(auto_now=True)

    # Admin access follows from roles, never from hand-set flags (see `is_staff`).
    is_superuser = None

    objects = UserManager()

    USERNAME_FIELD = "user_id"
    EMAIL_FIELD = "user_email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["user_id"]
        constraints = [
            db.CheckConstraint(
                condition=db.Q(user_role__in=[r for r, _ in PLATFORM_ROLE_CHOICES]),
                name="user_role_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.user_id

    @property
    def is_superuser(self) -> bool:  # noqa: F811 - replaces the inherited column on purpose
        return self.is_active and self.user_role == PlatformRole.PROXY_ADMIN

    @cached_property
    def policy_actor(self):
        """The policy's view of this user (memberships and grants), loaded once per instance.

        Each request loads its user afresh (session → user), so this is cached per request and never
        across requests: a removed role, membership or grant counts from the next request on.
        """
        return actor_for(self)

    @property
    def is_staff(self) -> bool:
        """Who may open the admin: platform admins and viewers, org admins, team admins (by role or by grant)."""
        if not self.is_active or not self.pk:
            return False
        if self.user_role in (PlatformRole.PROXY_ADMIN, PlatformRole.PROXY_ADMIN_VIEWER):
            return True
        return self.policy_actor.uses_admin


class OrganizationQuerySet(db.QuerySet):
    def alive(self) -> OrganizationQuerySet:
        return self.filter(deleted_at__isnull=True)


class Organization(SpendFields):
    """A tenant. Soft-deleted organizations block every request made in their context."""

    organization_id = db.CharField(
        primary_key=True, max_length=ID_MAX_LENGTH, default=new_id, editable=False,
        help_text="Caller-chosen string id (SPEC §1); a UUID string when omitted.",
    )
    organization_alias = db.CharField(max_length=255, help_text="Human-readable name.")
    models = db.JSONField(
        default=list, blank=True, help_text="Models teams and keys of this organization may use; empty means all."
    )
    budget = db.OneToOneField(
        Budget, on_delete=db.PROTECT, related_name="organization", help_text="The organization's budget row."
    )
    metadata = db.JSONField(default=dict, blank=True)
    deleted_at = db.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Set when soft-deleted; rows stay for audit."
    )
    created_at = db.DateTimeField(default=timezone.now)
    updated_at = db.DateTimeField(auto_now=True)
    created_by = db.CharField(max_length=255, blank=True, default="")
    updated_by = db.CharField(max_length=255, blank=True, default="")

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["organization_alias", "organization_id"]

    def __str__(self) -> str:
        suffix = " (deleted)" if self.deleted_at else ""
        return f"{self.organization_alias}{suffix}"


class OrganizationMembership(db.Model):
    """User ↔ organization with an org role. Removing it ends the user's rights at once; the audit log keeps history."""

    user = db.ForeignKey(User, on_delete=db.CASCADE, related_name="organization_memberships")
    organization = db.ForeignKey(Organization, on_delete=db.CASCADE, related_name="memberships")
    user_role = db.CharField(
        max_length=32, choices=ORG_ROLE_CHOICES, default=OrgRole.INTERNAL_USER, help_text="Role in the organization."
    )
    budget = db.ForeignKey(
        Budget, null=True, blank=True, on_delete=db.SET_NULL, help_text="Budget of this user in the organization."
    )
    spend = db.FloatField(default=0.0)
    created_at = db.DateTimeField(default=timezone.now)
    updated_at = db.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization_id", "user_id"]
        constraints = [
            db.UniqueConstraint(fields=["user", "organization"], name="unique_organization_membership"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organization_id} as {self.user_role}"


class Team(BudgetFields, SpendFields):
    """A group of users inside at most one organization."""

    team_id = db.CharField(
        primary_key=True, max_length=ID_MAX_LENGTH, default=new_id, editable=False,
        help_text="Caller-chosen string id (SPEC §1); a UUID string when omitted.",
    )
    team_alias = db.CharField(max_length=255, null=True, blank=True, help_text="Human-readable name.")
    organization = db.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=db.PROTECT,
        related_name="teams",
        help_text="The organization this team belongs to; empty for a team outside any organization.",
    )
    models = db.JSONField(
        default=list, blank=True, help_text="Models the team's keys may use; empty means the organization's."
    )
    member_permissions = db.JSONField(
        default=default_team_member_permissions,
        blank=True,
        help_text="Key routes a member with role `user` may call on the team's keys.",
    )
    blocked = db.BooleanField(default=False, help_text="A blocked team's keys are refused.")
    access_group_ids = db.JSONField(
        default=list, blank=True, editable=False, help_text="Kept equal to the team's access-group assignments."
    )
    metadata = db.JSONField(default=dict, blank=True)
    # LiteLLM's legacy `admins` / `members` columns: kept as given at creation and never changed by member
    # writes, as LiteLLM keeps them (its clients compare them before and after an update). The members
    # and their roles are the memberships (`members_with_roles`).
    legacy_admins = db.JSONField(
        default=list, blank=True, editable=False, help_text="LiteLLM's legacy `admins` list, as given at creation."
    )
    legacy_members = db.JSONField(
        default=list, blank=True, editable=False, help_text="LiteLLM's legacy `members` list, as given at creation."
    )
    created_at = db.DateTimeField(default=timezone.now)
    updated_at = db.DateTimeField(auto_now=True)
    created_by = db.CharField(max_length=255, blank=True, default="")
    updated_by = db.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["team_alias", "team_id"]
        # Granted per team with django-guardian (`team_grant_manage`): the rights of the team's admins.
        permissions = [(MANAGE_TEAM, "Can manage the team's members and keys")]

    def __str__(self) -> str:
        return self.team_alias or str(self.team_id)


MANAGE_TEAM_PERMISSION = f"orgs.{MANAGE_TEAM}"


class TeamUserObjectPermission(UserObjectPermissionBase):
    """A guardian object permission of a user on one team (a direct foreign key: deleted with the team)."""

    content_object = db.ForeignKey(Team, on_delete=db.CASCADE, related_name="user_grants")

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "team grant to a user"

    def __str__(self) -> str:
        return f"{self.user_id} may {self.permission_id} on {self.content_object_id}"


class TeamGroupObjectPermission(GroupObjectPermissionBase):
    """A guardian object permission of a group of users on one team (deleted with the team)."""

    content_object = db.ForeignKey(Team, on_delete=db.CASCADE, related_name="group_grants")

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "team grant to a group"

    def __str__(self) -> str:
        return f"group {self.group_id} may {self.permission_id} on {self.content_object_id}"


class TeamMembership(db.Model):
    """User ↔ team with a team role."""

    user = db.ForeignKey(User, on_delete=db.CASCADE, related_name="team_memberships")
    team = db.ForeignKey(Team, on_delete=db.CASCADE, related_name="memberships")
    role = db.CharField(max_length=16, choices=TEAM_ROLE_CHOICES, default=TeamRole.USER)
    budget = db.ForeignKey(
        Budget, null=True, blank=True, on_delete=db.SET_NULL, help_text="Budget of this user in the team."
    )
    spend = db.FloatField(default=0.0)
    created_at = db.DateTimeField(default=timezone.now)
    updated_at = db.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team_id", "user_id"]
        constraints = [db.UniqueConstraint(fields=["user", "team"], name="unique_team_membership")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.team_id} as {self.role}"


class AuditEntry(db.Model):
    """Who did what to which object, when, with the before/after of the fields that changed. Never edited."""

    id = db.BigAutoField(primary_key=True)
    created_at = db.DateTimeField(default=timezone.now, db_index=True)
    actor_id = db.CharField(max_length=255, help_text="user_id of who made the change.")
    action = db.CharField(max_length=64, db_index=True, help_text="What was done, e.g. key_generate.")
    object_type = db.CharField(max_length=64)
    object_id = db.CharField(max_length=255, db_index=True)
    organization_id = db.CharField(
        max_length=ID_MAX_LENGTH, null=True, blank=True, db_index=True,
        help_text="Tenant the object belongs to, for filtering."
    )
    before = db.JSONField(default=dict, blank=True)
    after = db.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [db.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_id} {self.action} {self.object_type}:{self.object_id}"



class ScimGroup(db.Model):
    """A group provisioned by the IdP over SCIM: its members are the members of one team, or of one
    organization (ACCESSCTL_SCIM_GROUPS); it exists to keep the IdP's id and name for that target."""

    id = db.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    display_name = db.CharField(max_length=255, unique=True, help_text="The IdP's name of the group.")
    scim_external_id = db.CharField(max_length=255, null=True, blank=True, help_text="The IdP's id of the group.")
    team = db.OneToOneField(
        Team, null=True, blank=True, on_delete=db.CASCADE, related_name="scim_group",
        help_text="The team whose members this group's members are.",
    )
    organization = db.OneToOneField(
        Organization, null=True, blank=True, on_delete=db.CASCADE, related_name="scim_group",
        help_text="The organization whose members this group's members are.",
    )
    created_at = db.DateTimeField(default=timezone.now)
    updated_at = db.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name"]
        verbose_name = "SCIM group"

    def __str__(self) -> str:
        return self.display_name


class ImportedRow(db.Model):
    """A row an import (`manage.py import_litellm`) brought in: what it was in the source, what it became here,
    and a digest of the values it was given. A re-run updates a row only while accessctl has left it as the
    import wrote it, and never re-creates one deleted here since: a key revoked after the import stays revoked."""

    source = db.CharField(max_length=32, help_text="The system imported from, e.g. litellm.")
    source_table = db.CharField(max_length=64, help_text="The source's table, e.g. LiteLLM_VerificationToken.")
    # A membership's ids are a JSON pair of two ids of up to 128 characters each, escaped: at most 520.
    source_id = db.CharField(max_length=600, help_text="The row's id in the source (a JSON [parent, user] pair for a membership).")
    target_id = db.CharField(max_length=600, help_text="The id of the accessctl row it became.")
    fingerprint = db.CharField(max_length=64, help_text="SHA-256 of the values the import last wrote to the row.")
    imported_at = db.DateTimeField(default=timezone.now, help_text="When the row was first imported.")
    updated_at = db.DateTimeField(default=timezone.now, help_text="When an import last wrote the row.")

    class Meta:
        ordering = ["source", "source_table", "source_id"]
        constraints = [
            db.UniqueConstraint(fields=["source", "source_table", "source_id"], name="imported_row_once_per_source_row"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.source_table}:{self.source_id} → {self.target_id}"
