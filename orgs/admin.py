"""Admin for users, organizations, teams, memberships, budgets and the (read-only) audit log."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, prefetch_related_objects
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from accessctl import policy
from accessctl.admin import (
    BoundedJSONFormField,
    NameListField,
    ReadOnlyAdmin,
    ServiceAdmin,
    ServiceInline,
    UserIdField,
    admin_tenant,
    request_actor,
)
from accessgroups.admin import TeamAccessGroupInline, bulk_assign_actions
from keys.models import VirtualKey
from orgs import services
from orgs.models import (
    MANAGE_TEAM,
    AuditEntry,
    Budget,
    Organization,
    OrganizationMembership,
    Team,
    TeamMembership,
    TeamUserObjectPermission,
    User,
)
from orgs.roles import DEFAULT_TEAM_MEMBER_PERMISSIONS, TEAM_MEMBER_PERMISSIONS

# Roles are data on users and memberships (orgs/roles.py); Django's groups would grant nothing here.
if admin.site.is_registered(Group):
    admin.site.unregister(Group)

BUDGET_FORM_FIELDS = (
    "max_budget",
    "soft_budget",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "budget_duration",
    "model_max_budget",
)


def count_of(model: Any, fk: str) -> Coalesce:
    """A per-row count as a correlated subquery: one query for the whole page, no join fan-out."""
    counted = (
        model.objects.filter(**{fk: OuterRef("pk")}).order_by().values(fk).annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _cleaned(form: forms.BaseForm, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: form.cleaned_data[name] for name in names if name in form.cleaned_data}


# --- membership inlines -------------------------------------------------------------------------


class MembershipInlineBase(ServiceInline):
    """Memberships written through their services: a changed user or parent is a removal and an addition
    (each with the services' rules), a changed role an update. Subclasses name the parent and role fields
    and the three services."""

    parent_field: str
    role_field: str
    add_member: Callable[..., Any]
    update_member: Callable[..., Any]
    delete_member: Callable[..., Any]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related(*self.autocomplete_fields)

    def save_with_services(self, request: HttpRequest, formset: Any) -> None:
        self.require_parent(request, formset)
        actor = request.user
        for obj in formset.deleted_objects:
            self.delete_member(actor=actor, membership=self._stored(obj.pk))
        for obj, changed in formset.changed_objects:
            stored = self._stored(obj.pk)
            if "user" in changed or self.parent_field in changed:
                self.delete_member(actor=actor, membership=stored)
                self._add(actor, obj)
            else:
                self.update_member(actor=actor, membership=stored, **{self.role_field: getattr(obj, self.role_field)})
        for obj in formset.new_objects:
            self._add(actor, obj)

    def _add(self, actor: Any, obj: Any) -> None:
        self.add_member(
            actor=actor,
            user=obj.user,
            **{self.parent_field: getattr(obj, self.parent_field), self.role_field: getattr(obj, self.role_field)},
        )

    def _stored(self, pk: Any) -> Any:
        return self.model.objects.select_related("user", self.parent_field).get(pk=pk)


class OrganizationMembershipInlineBase(MembershipInlineBase):
    model = OrganizationMembership
    write_action = "organization:member_manage"
    parent_field, role_field = "organization", "user_role"
    add_member = staticmethod(services.organization_member_add)
    update_member = staticmethod(services.organization_member_update)
    delete_member = staticmethod(services.organization_member_delete)


class OrganizationMemberInline(OrganizationMembershipInlineBase):
    """The members of an organization, on the organization's page."""

    fields = ("user", "user_role")
    autocomplete_fields = ("user",)
    verbose_name = "member"
    verbose_name_plural = "members"


class UserOrganizationInline(OrganizationMembershipInlineBase):
    """The organizations of a user, on the user's page."""

    fields = ("organization", "user_role")
    autocomplete_fields = ("organization",)
    verbose_name = "organization membership"


class TeamMembershipInlineBase(MembershipInlineBase):
    model = TeamMembership
    write_action = "team:member_manage"
    parent_field, role_field = "team", "role"
    add_member = staticmethod(services.team_member_add)
    update_member = staticmethod(services.team_member_update)
    delete_member = staticmethod(services.team_member_delete)


class TeamMemberInline(TeamMembershipInlineBase):
    """The members of a team, on the team's page."""

    fields = ("user", "role")
    autocomplete_fields = ("user",)
    verbose_name = "member"
    verbose_name_plural = "members"


class UserTeamInline(TeamMembershipInlineBase):
    """The teams of a user, on the user's page."""

    fields = ("team", "role")
    autocomplete_fields = ("team",)
    verbose_name = "team membership"


# --- users ----------------------------------------------------------------------------------------


class UserForm(forms.ModelForm):
    models = NameListField(
        required=False, help_text="Models this user may use on personal keys, one per line; empty means all."
    )
    new_password1 = forms.CharField(
        label="New admin password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Sets the password for the admin login. Leave empty to keep the current one; "
        "a user without a password cannot log in.",
    )
    new_password2 = forms.CharField(
        label="Repeat the new password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    organization = forms.ModelChoiceField(
        queryset=Organization.objects.none(),
        required=False,
        help_text="Make the new user a member of this organization (organization admins must choose one).",
    )

    class Meta:
        model = User
        fields = ("user_id", "user_alias", "user_email", "user_role", "is_system", "is_active", "models",
                  "metadata", "sso_user_id", *BUDGET_FORM_FIELDS, "spend")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        first, second = cleaned.get("new_password1"), cleaned.get("new_password2")
        if first or second:
            if first != second:
                self.add_error("new_password2", "The two passwords differ.")
            else:
                try:
                    password_validation.validate_password(first, self.instance)
                except ValidationError as exc:
                    self.add_error("new_password1", exc)
        return cleaned


USER_ROLE_FIELDS = ("user_role", "is_system", "is_active")
USER_LIMIT_FIELDS = ("models", "spend", *BUDGET_FORM_FIELDS)


@admin.register(User)
class UserAdmin(ServiceAdmin):
    form = UserForm
    policy_actions = {"view": "user:info", "add": "user:create", "change": "user:update", "delete": "user:delete"}
    field_actions = {"user:update_role": USER_ROLE_FIELDS, "user:update_budget": USER_LIMIT_FIELDS}
    list_display = ("user_id", "user_alias", "user_email", "user_role", "is_system", "is_active", "spend",
                    "max_budget", "created_at")
    list_filter = ("user_role", "is_system", "is_active")
    search_fields = ("user_id", "user_alias", "user_email")
    ordering = ("user_id",)
    inlines = (UserOrganizationInline, UserTeamInline)
    fieldsets = (
        (None, {"fields": ("user_id", "user_alias", "user_email")}),
        ("Role", {"fields": ("user_role", "is_system", "is_active")}),
        ("Access", {"fields": ("models",)}),
        ("Budget", {"fields": (*BUDGET_FORM_FIELDS, "budget_reset_at", "spend")}),
        ("Admin login", {"fields": ("new_password1", "new_password2", "last_login")}),
        ("More", {"classes": ("collapse",), "fields": ("metadata", "sso_user_id", "created_at", "updated_at")}),
    )

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        # Users of the organizations the caller administers (a subquery: no duplicate rows per membership).
        tenant = admin_tenant(request)
        if tenant.bypass:
            return queryset
        members = tenant.scope(OrganizationMembership.objects.all(), org_field="organization")
        return queryset.filter(pk__in=members.values("user_id"))

    def probe_target(self, organization_id: str | None, team_id: str | None) -> policy.Target:
        return policy.Target(
            organization_id=organization_id,
            owner_user_id="",
            user_org_ids=(organization_id,) if organization_id else (),
            user_team_ids=(team_id,) if team_id else (),
        )

    def prepare_object(self, obj: User) -> None:
        # The policy's user target reads the memberships: loaded once with the row, not per check.
        prefetch_related_objects([obj], "organization_memberships", "team_memberships")

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            first = (None, {"fields": ("user_id", "user_alias", "user_email", "organization")})
            return (first, *fieldsets[1:])
        return fieldsets

    def get_form(self, request: HttpRequest, obj: User | None = None, change: bool = False, **kwargs: Any):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        if "organization" in form_class.base_fields:
            field = form_class.base_fields["organization"]
            field.queryset = self.admin_site._registry[Organization].get_queryset(request)
            field.required = not request_actor(request).is_proxy_admin
        return form_class

    def fixed_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> tuple[str, ...]:
        fixed = ("budget_reset_at", "last_login", "created_at", "updated_at")
        return (*fixed, "user_id") if obj is not None else fixed

    def policy_target(self, obj: User | None) -> policy.Target | None:
        return policy.user_target(obj) if obj is not None else None

    def create_target(self, request: HttpRequest, form: forms.BaseForm) -> policy.Target:
        organization = form.cleaned_data.get("organization")
        return policy.Target(
            organization_id=str(organization.pk) if organization is not None else None,
            new_platform_role=form.cleaned_data.get("user_role"),
        )

    def update_checks(self, request: HttpRequest, stored: User, data: dict[str, Any]):
        checks = super().update_checks(request, stored, data)
        if "user_role" in data:
            # Judged with the role asked for: only a proxy admin grants an admin role.
            target = policy.user_target(stored, new_platform_role=data["user_role"])
            checks = [(a, target if a == "user:update_role" else t) for a, t in checks]
        return checks

    @method_decorator(sensitive_post_parameters("new_password1", "new_password2"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    def create(self, request: HttpRequest, form: forms.BaseForm) -> User:
        data = _cleaned(form, services.USER_FIELDS)
        organization = form.cleaned_data.get("organization")
        return services.user_create(
            actor=request.user,
            by=request_actor(request),
            user_id=form.cleaned_data["user_id"],
            password=form.cleaned_data.get("new_password1") or None,
            organizations=[organization] if organization is not None else [],
            **data,
        )

    def update(self, request: HttpRequest, obj: User, data: dict[str, Any]) -> User:
        password = data.pop("new_password1", None)
        data.pop("new_password2", None)
        data.pop("organization", None)
        if password:
            data["password"] = password  # set by the service, never audited in clear
        return services.user_update(actor=request.user, user=obj, data=data)

    def remove(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(actor=request.user, user=obj)


# --- budgets --------------------------------------------------------------------------------------


@admin.register(Budget)
class BudgetAdmin(ReadOnlyAdmin):
    """Budget rows are edited on their organization (or membership); shown here for reference."""

    policy_actions = {"view": "organization:info"}
    tenant_fields = {"org_field": "organization"}
    list_display = ("budget_id", "owner", "max_budget", "soft_budget", "tpm_limit", "rpm_limit",
                    "budget_duration", "budget_reset_at")
    search_fields = ("budget_id", "organization__organization_alias")
    list_filter = ("budget_duration",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("organization")

    def policy_target(self, obj: Budget | None) -> policy.Target | None:
        owner = getattr(obj, "organization", None) if obj is not None else None
        return policy.organization_target(owner) if owner is not None else None

    @admin.display(description="organization")
    def owner(self, obj: Budget) -> Organization | None:
        # Membership budgets have no organization row pointing at them.
        return getattr(obj, "organization", None)


# --- organizations ----------------------------------------------------------------------------------


class DeletedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return (("no", "Active"), ("yes", "Deleted"))

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


class OrganizationForm(forms.ModelForm):
    """The organization with the fields of its budget row (every organization has one)."""

    models = NameListField(
        required=False, help_text="Models teams and keys of this organization may use, one per line; empty means all."
    )
    max_budget = forms.FloatField(required=False, min_value=0, help_text="Hard spend cap in USD; empty means no cap.")
    soft_budget = forms.FloatField(required=False, min_value=0, help_text="Spend in USD at which to warn.")
    tpm_limit = forms.IntegerField(required=False, min_value=0, help_text="Tokens per minute.")
    rpm_limit = forms.IntegerField(required=False, min_value=0, help_text="Requests per minute.")
    max_parallel_requests = forms.IntegerField(required=False, min_value=0, help_text="Concurrent requests.")
    budget_duration = forms.CharField(
        required=False, max_length=16, empty_value=None, help_text='How often spend resets: "30s", "1h", "7d", "1mo".'
    )
    model_max_budget = BoundedJSONFormField(required=False, help_text='Per-model caps, e.g. {"openai/gpt-4o": 10.0}.')

    class Meta:
        model = Organization
        fields = ("organization_alias", "models", "metadata", "spend")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A new organization already has its UUID, so "not yet saved" is `_state.adding`, not a missing pk.
        budget = None if self.instance._state.adding else self.instance.budget
        for name in BUDGET_FORM_FIELDS:
            if budget is not None:
                self.initial.setdefault(name, getattr(budget, name))
        self.initial.setdefault("model_max_budget", {})


@admin.register(Organization)
class OrganizationAdmin(ServiceAdmin):
    form = OrganizationForm
    policy_actions = {
        "view": "organization:info",
        "add": "organization:create",
        "change": "organization:update",
        "delete": "organization:delete",
    }
    tenant_fields = {"org_field": "pk"}
    # Which fields need which action: the policy's one map (the organization services ask the same).
    field_actions = policy.FIELD_ACTIONS["organization"]
    list_display = ("organization_alias", "organization_id", "team_count", "member_count", "max_budget", "spend",
                    "created_at", "deleted_at")
    list_filter = (DeletedFilter,)
    search_fields = ("organization_alias", "organization_id")
    readonly_fields = ("organization_id", "budget_reset_at", "created_at", "created_by", "updated_at",
                       "updated_by", "deleted_at")
    inlines = (OrganizationMemberInline,)
    fieldsets = (
        (None, {"fields": ("organization_alias", "organization_id", "models")}),
        ("Budget", {"fields": (*BUDGET_FORM_FIELDS, "budget_reset_at", "spend")}),
        ("More", {"classes": ("collapse",), "fields": ("metadata", "created_at", "created_by", "updated_at",
                                                       "updated_by", "deleted_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("budget")
            .annotate(team_count=count_of(Team, "organization"), member_count=count_of(OrganizationMembership,
                                                                                        "organization"))
        )

    def policy_target(self, obj: Organization | None) -> policy.Target | None:
        return policy.organization_target(obj) if obj is not None else None

    @admin.display(description="teams", ordering="team_count")
    def team_count(self, obj: Organization) -> int:
        return obj.team_count

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj: Organization) -> int:
        return obj.member_count

    @admin.display(description="max budget", ordering="budget__max_budget")
    def max_budget(self, obj: Organization) -> float | None:
        return obj.budget.max_budget

    @admin.display(description="budget resets at")
    def budget_reset_at(self, obj: Organization) -> Any:
        return obj.budget.budget_reset_at

    def __getattr__(self, name: str) -> Any:
        # A budget field shown read-only (to an org admin) is read from the organization's budget row.
        if name in BUDGET_FORM_FIELDS:
            return admin.display(description=name.replace("_", " "))(lambda obj: getattr(obj.budget, name))
        raise AttributeError(name)

    def create(self, request: HttpRequest, form: forms.BaseForm) -> Organization:
        data = _cleaned(form, ("models", "metadata", "spend", *BUDGET_FORM_FIELDS))
        return services.organization_create(
            actor=request.user, organization_alias=form.cleaned_data["organization_alias"], **data
        )

    def update_checks(self, request: HttpRequest, stored: Organization, data: dict[str, Any]):
        return []  # `organization_update` authorizes every changed field itself

    def update(self, request: HttpRequest, obj: Organization, data: dict[str, Any]) -> Organization:
        return services.organization_update(actor=request.user, organization=obj, data=data,
                                            by=request_actor(request))

    def remove(self, request: HttpRequest, obj: Organization) -> None:
        services.organization_delete(actor=request.user, organization=obj, by=request_actor(request))

    def get_deleted_objects(self, objs, request):
        # A soft delete: the rows stay for audit and nothing cascades, so there is nothing else to list.
        return [str(obj) for obj in objs], {}, set(), []


@admin.register(OrganizationMembership)
class OrganizationMembershipAdmin(ServiceAdmin):
    policy_actions = {
        "view": "organization:info",
        "add": "organization:member_manage",
        "change": "organization:member_manage",
        "delete": "organization:member_manage",
    }
    tenant_fields = {"org_field": "organization"}
    list_display = ("user", "organization", "user_role", "created_at")
    list_select_related = ("user", "organization")
    list_filter = ("user_role", ("organization", admin.RelatedOnlyFieldListFilter))
    search_fields = ("user__user_id", "user__user_email", "organization__organization_alias")
    autocomplete_fields = ("user", "organization")
    fields = ("user", "organization", "user_role")

    def fixed_readonly_fields(self, request: HttpRequest, obj: OrganizationMembership | None = None):
        return ("user", "organization") if obj is not None else ()

    def policy_target(self, obj: OrganizationMembership | None) -> policy.Target | None:
        return policy.Target(organization_id=str(obj.organization_id)) if obj is not None else None

    def create_target(self, request: HttpRequest, form: forms.BaseForm) -> policy.Target:
        organization = form.cleaned_data.get("organization")
        return policy.Target(organization_id=str(organization.pk) if organization is not None else None)

    def create(self, request: HttpRequest, form: forms.BaseForm) -> OrganizationMembership:
        data = form.cleaned_data
        return services.organization_member_add(
            actor=request.user, organization=data["organization"], user=data["user"], user_role=data["user_role"]
        )

    def update(self, request: HttpRequest, obj: OrganizationMembership, data: dict[str, Any]):
        return services.organization_member_update(
            actor=request.user, membership=obj, user_role=data.get("user_role")
        )

    def remove(self, request: HttpRequest, obj: OrganizationMembership) -> None:
        services.organization_member_delete(actor=request.user, membership=obj)


# --- teams ----------------------------------------------------------------------------------------


class TeamManagerInline(ServiceInline):
    """Users granted the right to manage the team without a membership (a guardian object permission)."""

    model = TeamUserObjectPermission
    fields = ("user",)
    verbose_name = "manager (granted)"
    verbose_name_plural = "managers (granted without membership)"
    write_action = "team:member_manage"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(permission__codename=MANAGE_TEAM).select_related("user")

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs: Any):
        if db_field.name == "user":
            return UserIdField(label="user")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_with_services(self, request: HttpRequest, formset: Any) -> None:
        self.require_parent(request, formset)
        team = formset.instance
        for obj in formset.deleted_objects:
            stored = TeamUserObjectPermission.objects.select_related("user").get(pk=obj.pk)
            services.team_revoke_manage(actor=request.user, team=team, user=stored.user)
        for obj, _changed in formset.changed_objects:
            stored = TeamUserObjectPermission.objects.select_related("user").get(pk=obj.pk)
            services.team_revoke_manage(actor=request.user, team=team, user=stored.user)
            services.team_grant_manage(actor=request.user, team=team, user=obj.user)
        for obj in formset.new_objects:
            services.team_grant_manage(actor=request.user, team=team, user=obj.user)


class TeamForm(forms.ModelForm):
    models = NameListField(
        required=False, help_text="Models the team's keys may use, one per line; empty means the organization's."
    )
    member_permissions = forms.MultipleChoiceField(
        required=False,
        choices=[(route, route) for route in TEAM_MEMBER_PERMISSIONS],
        widget=forms.CheckboxSelectMultiple,
        initial=list(DEFAULT_TEAM_MEMBER_PERMISSIONS),
        help_text="Key routes a member with role `user` may call on the team's keys.",
    )

    class Meta:
        model = Team
        fields = ("team_alias", "organization", "models", "member_permissions", "blocked", "metadata",
                  *BUDGET_FORM_FIELDS, "spend")


@admin.register(Team)
class TeamAdmin(ServiceAdmin):
    form = TeamForm
    policy_actions = {"view": "team:info", "add": "team:create", "change": "team:update", "delete": "team:delete"}
    tenant_fields = {"org_field": "organization", "team_field": "pk"}
    # Which fields need which action: the policy's one map (the team services ask the same).
    field_actions = policy.FIELD_ACTIONS["team"]
    actions = bulk_assign_actions("teams")
    list_display = ("team_alias", "team_id", "organization", "member_count", "key_count", "blocked", "max_budget",
                    "spend", "created_at")
    list_filter = ("blocked", ("organization", admin.RelatedOnlyFieldListFilter))
    search_fields = ("team_alias", "team_id", "organization__organization_alias")
    autocomplete_fields = ("organization",)
    readonly_fields = ("team_id", "access_group_ids", "budget_reset_at", "created_at", "created_by", "updated_at",
                       "updated_by")
    inlines = (TeamMemberInline, TeamManagerInline, TeamAccessGroupInline)
    fieldsets = (
        (None, {"fields": ("team_alias", "team_id", "organization", "blocked")}),
        ("Access", {"fields": ("models", "member_permissions", "access_group_ids")}),
        ("Budget", {"fields": (*BUDGET_FORM_FIELDS, "budget_reset_at", "spend")}),
        ("More", {"classes": ("collapse",), "fields": ("metadata", "created_at", "created_by", "updated_at",
                                                       "updated_by")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("organization")
            .annotate(member_count=count_of(TeamMembership, "team"), key_count=count_of(VirtualKey, "team"))
        )

    def policy_target(self, obj: Team | None) -> policy.Target | None:
        return policy.team_target(obj) if obj is not None else None

    def create_target(self, request: HttpRequest, form: forms.BaseForm) -> policy.Target:
        organization = form.cleaned_data.get("organization")
        return policy.Target(organization_id=str(organization.pk) if organization is not None else None)

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj: Team) -> int:
        return obj.member_count

    @admin.display(description="keys", ordering="key_count")
    def key_count(self, obj: Team) -> int:
        return obj.key_count

    def create(self, request: HttpRequest, form: forms.BaseForm) -> Team:
        data = _cleaned(form, services.TEAM_FIELDS)
        return services.team_create(actor=request.user, organization=data.pop("organization", None), **data)

    def update_checks(self, request: HttpRequest, stored: Team, data: dict[str, Any]):
        return []  # `team_update` authorizes every changed field (and a move to another organization) itself

    def update(self, request: HttpRequest, obj: Team, data: dict[str, Any]) -> Team:
        return services.team_update(actor=request.user, team=obj, data=data, by=request_actor(request))

    def remove(self, request: HttpRequest, obj: Team) -> None:
        services.team_delete(actor=request.user, team=obj, by=request_actor(request))


@admin.register(TeamMembership)
class TeamMembershipAdmin(ServiceAdmin):
    policy_actions = {
        "view": "team:info",
        "add": "team:member_manage",
        "change": "team:member_manage",
        "delete": "team:member_manage",
    }
    tenant_fields = {"org_field": "team__organization", "team_field": "team"}
    list_display = ("user", "team", "role", "organization", "created_at")
    list_filter = ("role", ("team", admin.RelatedOnlyFieldListFilter))
    search_fields = ("user__user_id", "user__user_email", "team__team_alias")
    autocomplete_fields = ("user", "team")
    fields = ("user", "team", "role")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # One place for the joins: the list shows them and the policy's team target reads the team.
        # (A queryset that already selects related rows makes the changelist ignore list_select_related.)
        return super().get_queryset(request).select_related("user", "team", "team__organization")

    def fixed_readonly_fields(self, request: HttpRequest, obj: TeamMembership | None = None):
        return ("user", "team") if obj is not None else ()

    def policy_target(self, obj: TeamMembership | None) -> policy.Target | None:
        return policy.team_target(obj.team) if obj is not None else None

    def create_target(self, request: HttpRequest, form: forms.BaseForm) -> policy.Target | None:
        team = form.cleaned_data.get("team")
        return policy.team_target(team) if team is not None else None

    @admin.display(description="organization", ordering="team__organization__organization_alias")
    def organization(self, obj: TeamMembership) -> Organization | None:
        return obj.team.organization

    def create(self, request: HttpRequest, form: forms.BaseForm) -> TeamMembership:
        data = form.cleaned_data
        return services.team_member_add(actor=request.user, team=data["team"], user=data["user"], role=data["role"])

    def update(self, request: HttpRequest, obj: TeamMembership, data: dict[str, Any]) -> TeamMembership:
        return services.team_member_update(actor=request.user, membership=obj, role=data.get("role"))

    def remove(self, request: HttpRequest, obj: TeamMembership) -> None:
        services.team_member_delete(actor=request.user, membership=obj)


# --- audit log ------------------------------------------------------------------------------------


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Every management write, as recorded by the services. Never added, changed or deleted here."""

    policy_actions = {"view": "audit:read"}
    tenant_fields = {"org_field": "organization_id"}
    list_display = ("created_at", "actor_id", "action", "object_type", "object_id", "organization_id")
    list_filter = ("action", "object_type", "created_at")
    search_fields = ("actor_id", "action", "object_id")
    fields = ("created_at", "actor_id", "action", "object_type", "object_id", "organization_id", "before_json",
              "after_json")
    readonly_fields = fields
    show_full_result_count = False  # the audit log grows without bound; skip the second COUNT(*)

    @admin.display(description="before")
    def before_json(self, obj: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.before, indent=2, sort_keys=True))

    @admin.display(description="after")
    def after_json(self, obj: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.after, indent=2, sort_keys=True))


