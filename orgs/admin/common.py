"""What the user, organization and team pages share: budget fields, counts, membership inlines."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from accessctl.admin import (
    ServiceInline,
)
from orgs import services
from orgs.models import (
    OrganizationMembership,
    TeamMembership,
)

# Roles are data on users and memberships (accessctl/roles.py); Django's groups would grant nothing here.
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
