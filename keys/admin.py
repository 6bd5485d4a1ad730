"""Admin for virtual keys: minted by `key_generate`, the secret shown once on the page after creation."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from accessctl import policy
from accessctl.admin import NameListField, ServiceAdmin
from accessgroups.admin import KeyAccessGroupInline
from keys import services
from keys.models import VirtualKey

BUDGET_FORM_FIELDS = (
    "max_budget",
    "soft_budget",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "budget_duration",
    "model_max_budget",
)
# The request attribute that carries a new secret from `save_model` to `response_add`, and nowhere else.
_NEW_SECRET = "_accessctl_new_secret"


class KeyFormBase(forms.ModelForm):
    models = NameListField(
        required=False,
        help_text="Models (or access-group names) this key may call, one per line; empty means its access groups, "
        "else its team's, else its owner's.",
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
        fields = ("key_alias", "user", "team", "organization", "models", "blocked", "metadata", *BUDGET_FORM_FIELDS)


class KeyChangeForm(KeyFormBase):
    class Meta:
        model = VirtualKey
        fields = ("key_alias", "user", "team", "organization", "models", "expires", "blocked", "metadata",
                  *BUDGET_FORM_FIELDS, "spend")


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
    list_display = ("__str__", "key_name", "user", "team", "organization", "status", "spend", "max_budget",
                    "expires", "created_at")
    list_filter = (StatusFilter, ("organization", admin.RelatedOnlyFieldListFilter),
                   ("team", admin.RelatedOnlyFieldListFilter), "created_at")
    search_fields = ("key_alias", "key_name", "token", "user__user_id", "team__team_alias")
    autocomplete_fields = ("user", "team", "organization")
    inlines = (KeyAccessGroupInline,)
    actions = ("block_keys", "unblock_keys")
    add_fieldsets = (
        (None, {"fields": ("key_alias", "user", "team", "organization", "duration", "blocked")}),
        ("Access", {"fields": ("models",)}),
        ("Budget", {"fields": BUDGET_FORM_FIELDS}),
        ("More", {"classes": ("collapse",), "fields": ("metadata",)}),
    )
    fieldsets = (
        (None, {"fields": ("key_alias", "key_name", "token", "user", "team", "organization", "expires", "blocked")}),
        ("Access", {"fields": ("models", "access_group_ids")}),
        ("Budget", {"fields": (*BUDGET_FORM_FIELDS, "budget_reset_at", "spend")}),
        ("More", {"classes": ("collapse",), "fields": ("metadata", "created_at", "created_by", "updated_at",
                                                       "updated_by", "last_rotated_at")}),
    )
    readonly_fields = ("key_name", "token", "access_group_ids", "budget_reset_at", "created_at", "created_by",
                       "updated_at", "updated_by", "last_rotated_at")

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

    @admin.display(description="status")
    def status(self, obj: VirtualKey) -> str:
        return obj.status

    # --- writes -----------------------------------------------------------------------------------

    def create(self, request: HttpRequest, form: forms.BaseForm) -> VirtualKey:
        data = form.cleaned_data
        budget = {name: data[name] for name in BUDGET_FORM_FIELDS if data.get(name) not in (None, "")}
        key, raw = services.key_generate(
            actor=request.user,
            user=data.get("user"),
            team=data.get("team"),
            organization=data.get("organization"),
            key_alias=data.get("key_alias") or None,
            models=data.get("models") or [],
            duration=data.get("duration") or None,
            metadata=data.get("metadata") or {},
            blocked=bool(data.get("blocked")),
            **budget,
        )
        setattr(request, _NEW_SECRET, raw)
        return key

    def update(self, request: HttpRequest, obj: VirtualKey, data: dict[str, Any]) -> VirtualKey:
        return services.key_update(actor=request.user, key=obj, data=data)

    def remove(self, request: HttpRequest, obj: VirtualKey) -> None:
        services.key_delete(actor=request.user, key=obj)

    def response_add(self, request: HttpRequest, obj: VirtualKey, post_url_continue: str | None = None) -> HttpResponse:
        """Show the new secret on this one response, instead of redirecting: it is never stored (not even
        in the session or a message) and no later page can show it again."""
        raw = request.__dict__.pop(_NEW_SECRET, None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Copy the new key now",
            "key": obj,
            "raw_key": raw,
            "change_url": reverse("admin:keys_virtualkey_change", args=[obj.pk]),
            "add_url": reverse("admin:keys_virtualkey_add"),
            "changelist_url": reverse("admin:keys_virtualkey_changelist"),
        }
        response = TemplateResponse(request, "admin/keys/virtualkey/secret_once.html", context)
        response["Cache-Control"] = "no-store"
        return response

    # --- actions ----------------------------------------------------------------------------------

    @admin.action(description="Block the selected keys", permissions=["change"])
    def block_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.each_through_service(
            request,
            queryset.filter(blocked=False),
            lambda key: services.key_block(actor=request.user, key=key),
            "Blocked {count} keys.",
        )

    @admin.action(description="Unblock the selected keys", permissions=["change"])
    def unblock_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.each_through_service(
            request,
            queryset.filter(blocked=True),
            lambda key: services.key_unblock(actor=request.user, key=key),
            "Unblocked {count} keys.",
        )
