"""Admin for access groups, their team and key assignments, and the catalog of models, MCP servers and agents."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accessctl import policy
from accessctl.admin import (
    ReadOnlyAdmin,
    ServiceAdmin,
    ServiceInline,
    admin_tenant,
    request_actor,
    wanted_related_ids,
)
from accessctl.admin_forms import NameListField
from accessctl.errors import ServiceError
from accessgroups import services
from accessgroups.bulk import (
    KEYS,
    TEAMS,
    Selection,
    bulk_assign,
    bulk_assign_start,
    bulk_job_resume,
    job_group_target,
    job_stalled,
)
from accessgroups.models import (
    AccessGroup,
    Agent,
    BulkJob,
    CatalogModel,
    KeyAccessGroup,
    MCPServer,
    TeamAccessGroup,
)
from accessgroups.selectors import ASSIGNED_IDS_LIMIT
from keys import services as key_services
from orgs import services as org_services

# Selections larger than this run as a background bulk job (Celery) whose progress the admin shows.
BULK_JOB_THRESHOLD = 500

ASSIGN_ACTIONS = {
    "view": "access_group:read",
    "add": "access_group:assign",
    "delete": "access_group:assign",
}

# --- access group names and bulk assignment (shared by the key and team admins) -----------------------


def group_names(request: HttpRequest, group_ids: Iterable[Any]) -> list[str]:
    """The names of access groups by id, read in one query per request (for list columns)."""
    names = getattr(request, "_accessctl_group_names", None)
    if names is None:
        names = {str(pk): name for pk, name in AccessGroup.objects.values_list("access_group_id", "access_group_name")}
        request._accessctl_group_names = names
    return sorted(names.get(str(pk), str(pk)) for pk in group_ids)


def assignable_groups(request: HttpRequest) -> QuerySet:
    """The access groups the user may assign: visible to them, and `access_group:assign` allowed."""
    actor = request_actor(request)
    visible = admin.site._registry[AccessGroup].get_queryset(request)
    if actor.is_proxy_admin:
        return visible
    allowed = [g.pk for g in visible if policy.can(actor, "access_group:assign", policy.access_group_target(g))]
    return visible.filter(pk__in=allowed)


class BulkAssignForm(forms.Form):
    access_groups = forms.ModelMultipleChoiceField(
        queryset=AccessGroup.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        help_text="The groups to add to (or remove from) every selected row.",
    )

    def __init__(self, *args: Any, groups: QuerySet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["access_groups"].queryset = groups


# The policy action each selected row needs: a key's access groups, a team's limits.
_ROW_ACTION = {KEYS: "key:assign_access_groups", TEAMS: "team:update_limits"}


def _bulk_action(target: str, unassign: bool):
    verb = "Remove access groups from" if unassign else "Assign access groups to"

    def action(model_admin: ServiceAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return run_bulk_assignment(model_admin, request, queryset, target=target, unassign=unassign)

    action.__name__ = f"{'unassign' if unassign else 'assign'}_access_groups"
    return admin.action(description=f"{verb} the selected {target}", permissions=["change"])(action)


def bulk_assign_actions(target: str) -> tuple[Any, Any]:
    """The admin actions "assign / remove access groups" for the selected keys or teams."""
    return (_bulk_action(target, unassign=False), _bulk_action(target, unassign=True))


def run_bulk_assignment(
    model_admin: ServiceAdmin, request: HttpRequest, queryset: QuerySet, *, target: str, unassign: bool
) -> HttpResponse | None:
    """First an intermediate page choosing the groups; then the assignment, through the bulk service.

    Each selected row must allow the change (the policy, per row) and each group its assignment. Small
    selections run at once; larger ones start a background job and open its progress page.
    """
    groups = assignable_groups(request)
    form = BulkAssignForm(request.POST if "apply" in request.POST else None, groups=groups)
    if form.is_bound and form.is_valid():
        actor = request_actor(request)
        action = _ROW_ACTION[target]
        rows = list(queryset)
        allowed = [row for row in rows if policy.can(actor, action, model_admin.policy_target(row))]
        for row in rows[:20]:
            if row not in allowed:
                verdict = policy.can(actor, action, model_admin.policy_target(row))
                model_admin.message_user(request, f"{row}: {verdict.message}", messages.ERROR)
        if not allowed:
            return None
        chosen = list(form.cleaned_data["access_groups"])
        refs = [str(g.pk) for g in chosen]
        selection = Selection(ids=tuple(str(row.pk) for row in allowed))
        try:
            if len(allowed) > BULK_JOB_THRESHOLD:
                job = bulk_assign_start(actor=request.user, target=target, group_refs=refs, selection=selection,
                                        unassign=unassign)
                model_admin.message_user(
                    request, f"Started a background job for {len(allowed)} {target}.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:accessgroups_bulkjob_change", args=[job.pk]))
            result = bulk_assign(actor=request.user, target=target, group_refs=refs, selection=selection,
                                 unassign=unassign)
        except ServiceError as exc:
            model_admin.message_user(request, exc.message, messages.ERROR)
            return None
        names = ", ".join(g.access_group_name for g in chosen)
        done = "Removed" if unassign else "Assigned"
        model_admin.message_user(
            request,
            f"{done} {names}: {result.changed} {target} changed, {result.unchanged} already were so.",
            messages.SUCCESS,
        )
        return None
    selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": ("Remove access groups from" if unassign else "Assign access groups to") + f" {target}",
        "opts": model_admin.opts,
        "form": form,
        "count": len(selected) if request.POST.get("select_across") != "1" else queryset.count(),
        "target": target,
        "selected": selected,
        "select_across": request.POST.get("select_across", "0"),
        "action": request.POST.get("action"),
        "threshold": BULK_JOB_THRESHOLD,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "no_groups": not groups.exists(),
    }
    return TemplateResponse(request, "admin/accessgroups/bulk_assign.html", context)


# --- assignment inlines (on the team, key and group pages) --------------------------------------------


class GroupChoosingInline(ServiceInline):
    """An inline that chooses the access groups of its parent (a team or a key), saved as one update of the
    parent's `access_group_ids` through the parent's service; editable only by who may also see the groups."""

    fields = ("access_group",)
    autocomplete_fields = ("access_group",)
    verbose_name = "access group"

    def has_add_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        groups_admin = self.admin_site._registry[AccessGroup]
        return super().has_add_permission(request, obj) and groups_admin.has_view_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("access_group")

    def update_parent(self, request: HttpRequest, parent: Any, group_ids: list[str]) -> None:
        raise NotImplementedError

    def save_with_services(self, request: HttpRequest, formset: Any) -> None:
        current, wanted = wanted_related_ids(formset, "access_group")
        if wanted != current:
            self.require_parent(request, formset)
            self.update_parent(request, formset.instance, sorted(map(str, wanted)))


class TeamAccessGroupInline(GroupChoosingInline):
    """A team's access groups, on the team's page; saved as one `team_update(access_group_ids=...)`."""

    model = TeamAccessGroup
    write_action = "team:update_limits"

    def update_parent(self, request: HttpRequest, parent: Any, group_ids: list[str]) -> None:
        org_services.team_update(actor=request.user, team=parent, data={"access_group_ids": group_ids})


class KeyAccessGroupInline(GroupChoosingInline):
    """A key's access groups, on the key's page; saved as one `key_update(access_group_ids=...)`."""

    model = KeyAccessGroup
    write_action = "key:assign_access_groups"

    def update_parent(self, request: HttpRequest, parent: Any, group_ids: list[str]) -> None:
        key_services.key_update(actor=request.user, key=parent, data={"access_group_ids": group_ids})


class GroupTeamInline(ServiceInline):
    """The teams of a group, on the group's page; saved as one `access_group_update(assigned_team_ids=...)`."""

    model = TeamAccessGroup
    fields = ("team",)
    autocomplete_fields = ("team",)
    verbose_name = "assigned team"
    write_action = "access_group:assign"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("team")

    def save_with_services(self, request: HttpRequest, formset: Any) -> None:
        current, wanted = wanted_related_ids(formset, "team")
        if wanted != current:
            self.require_parent(request, formset)
            services.access_group_update(
                actor=request.user, group=formset.instance, data={"assigned_team_ids": sorted(map(str, wanted))}
            )


# --- access groups ----------------------------------------------------------------------------------


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


# --- catalog ------------------------------------------------------------------------------------------


class CatalogAdmin(ServiceAdmin):
    """Catalog rows are keyed by their natural id (fixed after creation) and written by `catalog_upsert`."""

    kind: str = ""
    natural: str = ""
    policy_actions = {"view": "catalog:read", "add": "catalog:write", "change": "catalog:write",
                      "delete": "catalog:write"}
    list_filter = ("active",)
    actions = ("activate", "deactivate")

    def fixed_readonly_fields(self, request: HttpRequest, obj: Any | None = None) -> tuple[str, ...]:
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
            "catalog:write",
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



# --- bulk assignment jobs -------------------------------------------------------------------------------


@admin.register(BulkJob)
class BulkJobAdmin(ReadOnlyAdmin):
    """Background bulk assignments (started here or by the API): their progress, then their result."""

    policy_actions = {"view": "access_group:read"}
    tenant_fields = {"org_field": "organization"}
    list_display = ("created_at", "operation", "target", "status", "progress", "matched", "changed",
                    "requested_by", "organization")
    list_select_related = ("organization",)
    list_filter = ("status", "operation", "target")
    search_fields = ("requested_by",)
    fields = ("job_id", "status", "progress", "stalled", "heartbeat_at", "operation", "target", "access_group_ids", "selection_summary",
              "dry_run", "organization", "requested_by", "matched", "processed", "changed", "result", "error",
              "created_at", "started_at", "finished_at")
    readonly_fields = fields
    show_full_result_count = False

    def policy_target(self, obj: BulkJob | None) -> policy.Target | None:
        if obj is None:
            return None
        return policy.Target(organization_id=str(obj.organization_id) if obj.organization_id else None,
                             is_global=obj.organization_id is None)

    @admin.display(description="progress")
    def progress(self, obj: BulkJob) -> str:
        share = 1.0 if obj.status == BulkJob.SUCCEEDED else (obj.processed / obj.matched if obj.matched else 0.0)
        percent = round(100 * share)
        return format_html('<progress max="100" value="{}"></progress> {} %', percent, percent)

    @admin.display(description="selection")
    def selection_summary(self, obj: BulkJob) -> str:
        ids = obj.selection.get("ids") or []
        rest = {k: v for k, v in obj.selection.items() if k != "ids"}
        return f"{len(ids)} ids" + (f", {rest}" if rest else "") if ids else str(rest)

    @admin.display(description="stalled", boolean=True)
    def stalled(self, obj: BulkJob) -> bool:
        return job_stalled(obj)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # The page reloads itself while the job runs, so its progress is seen moving; a stalled job stops
        # reloading and offers to resume it (to those who may start such a job).
        stalled = obj is not None and job_stalled(obj)
        running = obj is not None and obj.status in (BulkJob.QUEUED, BulkJob.RUNNING)
        context["refresh_seconds"] = 2 if running and not stalled else 0
        context["job_stalled"] = stalled
        context["can_resume"] = stalled and self._may_resume(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _may_resume(self, request: HttpRequest, job: BulkJob) -> bool:
        try:
            target = job_group_target(job)
        except ServiceError:
            return False
        return policy.can(request_actor(request), "access_group:assign", target).allowed

    def get_urls(self):
        resume = path(
            "<path:object_id>/resume/", self.admin_site.admin_view(self.resume_view), name="accessgroups_bulkjob_resume"
        )
        return [resume, *super().get_urls()]

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: queue a stalled job again (authorized as starting it); it continues after its last batch."""
        job = self.get_object(request, object_id)
        if job is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:accessgroups_bulkjob_change", args=[job.pk]))
        try:
            verdict = policy.can(request_actor(request), "access_group:assign", job_group_target(job))
            if not verdict:
                raise PermissionDenied(verdict.message)
            bulk_job_resume(actor=request.user, job=job)
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, "The job was queued again; it continues after its last completed batch.")
        return HttpResponseRedirect(reverse("admin:accessgroups_bulkjob_change", args=[job.pk]))
