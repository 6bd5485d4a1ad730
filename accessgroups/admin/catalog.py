"""The catalog pages: models, MCP servers and agents."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accessctl.admin import (
    ServiceAdmin,
)
from accessgroups import services
from accessgroups.models import (
    Agent,
    CatalogModel,
    MCPServer,
)


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
