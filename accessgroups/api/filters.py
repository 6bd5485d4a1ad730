"""Query-string filters of the access-group and catalog lists (django-filter)."""
from __future__ import annotations

from django_filters import rest_framework as filters

from accessctl.rest import IdFilter, IdInFilter
from accessgroups.models import AccessGroup, Agent, CatalogModel, MCPServer


class AccessGroupFilter(filters.FilterSet):
    access_group_id = IdInFilter(help_text="Comma-separated access group ids.")
    access_group_name = filters.CharFilter(lookup_expr="icontains")
    organization_id = IdFilter(field_name="organization_id")
    is_global = filters.BooleanFilter(field_name="organization", lookup_expr="isnull", help_text="Global groups only.")

    class Meta:
        model = AccessGroup
        fields: list[str] = []


class CatalogModelFilter(filters.FilterSet):
    model_name = filters.CharFilter(lookup_expr="icontains")
    provider = filters.CharFilter()
    active = filters.BooleanFilter()

    class Meta:
        model = CatalogModel
        fields: list[str] = []


class MCPServerFilter(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    active = filters.BooleanFilter()

    class Meta:
        model = MCPServer
        fields: list[str] = []


class AgentFilter(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    active = filters.BooleanFilter()

    class Meta:
        model = Agent
        fields: list[str] = []
