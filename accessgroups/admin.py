"""Admin for access groups, their team and key assignments, and the catalog of models, MCP servers and agents."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.db.models.functions import Lower
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accessctl import policy
from accessctl.admin import NameListField, ServiceAdmin, ServiceInline, wanted_related_ids
from accessgroups import services
from accessgroups.models import AccessGroup, Agent, CatalogModel, KeyAccessGroup, MCPServer, TeamAccessGroup
from keys import services as key_services
from orgs import services as org_services

ASSIGN_ACTIONS = {
    "view": "access_group:read",
    "add": "access_group:assign",
    "delete": "access_group:assign",
}

# --- assignment inlines (on the team, key and group pages) --------------------------------------------


class TeamAccessGroupInline(ServiceInline):
    """A team's access groups, on the team's page; saved as one `team_update(access_group_ids=...)`."""

    model = TeamAccessGroup
    fields = ("access_group",)
    autocomplete_fields = ("access_group",)
    verbose_name = "access group"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("access_group")

    def save_with_services(self, request: HttpRequest, formset: Any) -> None:
        current, wanted = wanted_related_ids(formset, "access_group")
        if wanted != current:
            org_services.team_update(
                actor=request.user, team=formset.instance, data={"access_group_ids": sorted(map(str, wanted))}
            )


class KeyAccessGroupInline(ServiceInline):
    """A key's access groups, on the key's page; saved as one `key_update(access_group_ids=...)`."""

    model = KeyAccessGroup
    fields = ("access_group",)
    autocomplete_fields = ("access_group",)
    verbose_name = "access group"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("access_group")

    def save_with_services(self, request: HttpRequest, formset: Any) -> None:
        current, wanted = wanted_related_ids(formset, "access_group")
        if wanted != current:
            key_services.key_update(
                actor=request.user, key=formset.instance, data={"access_group_ids": sorted(map(str, wanted))}
            )


class GroupTeamInline(ServiceInline):
    """The teams of a group, on the group's page; saved as one `access_group_update(assigned_team_ids=...)`."""

    model = TeamAccessGroup
    fields = ("team",)
    autocomplete_fields = ("team",)
    verbose_name = "assigned team"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("team")

    def save_with_services(self, request: HttpRequest, formset: Any) -> None:
        current, wanted = wanted_related_ids(formset, "team")
        if wanted != current:
            services.access_group_update(
                actor=request.user, group=formset.instance, data={"assigned_team_ids": sorted(map(str, wanted))}
            )


# --- access groups ----------------------------------------------------------------------------------


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
    list_display = ("access_group_name", "owner", "model_count", "team_count", "key_count", "created_at")
    list_select_related = ("organization",)
    list_filter = (OwnerFilter, ("organization", admin.RelatedOnlyFieldListFilter))
    search_fields = ("access_group_name", "description", "access_group_id")
    autocomplete_fields = ("organization",)
    inlines = (GroupTeamInline,)
    fieldsets = (
        (None, {"fields": ("access_group_name", "access_group_id", "organization", "description")}),
        ("Grants", {"fields": ("access_model_names", "access_mcp_server_ids", "access_agent_ids")}),
        ("Assigned", {"fields": ("assigned_team_ids", "assigned_keys")}),
        ("More", {"classes": ("collapse",), "fields": ("created_at", "created_by", "updated_at", "updated_by")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: AccessGroup | None = None) -> tuple[str, ...]:
        fixed = ("access_group_id", "assigned_team_ids", "assigned_keys", "created_at", "created_by",
                 "updated_at", "updated_by")
        # The owner is fixed at creation: moving a group between tenants would leak its assignments.
        return (*fixed, "organization") if obj is not None else fixed

    def policy_target(self, obj: AccessGroup | None) -> policy.Target | None:
        return policy.access_group_target(obj) if obj is not None else None

    @admin.display(description="owner", ordering="organization__organization_alias")
    def owner(self, obj: AccessGroup) -> str:
        return str(obj.organization) if obj.organization_id else "global"

    @admin.display(description="models")
    def model_count(self, obj: AccessGroup) -> int:
        return len(obj.access_model_names or ())

    @admin.display(description="teams")
    def team_count(self, obj: AccessGroup) -> int:
        return len(obj.assigned_team_ids or ())

    @admin.display(description="keys")
    def key_count(self, obj: AccessGroup) -> int:
        return len(obj.assigned_key_ids or ())

    @admin.display(description="assigned keys")
    def assigned_keys(self, obj: AccessGroup) -> str:
        # A group may hold thousands of keys: link to the filtered assignment list instead of an inline.
        url = reverse("admin:accessgroups_keyaccessgroup_changelist")
        return format_html(
            '<a href="{}?access_group__access_group_id__exact={}">{} keys</a>',
            url,
            obj.access_group_id,
            len(obj.assigned_key_ids or ()),
        )

    def create(self, request: HttpRequest, form: forms.BaseForm) -> AccessGroup:
        data = form.cleaned_data
        return services.access_group_create(
            actor=request.user,
            access_group_name=data["access_group_name"],
            organization=data.get("organization"),
            description=data.get("description") or "",
            access_model_names=data.get("access_model_names"),
            access_mcp_server_ids=data.get("access_mcp_server_ids"),
            access_agent_ids=data.get("access_agent_ids"),
        )

    def update(self, request: HttpRequest, obj: AccessGroup, data: dict[str, Any]) -> AccessGroup:
        return services.access_group_update(actor=request.user, group=obj, data=data)

    def remove(self, request: HttpRequest, obj: AccessGroup) -> None:
        services.access_group_delete(actor=request.user, group=obj)


class AssignmentAdmin(ServiceAdmin):
    """Assignment rows are added or removed, never edited (remove one and add another instead)."""

    policy_actions = ASSIGN_ACTIONS

    def policy_target(self, obj: Any | None) -> policy.Target | None:
        return policy.access_group_target(obj.access_group) if obj is not None else None

    def get_readonly_fields(self, request: HttpRequest, obj: Any | None = None) -> tuple[str, ...]:
        return tuple(self.fields) if obj is not None else ()


@admin.register(TeamAccessGroup)
class TeamAccessGroupAdmin(AssignmentAdmin):
    list_display = ("access_group", "team", "organization", "created_at")
    list_filter = (("access_group", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("access_group__access_group_name", "team__team_alias", "team__team_id")
    autocomplete_fields = ("access_group", "team")
    fields = ("access_group", "team")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The list shows these and the policy reads the group; the changelist would ignore list_select_related.
        return super().get_queryset(request).select_related("access_group", "team", "team__organization")

    @admin.display(description="organization")
    def organization(self, obj: TeamAccessGroup) -> Any:
        return obj.team.organization

    def create(self, request: HttpRequest, form: forms.BaseForm) -> TeamAccessGroup:
        group, team = form.cleaned_data["access_group"], form.cleaned_data["team"]
        services.access_group_assign(actor=request.user, group=group, teams=[team])
        return TeamAccessGroup.objects.get(access_group=group, team=team)

    def remove(self, request: HttpRequest, obj: TeamAccessGroup) -> None:
        services.access_group_unassign(actor=request.user, group=obj.access_group, teams=[obj.team])


@admin.register(KeyAccessGroup)
class KeyAccessGroupAdmin(AssignmentAdmin):
    list_display = ("access_group", "key", "key_team", "created_at")
    list_filter = (("access_group", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("access_group__access_group_name", "key__key_alias", "key__key_name", "key__token")
    autocomplete_fields = ("access_group", "key")
    fields = ("access_group", "key")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The list shows these and the policy reads the group; the changelist would ignore list_select_related.
        return super().get_queryset(request).select_related("access_group", "key", "key__team")

    @admin.display(description="team")
    def key_team(self, obj: KeyAccessGroup) -> Any:
        return obj.key.team

    def create(self, request: HttpRequest, form: forms.BaseForm) -> KeyAccessGroup:
        group, key = form.cleaned_data["access_group"], form.cleaned_data["key"]
        services.access_group_assign(actor=request.user, group=group, keys=[key])
        return KeyAccessGroup.objects.get(access_group=group, key=key)

    def remove(self, request: HttpRequest, obj: KeyAccessGroup) -> None:
        services.access_group_unassign(actor=request.user, group=obj.access_group, keys=[obj.key])


# --- catalog ------------------------------------------------------------------------------------------


class CatalogAdmin(ServiceAdmin):
    """Catalog rows are keyed by their natural id (fixed after creation) and written by `catalog_upsert`."""

    kind: str = ""
    natural: str = ""
    policy_actions = {"view": "catalog:read", "add": "catalog:write", "change": "catalog:write",
                      "delete": "catalog:write"}
    list_filter = ("active",)
    actions = ("activate", "deactivate")

    def get_readonly_fields(self, request: HttpRequest, obj: Any | None = None) -> tuple[str, ...]:
        return (self.natural, "created_at") if obj is not None else ("created_at",)

    def create(self, request: HttpRequest, form: forms.BaseForm) -> Any:
        return services.catalog_upsert(actor=request.user, kind=self.kind, data=dict(form.cleaned_data))

    def update(self, request: HttpRequest, obj: Any, data: dict[str, Any]) -> Any:
        return services.catalog_upsert(
            actor=request.user, kind=self.kind, data={**data, self.natural: getattr(obj, self.natural)}
        )

    def remove(self, request: HttpRequest, obj: Any) -> None:
        services.catalog_delete(actor=request.user, kind=self.kind, row=obj)

    def _set_active(self, request: HttpRequest, queryset: QuerySet, active: bool) -> None:
        self.each_through_service(
            request,
            queryset.exclude(active=active),
            lambda row: self.update(request, row, {"active": active}),
            ("Activated" if active else "Deactivated") + " {count} entries.",
        )

    @admin.action(description="Activate the selected entries", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_active(request, queryset, True)

    @admin.action(description="Deactivate the selected entries", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_active(request, queryset, False)


@admin.register(CatalogModel)
class CatalogModelAdmin(CatalogAdmin):
    kind, natural = "model", "model_name"
    list_display = ("model_name", "provider", "active", "created_at")
    list_filter = ("active", "provider")
    search_fields = ("model_name", "provider", "description")
    fields = ("model_name", "provider", "description", "active", "created_at")


@admin.register(MCPServer)
class MCPServerAdmin(CatalogAdmin):
    kind, natural = "mcp_server", "server_id"
    list_display = ("server_id", "name", "active", "created_at")
    search_fields = ("server_id", "name", "description")
    fields = ("server_id", "name", "description", "active", "created_at")


@admin.register(Agent)
class AgentAdmin(CatalogAdmin):
    kind, natural = "agent", "agent_id"
    list_display = ("agent_id", "name", "active", "created_at")
    search_fields = ("agent_id", "name", "description")
    fields = ("agent_id", "name", "description", "active", "created_at")

