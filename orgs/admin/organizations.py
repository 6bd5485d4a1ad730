"""The organization pages and their memberships."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accessctl import policy
from accessctl.admin import ServiceAdmin, request_actor
from accessctl.admin_forms import BoundedJSONFormField, NameListField
from orgs import services
from orgs.models import (
    Organization,
    OrganizationMembership,
    Team,
)

from .common import (
    BUDGET_FORM_FIELDS,
    OrganizationMemberInline,
    _cleaned,
    count_of,
)


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
