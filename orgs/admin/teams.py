"""The team pages, their managers and memberships."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accessctl import policy
from accessctl.admin import ServiceAdmin, ServiceInline, request_actor
from accessctl.admin_forms import NameListField, UserIdField
from accessctl.roles import DEFAULT_TEAM_MEMBER_PERMISSIONS, TEAM_MEMBER_PERMISSIONS
from accessgroups.admin.assignment import TeamAccessGroupInline, bulk_assign_actions
from keys.models import VirtualKey
from orgs import services
from orgs.models import (
    MANAGE_TEAM,
    Organization,
    Team,
    TeamMembership,
    TeamUserObjectPermission,
)

from .common import (
    BUDGET_FORM_FIELDS,
    TeamMemberInline,
    _cleaned,
    count_of,
)


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
