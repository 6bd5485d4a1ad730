"""Read-only pages: budgets and the audit log."""
from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accessctl import policy
from accessctl.admin import (
    ReadOnlyAdmin,
)
from orgs.models import (
    AuditEntry,
    Budget,
    Organization,
)


@admin.register(Budget)
class BudgetAdmin(ReadOnlyAdmin):
    """Budget rows are edited on their organization (or membership); shown here for reference."""

    policy_actions = {"view": "organization:info"}
    tenant_fields = {"org_field": "organization"}
    list_display = ("budget_id", "owner", "max_budget", "soft_budget", "tpm_limit", "rpm_limit",
                    "budget_duration", "budget_reset_at")
    search_fields = ("budget_id", "organization__organization_alias")
    list_filter = ("budget_duration",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("organization")

    def policy_target(self, obj: Budget | None) -> policy.Target | None:
        owner = getattr(obj, "organization", None) if obj is not None else None
        return policy.organization_target(owner) if owner is not None else None

    @admin.display(description="organization")
    def owner(self, obj: Budget) -> Organization | None:
        # Membership budgets have no organization row pointing at them.
        return getattr(obj, "organization", None)




@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Every management write, as recorded by the services. Never added, changed or deleted here."""

    policy_actions = {"view": "audit:read"}
    tenant_fields = {"org_field": "organization_id"}
    list_display = ("created_at", "actor_id", "action", "object_type", "object_id", "organization_id")
    list_filter = ("action", "object_type", "created_at")
    search_fields = ("actor_id", "action", "object_id")
    fields = ("created_at", "actor_id", "action", "object_type", "object_id", "organization_id", "before_json",
              "after_json")
    readonly_fields = fields
    show_full_result_count = False  # the audit log grows without bound; skip the second COUNT(*)

    @admin.display(description="before")
    def before_json(self, obj: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.before, indent=2, sort_keys=True))

    @admin.display(description="after")
    def after_json(self, obj: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.after, indent=2, sort_keys=True))
