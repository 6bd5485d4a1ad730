"""The access group pages, their filters, and the pages of team and key assignments."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accessctl import policy
from accessctl.admin import (
    ServiceAdmin,
    admin_tenant,
    request_actor,
)
from accessctl.admin_forms import NameListField
from accessgroups import services
from accessgroups.models import (
    AccessGroup,
    KeyAccessGroup,
    TeamAccessGroup,
)
from accessgroups.selectors import ASSIGNED_IDS_LIMIT

from .assignment import (
    ASSIGN_ACTIONS,
    GroupTeamInline,
)


def visible_groups(request: HttpRequest, queryset: QuerySet) -> QuerySet:
    """The groups of the admin's tenant: an org admin's organizations' groups, and the global ones."""
    tenant = admin_tenant(request)
    if tenant.bypass:
        return queryset
    own = tenant.scope(queryset, org_field="organization")
    if tenant.actor.admin_org_ids:
        return queryset.filter(Q(pk__in=own.values("pk")) | Q(organization__isnull=True))
    return own


class KeyAccessGroupFilter(admin.SimpleListFilter):
    """`?access_group=<id>` on the key list: the keys of one group (the group page links here). Offered only
    once chosen: a sidebar listing every group would not scale, and the group page is where one starts."""

    title = "access group"
    parameter_name = "access_group"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        if not value:
            return []
        group = visible_groups(request, AccessGroup.objects.all()).filter(pk=value).first() if _is_id(value) else None
        return [(value, group.access_group_name if group is not None else value)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        if not _is_id(value):
            return queryset.none()
        return queryset.filter(pk__in=KeyAccessGroup.objects.filter(access_group_id=value).values("key_id"))


def _is_id(value: str) -> bool:
    try:
        AccessGroup._meta.pk.to_python(value)
    except Exception:  # noqa: BLE001 - any malformed id: nothing matches
        return False
    return True


class OwnerFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request, model_admin):
        return (("global", "Global"), ("organization", "An organization"))

    def queryset(self, request, queryset):
        if self.value() == "global":
            return queryset.filter(organization__isnull=True)
        if self.value() == "organization":
            return queryset.filter(organization__isnull=False)
        return queryset


class AccessGroupForm(forms.ModelForm):
    access_model_names = NameListField(required=False, help_text="Model names, one per line (patterns allowed).")
    access_mcp_server_ids = NameListField(required=False, help_text="MCP server ids, one per line.")
    access_agent_ids = NameListField(required=False, help_text="Agent ids, one per line.")

    class Meta:
        model = AccessGroup
        # The owner is cleaned before the name, so the name's uniqueness can be checked per owner.
        fields = ("organization", "access_group_name", "description", "access_model_names", "access_mcp_server_ids",
                  "access_agent_ids")

    def clean_access_group_name(self) -> str:
        # Said on the name field (as the service's 409 would), not as a form-wide constraint message.
        name = self.cleaned_data["access_group_name"].strip()
        owner = self.instance.organization if not self.instance._state.adding else self.cleaned_data.get("organization")
        clash = AccessGroup.objects.annotate(lname=Lower("access_group_name")).filter(
            lname=name.lower(), organization=owner
        )
        if clash.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"Access group '{name}' already exists")
        return name


@admin.register(AccessGroup)
class AccessGroupAdmin(ServiceAdmin):
    form = AccessGroupForm
    policy_actions = {
        "view": "access_group:read",
        "add": "access_group:create",
        "change": "access_group:update",
        "delete": "access_group:delete",
    }
    tenant_fields = {"org_field": "organization"}
    list_display = ("access_group_name", "owner", "model_count", "team_count", "key_count", "created_at")
    list_select_related = ("organization",)
    list_filter = (OwnerFilter, ("organization", admin.RelatedOnlyFieldListFilter))
    search_fields = ("access_group_name", "description", "access_group_id")
    autocomplete_fields = ("organization",)
    inlines = (GroupTeamInline,)
    fieldsets = (
        (None, {"fields": ("access_group_name", "access_group_id", "organization", "description")}),
        ("Grants", {"fields": ("access_model_names", "access_mcp_server_ids", "access_agent_ids")}),
        ("Assigned", {"fields": ("assigned_teams", "assigned_keys")}),
        ("More", {"classes": ("collapse",), "fields": ("created_at", "created_by", "updated_at", "updated_by")}),
    )

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        # An org admin sees their organizations' groups, and the global ones (read-only, by the policy).
        return visible_groups(request, queryset)

    def get_inlines(self, request: HttpRequest, obj: AccessGroup | None) -> tuple:
        # The teams inline edits the whole list: only while it is short. Above, the link lists them.
        if obj is not None and obj.assigned_team_count > ASSIGNED_IDS_LIMIT:
            return ()
        return super().get_inlines(request, obj)

    def fixed_readonly_fields(self, request: HttpRequest, obj: AccessGroup | None = None) -> tuple[str, ...]:
        fixed = ("access_group_id", "assigned_teams", "assigned_keys", "created_at", "created_by",
                 "updated_at", "updated_by")
        # The owner is fixed at creation: moving a group between tenants would leak its assignments.
        return (*fixed, "organization") if obj is not None else fixed

    def policy_target(self, obj: AccessGroup | None) -> policy.Target | None:
        return policy.access_group_target(obj) if obj is not None else None

    def create_target(self, request: HttpRequest, form: forms.BaseForm) -> policy.Target:
        organization = form.cleaned_data.get("organization")
        if organization is None:
            return policy.Target(is_global=True)
        return policy.Target(organization_id=str(organization.pk))

    @admin.display(description="owner", ordering="organization__organization_alias")
    def owner(self, obj: AccessGroup) -> str:
        return str(obj.organization) if obj.organization_id else "global"

    @admin.display(description="models")
    def model_count(self, obj: AccessGroup) -> int:
        return len(obj.access_model_names or ())

    @admin.display(description="teams", ordering="assigned_team_count")
    def team_count(self, obj: AccessGroup) -> int:
        return obj.assigned_team_count

    @admin.display(description="keys", ordering="assigned_key_count")
    def key_count(self, obj: AccessGroup) -> int:
        return obj.assigned_key_count

    @admin.display(description="assigned teams")
    def assigned_teams(self, obj: AccessGroup) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:accessgroups_teamaccessgroup_changelist")
        return format_html('<a href="{}?access_group__access_group_id__exact={}">{} teams</a>', url,
                           obj.access_group_id, f"{obj.assigned_team_count:,}")

    @admin.display(description="assigned keys")
    def assigned_keys(self, obj: AccessGroup) -> str:
        # A group may hold a million keys: its count, and a link to the key list filtered by the group.
        if obj.pk is None:
            return "-"
        url = reverse("admin:keys_virtualkey_changelist")
        return format_html('<a href="{}?access_group={}">{} keys</a>', url, obj.access_group_id,
                           f"{obj.assigned_key_count:,}")

    def create(self, request: HttpRequest, form: forms.BaseForm) -> AccessGroup:
        data = form.cleaned_data
        return services.access_group_create(
            actor=request.user,
            by=request_actor(request),
            access_group_name=data["access_group_name"],
            organization=data.get("organization"),
            description=data.get("description") or "",
            access_model_names=data.get("access_model_names"),
            access_mcp_server_ids=data.get("access_mcp_server_ids"),
            access_agent_ids=data.get("access_agent_ids"),
        )

    def update(self, request: HttpRequest, obj: AccessGroup, data: dict[str, Any]) -> AccessGroup:
        return services.access_group_update(actor=request.user, group=obj, data=data, by=request_actor(request))

    def remove(self, request: HttpRequest, obj: AccessGroup) -> None:
        services.access_group_delete(actor=request.user, group=obj, by=request_actor(request))


class AssignmentAdmin(ServiceAdmin):
    """Assignment rows are added or removed, never edited (remove one and add another instead)."""

    policy_actions = ASSIGN_ACTIONS
    target_field: str  # "team" or "key": the assigned side, also the services' `teams=`/`keys=` argument
    related: tuple[str, ...]  # what the list shows and the policy reads

    def policy_target(self, obj: Any | None) -> policy.Target | None:
        return policy.access_group_target(obj.access_group) if obj is not None else None

    def create_target(self, request: HttpRequest, form: forms.BaseForm) -> policy.Target | None:
        group = form.cleaned_data.get("access_group")
        return policy.access_group_target(group) if group is not None else None

    def fixed_readonly_fields(self, request: HttpRequest, obj: Any | None = None) -> tuple[str, ...]:
        return tuple(self.fields) if obj is not None else ()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The changelist would ignore list_select_related here.
        return super().get_queryset(request).select_related("access_group", *self.related)

    def create(self, request: HttpRequest, form: forms.BaseForm) -> Any:
        group, target = form.cleaned_data["access_group"], form.cleaned_data[self.target_field]
        services.access_group_assign(actor=request.user, by=request_actor(request), group=group,
                                     **{f"{self.target_field}s": [target]})
        return self.model.objects.get(access_group=group, **{self.target_field: target})

    def remove(self, request: HttpRequest, obj: Any) -> None:
        target = getattr(obj, self.target_field)
        services.access_group_unassign(actor=request.user, by=request_actor(request), group=obj.access_group,
                                       **{f"{self.target_field}s": [target]})


@admin.register(TeamAccessGroup)
class TeamAccessGroupAdmin(AssignmentAdmin):
    tenant_fields = {"org_field": "team__organization", "team_field": "team"}
    list_display = ("access_group", "team", "organization", "created_at")
    list_filter = (("access_group", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("access_group__access_group_name", "team__team_alias", "team__team_id")
    autocomplete_fields = ("access_group", "team")
    fields = ("access_group", "team")
    target_field, related = "team", ("team", "team__organization")

    @admin.display(description="organization")
    def organization(self, obj: TeamAccessGroup) -> Any:
        return obj.team.organization


@admin.register(KeyAccessGroup)
class KeyAccessGroupAdmin(AssignmentAdmin):
    tenant_fields = {"org_field": "key__organization", "team_field": "key__team"}
    list_display = ("access_group", "key", "key_team", "created_at")
    list_filter = (("access_group", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("access_group__access_group_name", "key__key_alias", "key__key_name", "key__token")
    autocomplete_fields = ("access_group", "key")
    fields = ("access_group", "key")
    target_field, related = "key", ("key", "key__team")

    @admin.display(description="team")
    def key_team(self, obj: KeyAccessGroup) -> Any:
        return obj.key.team
