"""The user pages: accounts, platform roles, limits and memberships."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db.models import QuerySet, prefetch_related_objects
from django.http import HttpRequest
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from accessctl import policy
from accessctl.admin import ServiceAdmin, admin_tenant, request_actor
from accessctl.admin_forms import NameListField
from orgs import services
from orgs.models import (
    Organization,
    OrganizationMembership,
    User,
)

from .common import (
    BUDGET_FORM_FIELDS,
    UserOrganizationInline,
    UserTeamInline,
    _cleaned,
)


class UserForm(forms.ModelForm):
    models = NameListField(
        required=False, help_text="Models this user may use on personal keys, one per line; empty means all."
    )
    new_password1 = forms.CharField(
        label="New admin password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Sets the password for the admin login. Leave empty to keep the current one; "
        "a user without a password cannot log in.",
    )
    new_password2 = forms.CharField(
        label="Repeat the new password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    organization = forms.ModelChoiceField(
        queryset=Organization.objects.none(),
        required=False,
        help_text="Make the new user a member of this organization (organization admins must choose one).",
    )

    class Meta:
        model = User
        fields = ("user_id", "user_alias", "user_email", "user_role", "is_system", "is_active", "models",
                  "metadata", "sso_user_id", *BUDGET_FORM_FIELDS, "spend")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        first, second = cleaned.get("new_password1"), cleaned.get("new_password2")
        if first or second:
            if first != second:
                self.add_error("new_password2", "The two passwords differ.")
            else:
                try:
                    password_validation.validate_password(first, self.instance)
                except ValidationError as exc:
                    self.add_error("new_password1", exc)
        return cleaned


USER_ROLE_FIELDS = ("user_role", "is_system", "is_active")
USER_LIMIT_FIELDS = ("models", "spend", *BUDGET_FORM_FIELDS)


@admin.register(User)
class UserAdmin(ServiceAdmin):
    form = UserForm
    policy_actions = {"view": "user:info", "add": "user:create", "change": "user:update", "delete": "user:delete"}
    field_actions = {"user:update_role": USER_ROLE_FIELDS, "user:update_budget": USER_LIMIT_FIELDS}
    list_display = ("user_id", "user_alias", "user_email", "user_role", "is_system", "is_active", "spend",
                    "max_budget", "created_at")
    list_filter = ("user_role", "is_system", "is_active")
    search_fields = ("user_id", "user_alias", "user_email")
    ordering = ("user_id",)
    inlines = (UserOrganizationInline, UserTeamInline)
    fieldsets = (
        (None, {"fields": ("user_id", "user_alias", "user_email")}),
        ("Role", {"fields": ("user_role", "is_system", "is_active")}),
        ("Access", {"fields": ("models",)}),
        ("Budget", {"fields": (*BUDGET_FORM_FIELDS, "budget_reset_at", "spend")}),
        ("Admin login", {"fields": ("new_password1", "new_password2", "last_login")}),
        ("More", {"classes": ("collapse",), "fields": ("metadata", "sso_user_id", "created_at", "updated_at")}),
    )

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        # Users of the organizations the caller administers (a subquery: no duplicate rows per membership).
        tenant = admin_tenant(request)
        if tenant.bypass:
            return queryset
        members = tenant.scope(OrganizationMembership.objects.all(), org_field="organization")
        return queryset.filter(pk__in=members.values("user_id"))

    def probe_target(self, organization_id: str | None, team_id: str | None) -> policy.Target:
        return policy.Target(
            organization_id=organization_id,
            owner_user_id="",
            user_org_ids=(organization_id,) if organization_id else (),
            user_team_ids=(team_id,) if team_id else (),
        )

    def prepare_object(self, obj: User) -> None:
        # The policy's user target reads the memberships: loaded once with the row, not per check.
        prefetch_related_objects([obj], "organization_memberships", "team_memberships")

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            first = (None, {"fields": ("user_id", "user_alias", "user_email", "organization")})
            return (first, *fieldsets[1:])
        return fieldsets

    def get_form(self, request: HttpRequest, obj: User | None = None, change: bool = False, **kwargs: Any):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        if "organization" in form_class.base_fields:
            field = form_class.base_fields["organization"]
            field.queryset = self.admin_site._registry[Organization].get_queryset(request)
            field.required = not request_actor(request).is_proxy_admin
        return form_class

    def fixed_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> tuple[str, ...]:
        fixed = ("budget_reset_at", "last_login", "created_at", "updated_at")
        return (*fixed, "user_id") if obj is not None else fixed

    def policy_target(self, obj: User | None) -> policy.Target | None:
        return policy.user_target(obj) if obj is not None else None

    def create_target(self, request: HttpRequest, form: forms.BaseForm) -> policy.Target:
        organization = form.cleaned_data.get("organization")
        return policy.Target(
            organization_id=str(organization.pk) if organization is not None else None,
            new_platform_role=form.cleaned_data.get("user_role"),
        )

    def update_checks(self, request: HttpRequest, stored: User, data: dict[str, Any]):
        checks = super().update_checks(request, stored, data)
        if "user_role" in data:
            # Judged with the role asked for: only a proxy admin grants an admin role.
            target = policy.user_target(stored, new_platform_role=data["user_role"])
            checks = [(a, target if a == "user:update_role" else t) for a, t in checks]
        return checks

    @method_decorator(sensitive_post_parameters("new_password1", "new_password2"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    def create(self, request: HttpRequest, form: forms.BaseForm) -> User:
        data = _cleaned(form, services.USER_FIELDS)
        organization = form.cleaned_data.get("organization")
        return services.user_create(
            actor=request.user,
            by=request_actor(request),
            user_id=form.cleaned_data["user_id"],
            password=form.cleaned_data.get("new_password1") or None,
            organizations=[organization] if organization is not None else [],
            **data,
        )

    def update(self, request: HttpRequest, obj: User, data: dict[str, Any]) -> User:
        password = data.pop("new_password1", None)
        data.pop("new_password2", None)
        data.pop("organization", None)
        if password:
            data["password"] = password  # set by the service, never audited in clear
        return services.user_update(actor=request.user, user=obj, data=data)

    def remove(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(actor=request.user, user=obj)
