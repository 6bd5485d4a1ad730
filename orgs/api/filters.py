"""Query-string filters of the REST lists (django-filter); a malformed value is a 400 naming the filter."""
from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters

from accessctl.rest import CharInFilter, IdFilter, IdInFilter, UTCDateTimeFilter
from accessctl.roles import ORG_ROLE_CHOICES, PLATFORM_ROLE_CHOICES, TEAM_ROLE_CHOICES
from orgs.models import AuditEntry, Organization, OrganizationMembership, Team, TeamMembership, User


class OrganizationFilter(filters.FilterSet):
    organization_id = IdInFilter(help_text="Comma-separated organization ids.")
    organization_alias = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Organization
        fields: list[str] = []


class TeamFilter(filters.FilterSet):
    team_id = IdInFilter(help_text="Comma-separated team ids.")
    team_alias = filters.CharFilter(lookup_expr="icontains")
    organization_id = IdFilter(field_name="organization_id")
    blocked = filters.BooleanFilter()
    user_id = filters.CharFilter(method="filter_user_id", help_text="Teams this user is a member of.")

    class Meta:
        model = Team
        fields: list[str] = []

    def filter_user_id(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(pk__in=TeamMembership.objects.filter(user__user_id=value).values("team_id"))


class UserFilter(filters.FilterSet):
    user_id = CharInFilter(help_text="Comma-separated user ids.")
    user_email = filters.CharFilter(lookup_expr="iexact")
    user_role = filters.ChoiceFilter(choices=PLATFORM_ROLE_CHOICES)
    organization_id = IdFilter(method="filter_organization", help_text="Members of this organization.")
    team_id = IdFilter(method="filter_team", help_text="Members of this team.")

    class Meta:
        model = User
        fields: list[str] = []

    def filter_organization(self, queryset: QuerySet, name: str, value) -> QuerySet:
        members = OrganizationMembership.objects.filter(organization_id=value).values("user_id")
        return queryset.filter(pk__in=members)

    def filter_team(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset.filter(pk__in=TeamMembership.objects.filter(team_id=value).values("user_id"))


class OrganizationMemberFilter(filters.FilterSet):
    user_role = filters.ChoiceFilter(choices=ORG_ROLE_CHOICES)

    class Meta:
        model = OrganizationMembership
        fields: list[str] = []


class TeamMemberFilter(filters.FilterSet):
    role = filters.ChoiceFilter(choices=TEAM_ROLE_CHOICES)

    class Meta:
        model = TeamMembership
        fields: list[str] = []


class AuditEntryFilter(filters.FilterSet):
    action = filters.CharFilter()
    object_type = filters.CharFilter()
    object_id = filters.CharFilter()
    actor_id = filters.CharFilter()
    organization_id = IdFilter()
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEntry
        fields: list[str] = []
