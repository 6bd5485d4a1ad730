"""Query-string filters of the key list (django-filter); a malformed value is a 400 naming the filter."""
from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters

from accessctl.rest import CharInFilter, IdFilter
from accessgroups.models import KeyAccessGroup
from keys.models import VirtualKey


class KeyFilter(filters.FilterSet):
    token = CharInFilter(help_text="Comma-separated key tokens (SHA-256 hex).")
    key_alias = filters.CharFilter()
    user_id = filters.CharFilter(field_name="user__user_id")
    team_id = IdFilter(field_name="team_id")
    organization_id = IdFilter(field_name="organization_id")
    blocked = filters.BooleanFilter()
    access_group_id = IdFilter(method="filter_access_group", help_text="Keys assigned to this group.")

    class Meta:
        model = VirtualKey
        fields: list[str] = []

    def filter_access_group(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset.filter(pk__in=KeyAccessGroup.objects.filter(access_group_id=value).values("key_id"))
