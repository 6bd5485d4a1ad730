"""Assigning access groups, shared by the key, team and group pages: the bulk actions (a background job
above BULK_JOB_THRESHOLD rows) and the assignment inlines."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from accessctl import policy
from accessctl.admin import (
    ServiceAdmin,
    ServiceInline,
    request_actor,
    wanted_related_ids,
)
from accessctl.errors import ServiceError
from accessgroups import services
from accessgroups.bulk import KEYS, Selection, bulk_assign
from accessgroups.bulk_jobs import bulk_assign_start
from accessgroups.bulk_sql import TEAMS
from accessgroups.models import (
    AccessGroup,
    KeyAccessGroup,
    TeamAccessGroup,
)
from keys import services as key_services
from orgs import services as org_services

# Selections larger than this run as a background bulk job (Celery) whose progress the admin shows.
BULK_JOB_THRESHOLD = 500

ASSIGN_ACTIONS = {
    "view": "access_group:read",
    "add": "access_group:assign",
    "delete": "access_group:assign",
}

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
