"""Admin for virtual keys: minted by `key_generate`, the secret shown once (after creation or regeneration);
blocked, exported (masked) and given access groups in bulk, each row as the policy allows."""
from __future__ import annotations

import csv
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html_join

from accessctl import policy
from accessctl.admin import ServiceAdmin, request_actor
from accessctl.admin_forms import NameListField, UserIdField
from accessctl.common import csv_cell
from accessctl.errors import ServiceError
from accessgroups.admin.assignment import KeyAccessGroupInline, bulk_assign_actions, group_names
from accessgroups.admin.groups import KeyAccessGroupFilter
from keys import services
from keys.models import VirtualKey
from orgs.models import TeamMembership
from orgs.selectors import manageable_users

BUDGET_FORM_FIELDS = (
    "max_budget",
    "soft_budget",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "budget_duration",
    "model_max_budget",
)
ROTATION_FORM_FIELDS = ("auto_rotate", "rotation_interval")
ROUTE_FORM_FIELDS = ("key_type", "allowed_routes")
# What the regenerate page offers as the old secret's grace period (the service allows up to 7d).
GRACE_CHOICES = (("", "None: refuse the old secret at once"), ("1h", "1 hour"), ("24h", "24 hours"),
                 ("7d", "7 days"))
# The request attribute that carries a new secret from `save_model` to `response_add`, and nowhere else.
_NEW_SECRET = "_accessctl_new_secret"


class KeyFormBase(forms.ModelForm):
    models = NameListField(
        required=False,
        help_text="Models (or access-group names) this key may call, one per line; empty means its access groups, "
        "else its team's, else its owner's.",
    )
    allowed_routes = NameListField(
        required=False,
        help_text="Narrows the routes further, one per line: route paths (/key/info, /api/v1/keys, /team/*) or "
        "llm_api_routes, management_routes, info_routes. Empty: no further limit.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not cleaned.get("user") and not cleaned.get("team"):
            self.add_error(None, "A key belongs to a user, a team, or both: choose at least one.")
        return cleaned


class KeyAddForm(KeyFormBase):
    duration = forms.CharField(
        required=False,
        max_length=16,
        help_text='How long the key is valid, e.g. "30d", "12h"; empty means it never expires.',
    )

    class Meta:
        model = VirtualKey
        fields = ("key_alias", "user", "team", "organization", "models", *ROUTE_FORM_FIELDS, "blocked", "metadata",
                  *BUDGET_FORM_FIELDS, *ROTATION_FORM_FIELDS)


class KeyChangeForm(KeyFormBase):
    class Meta:
        model = VirtualKey
        fields = ("key_alias", "user", "team", "organization", "models", *ROUTE_FORM_FIELDS, "expires", "blocked",
                  "metadata", *BUDGET_FORM_FIELDS, "spend", *ROTATION_FORM_FIELDS)


class RotationFilter(admin.SimpleListFilter):
    title = "rotation"
    parameter_name = "rotation"

    def lookups(self, request, model_admin):
        return (("due", "Due for rotation"), ("auto", "Auto-rotating"), ("grace", "Old secret in grace period"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "due":
            return queryset.filter(auto_rotate=True, rotation_due_at__lte=now)
        if self.value() == "auto":
            return queryset.filter(auto_rotate=True)
        if self.value() == "grace":
            return queryset.filter(previous_token__isnull=False, previous_token_expires__gt=now)
        return queryset


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("blocked", "Blocked"), ("expired", "Expired"))

    def queryset(self, request, queryset):
        now = timezone.now()
        expired = Q(expires__isnull=False, expires__lte=now)
        if self.value() == "blocked":
            return queryset.filter(blocked=True)
        if self.value() == "expired":
            return queryset.filter(expired)
        if self.value() == "active":
            return queryset.filter(blocked=False).exclude(expired)
        return queryset


@admin.register(VirtualKey)
class VirtualKeyAdmin(ServiceAdmin):
    """Keys are shown by their masked name; the token (SHA-256 of the secret) is never editable."""

    form = KeyChangeForm
    add_form = KeyAddForm
    policy_actions = {"view": "key:info", "add": "key:generate", "change": "key:update", "delete": "key:delete"}
    tenant_fields = {"org_field": "organization", "team_field": "team"}
    # Which fields need which action: the policy's one map (the key services ask the same).
    field_actions = policy.FIELD_ACTIONS["key"]
    # get_list_display adds an "access groups" column after the status.
    list_display = ("__str__", "key_name", "user", "team", "organization", "status", "spend", "max_budget",
                    "expires", "created_at")
    list_filter = (StatusFilter, RotationFilter, "key_type", ("organization", admin.RelatedOnlyFieldListFilter),
                   ("team", admin.RelatedOnlyFieldListFilter), "created_at", KeyAccessGroupFilter)
    search_fields = ("key_alias", "key_name", "token", "user__user_id", "team__team_alias")
    autocomplete_fields = ("user", "team", "organization")
    inlines = (KeyAccessGroupInline,)
    actions = ("block_keys", "unblock_keys", "export_csv", *bulk_assign_actions("keys"))
    add_fieldsets = (
        (None, {"fields": ("key_alias", "user", "team", "organization", "duration", "blocked")}),
        ("Access", {"fields": ("models", *ROUTE_FORM_FIELDS)}),
        ("Budget", {"fields": BUDGET_FORM_FIELDS}),
        ("Rotation", {"fields": ROTATION_FORM_FIELDS}),
        ("More", {"classes": ("collapse",), "fields": ("metadata",)}),
    )
    fieldsets = (
        (None, {"fields": ("key_alias", "key_name", "token", "user", "team", "organization", "expires", "blocked")}),
        ("Access", {"fields": ("models", "access_group_ids", *ROUTE_FORM_FIELDS)}),
        ("Budget", {"fields": (*BUDGET_FORM_FIELDS, "budget_reset_at", "spend")}),
        ("Rotation", {"fields": (*ROTATION_FORM_FIELDS, "rotation_due_at", "last_rotated_at",
                                 "previous_token_expires")}),
        ("More", {"classes": ("collapse",), "fields": ("metadata", "created_at", "created_by", "updated_at",
                                                       "updated_by")}),
    )
    readonly_fields = ("key_name", "token", "access_group_ids", "budget_reset_at", "created_at", "created_by",
                       "updated_at", "updated_by", "last_rotated_at", "rotation_due_at", "previous_token_expires")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The policy's key target reads the team and the owner: loaded with the row.
        return super().get_queryset(request).select_related("user", "team", "organization")

    def get_fieldsets(self, request: HttpRequest, obj: VirtualKey | None = None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_form(self, request: HttpRequest, obj: VirtualKey | None = None, change: bool = False, **kwargs: Any):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def policy_target(self, obj: VirtualKey | None) -> policy.Target | None:
        return policy.key_target(obj) if obj is not None else None

    def create_target(self, request: HttpRequest, form: forms.BaseForm) -> policy.Target:
        data = form.cleaned_data
        user, team, organization = data.get("user"), data.get("team"), data.get("organization")
        in_team = None
        if team is not None and user is not None:
            in_team = TeamMembership.objects.filter(team=team, user=user).exists()
        return policy.new_key_target(
            owner_user_id=user.user_id if user is not None else None,
            team=team,
            organization_id=organization.pk if organization is not None else None,
            owner_in_team=in_team,
            owner=policy.user_facts(user),
        )

    def update_checks(self, request: HttpRequest, stored: VirtualKey, data: dict[str, Any]):
        return []  # `key_update` authorizes every changed field itself (policy.FIELD_ACTIONS["key"])

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs: Any):
        actor = request_actor(request)
        if db_field.name == "user" and not actor.is_proxy_admin:
            # A key's owner is the caller or a user they manage (SPEC §2): nobody else can be chosen.
            return UserIdField(queryset=manageable_users(actor), required=False, label=db_field.verbose_name,
                               help_text="The owner's user_id: you, or a member you manage.")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="status")
    def status(self, obj: VirtualKey) -> str:
        return obj.status

    def get_list_display(self, request: HttpRequest):
        # The access-groups column names the groups: read once per request, and only if a row has any.
        @admin.display(description="access groups")
        def access_groups(obj: VirtualKey) -> str:
            names = group_names(request, obj.access_group_ids) if obj.access_group_ids else []
            return format_html_join(", ", "{}", ((n,) for n in names)) or "-"

        columns = list(super().get_list_display(request))
        columns.insert(columns.index("status") + 1, access_groups)
        return tuple(columns)

    # --- writes -----------------------------------------------------------------------------------

    def create(self, request: HttpRequest, form: forms.BaseForm) -> VirtualKey:
        data = form.cleaned_data
        budget = {name: data[name] for name in BUDGET_FORM_FIELDS if data.get(name) not in (None, "")}
        key, raw = services.key_generate(
            actor=request.user,
            by=request_actor(request),
            user=data.get("user"),
            team=data.get("team"),
            organization=data.get("organization"),
            key_alias=data.get("key_alias") or None,
            models=data.get("models") or [],
            duration=data.get("duration") or None,
            metadata=data.get("metadata") or {},
            blocked=bool(data.get("blocked")),
            auto_rotate=bool(data.get("auto_rotate")),
            rotation_interval=data.get("rotation_interval") or None,
            key_type=data.get("key_type") or None,
            allowed_routes=data.get("allowed_routes") or [],
            **budget,
        )
        setattr(request, _NEW_SECRET, raw)
        return key

    def update(self, request: HttpRequest, obj: VirtualKey, data: dict[str, Any]) -> VirtualKey:
        return services.key_update(actor=request.user, key=obj, data=data, by=request_actor(request))

    def remove(self, request: HttpRequest, obj: VirtualKey) -> None:
        services.key_delete(actor=request.user, key=obj, by=request_actor(request))

    def response_add(self, request: HttpRequest, obj: VirtualKey, post_url_continue: str | None = None) -> HttpResponse:
        """Show the new secret on this one response, instead of redirecting: it is never stored (not even
        in the session or a message) and no later page can show it again."""
        raw = request.__dict__.pop(_NEW_SECRET, None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        return self.secret_once(request, obj, raw, "Copy the new key now")

    def secret_once(self, request: HttpRequest, obj: VirtualKey, raw: str, title: str) -> HttpResponse:
        """The one page that shows a secret: rendered in the response to the write, never stored."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "key": obj,
            "raw_key": raw,
            "change_url": reverse("admin:keys_virtualkey_change", args=[obj.pk]),
            "add_url": reverse("admin:keys_virtualkey_add"),
            "changelist_url": reverse("admin:keys_virtualkey_changelist"),
        }
        response = TemplateResponse(request, "admin/keys/virtualkey/secret_once.html", context)
        response["Cache-Control"] = "no-store"
        return response

    # --- regenerate -------------------------------------------------------------------------------

    def get_urls(self):
        regenerate = path(
            "<path:object_id>/regenerate/",
            self.admin_site.admin_view(self.regenerate_view),
            name="keys_virtualkey_regenerate",
        )
        return [regenerate, *super().get_urls()]

    def regenerate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm (choosing the old secret's grace period), then give the key a new secret and show it once."""
        key = self.get_object(request, object_id)
        if key is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        verdict = policy.can(request_actor(request), "key:regenerate", self.policy_target(key))
        if not verdict:
            raise PermissionDenied(verdict.message)
        if request.method == "POST":
            try:
                grace = request.POST.get("grace_period") or None
                if grace not in {value for value, _ in GRACE_CHOICES if value} | {None}:
                    raise ServiceError("Choose a grace period from the list.", param="grace_period")
                # The page showed this secret: a second submit (another tab) must not rotate twice.
                key, raw = services.key_regenerate(
                    actor=request.user, key=key, grace_period=grace, expected_token=request.POST.get("token")
                )
            except ServiceError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return HttpResponseRedirect(reverse("admin:keys_virtualkey_change", args=[key.pk]))
            return self.secret_once(request, key, raw, "Copy the regenerated key now")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Regenerate the key's secret?",
            "key": key,
            "grace_choices": GRACE_CHOICES,
            "change_url": reverse("admin:keys_virtualkey_change", args=[key.pk]),
        }
        return TemplateResponse(request, "admin/keys/virtualkey/regenerate_confirm.html", context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["may_regenerate"] = self.allowed_action(request, "key:regenerate", obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- actions ----------------------------------------------------------------------------------

    @admin.action(description="Block the selected keys", permissions=["change"])
    def block_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.each_through_service(
            request,
            queryset.filter(blocked=False),
            "key:block",
            lambda key: services.key_block(actor=request.user, key=key),
            "Blocked {count} keys.",
        )

    @admin.action(description="Unblock the selected keys", permissions=["change"])
    def unblock_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.each_through_service(
            request,
            queryset.filter(blocked=True),
            "key:unblock",
            lambda key: services.key_unblock(actor=request.user, key=key),
            "Unblocked {count} keys.",
        )

    @admin.action(description="Export the selected keys as CSV (masked secrets)", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        """One row per key; the secret appears only in its masked form (`sk-...abcd`), as everywhere."""
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="keys.csv"'
        response["Cache-Control"] = "no-store"
        writer = csv.writer(response)
        writer.writerow(EXPORT_COLUMNS)
        for key in queryset.order_by("created_at", "id").iterator(chunk_size=2000):
            writer.writerow([csv_cell(cell) for cell in (
                key.key_name, key.key_alias or "", key.token,
                key.user.user_id if key.user_id else "", str(key.team_id or ""),
                key.team.team_alias if key.team_id else "", str(key.organization_id or ""), key.status,
                " ".join(key.models or []), " ".join(key.access_group_ids or []), key.spend,
                "" if key.max_budget is None else key.max_budget,
                key.expires.isoformat() if key.expires else "", key.created_at.isoformat(),
            )])
        return response


EXPORT_COLUMNS = ("key_name", "key_alias", "token", "user_id", "team_id", "team_alias", "organization_id", "status",
                  "models", "access_group_ids", "spend", "max_budget", "expires", "created_at")
