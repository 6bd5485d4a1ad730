"""The shared base of every ModelAdmin: the policy decides who may do what, services do every write."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.forms.formsets import DELETION_FIELD_NAME
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from accessctl import policy
from accessctl.errors import ServiceError
from accessctl.roles import OrgRole, TeamRole
from accessctl.tenancy import ALL, PERSONAL, TenantContext

from .admin_forms import (
    BoundedJSONFormField,
    UserIdField,
    _form_refusing,
    adopt,
    changed_values,
    with_user_ids,
)

# --- the tenant of an admin request -----------------------------------------------------------------


def request_actor(request: HttpRequest) -> policy.Actor:
    """The policy's view of the logged-in user: loaded once per request (the user is loaded per request)."""
    return request.user.policy_actor


def admin_tenant(request: HttpRequest) -> TenantContext:
    """The tenant context of an admin request, built once per request.

    Platform admins and viewers see every tenant. Everyone else sees the organizations they administer
    and the teams they administer (by role or by guardian grant) — not the ones where they are a plain
    member: the admin is for managing, so its rows are those the user may manage.
    """
    tenant = getattr(request, "_accessctl_admin_tenant", None)
    if tenant is None:
        actor = request_actor(request)
        if actor.reads_everything:
            tenant = TenantContext(actor, ALL)
        else:
            managing = replace(
                actor,
                org_roles={org: OrgRole.ORG_ADMIN for org in actor.admin_org_ids},
                team_roles={team: TeamRole.ADMIN for team in actor.admin_team_ids},
                key_team_id=None,
            )
            tenant = TenantContext(managing, PERSONAL)
        request._accessctl_admin_tenant = tenant
    return tenant


def refuse(verdict: policy.Verdict) -> None:
    """Raise the policy's refusal as a service error: the admin shows its message on the form."""
    if not verdict:
        raise ServiceError(verdict.message, type=verdict.type, status=verdict.status)


class TenantForeignKeys:
    """Foreign-key choices limited to what the user may see; users typed by `user_id` for tenant admins.

    Validation uses the same querysets, so a crafted POST cannot name another tenant's row either.
    """

    admin_site: admin.AdminSite

    def formfield_for_foreignkey(self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: Any):
        related = self.admin_site._registry.get(db_field.related_model)
        if related is not None and isinstance(related, ServiceAdmin) and "queryset" not in kwargs:
            if db_field.name == "user" and not request_actor(request).reads_everything:
                return UserIdField(required=not db_field.blank, label=db_field.verbose_name,
                                   help_text=db_field.help_text or "The user's user_id.")
            kwargs["queryset"] = related.get_queryset(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


# --- the base ModelAdmin --------------------------------------------------------------------------


class ServiceAdmin(TenantForeignKeys, admin.ModelAdmin):
    """Permissions come from `accessctl.policy`; every write goes through a service with the acting user.

    Subclasses name their policy actions (`policy_actions`), say how rows map to tenants
    (`tenant_fields`, handed to `TenantContext.scope`), describe a row for the policy (`policy_target`)
    and a new row (`create_target`), and implement `create`, `update` and `remove` by calling services.
    Fields that need a further action (`field_actions`, e.g. limits) are read-only when the policy refuses
    it. A refusal — the policy's or a service's (`ServiceError`) — is shown on the form, and its
    transaction is rolled back.
    """

    # {"view": ..., "add": ..., "change": ..., "delete": ...}; a missing verb is not allowed.
    policy_actions: ClassVar[dict[str, str]] = {}
    # Keyword arguments of `TenantContext.scope` (org_field, team_field); None: rows of no tenant (catalog).
    tenant_fields: ClassVar[dict[str, str] | None] = None
    # {action: fields}: changing one of the fields also needs the action on the row.
    field_actions: ClassVar[dict[str, tuple[str, ...]]] = {}
    list_per_page = 50
    save_as = False
    formfield_overrides = {models.JSONField: {"form_class": BoundedJSONFormField}}

    # --- what the user sees ---------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.scope_queryset(request, super().get_queryset(request))

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Rows of the user's tenants only, filtered inside the query: another tenant's row is absent."""
        if self.tenant_fields is None:
            return queryset
        return admin_tenant(request).scope(queryset, **self.tenant_fields)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any | None:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            self.prepare_object(obj)
        # A row in the user's tenants that the policy still hides (e.g. a team's assignment of another
        # organization's group) is as absent as a foreign one: not found, rather than forbidden.
        if obj is not None and not self.has_view_permission(request, obj):
            return None
        return obj

    def prepare_object(self, obj: Any) -> None:
        """Load what `policy_target(obj)` reads, once, when one row is fetched for its page."""

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> HttpResponse:
        # Django's hook for a change/delete/history URL whose row get_queryset() cannot find. Another
        # tenant's row and a missing row answer the same 404 (SPEC §3), never a redirect that hints.
        context = {**self.admin_site.each_context(request), "title": "Not found", "opts": opts}
        return TemplateResponse(request, "admin/not_found.html", context, status=404)

    # --- permissions: the policy decides --------------------------------------------------------

    def policy_target(self, obj: Any | None) -> policy.Target | None:
        return None

    def probe_target(self, organization_id: str | None, team_id: str | None) -> policy.Target:
        """A row of this model inside one tenant the user manages: asked when no row is at hand."""
        return policy.Target(organization_id=organization_id, team_id=team_id)

    def probe_targets(self, request: HttpRequest) -> list[policy.Target | None]:
        actor = request_actor(request)
        if actor.reads_everything:
            return [None]
        return [self.probe_target(org, None) for org in sorted(actor.admin_org_ids)] + [
            self.probe_target(None, team) for team in sorted(actor.admin_team_ids)
        ]

    def allowed(self, request: HttpRequest, verb: str, obj: Any | None = None) -> bool:
        """May the user do `verb` on `obj` — or, with no row, on some row of a tenant they manage?"""
        action = self.policy_actions.get(verb)
        if action is None or not request.user.is_authenticated or not request.user.is_active:
            return False
        actor = request_actor(request)
        if not actor.uses_admin:
            return False
        if obj is not None:
            return policy.can(actor, action, self.policy_target(obj)).allowed
        return any(policy.can(actor, action, target).allowed for target in self.probe_targets(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.allowed(request, "view")

    def has_view_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self.allowed(request, "view", obj) or self.allowed(request, "change", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.allowed(request, "add")

    def has_change_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self.allowed(request, "change", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self.allowed(request, "delete", obj)

    def allowed_action(self, request: HttpRequest, action: str, obj: Any) -> bool:
        return policy.can(request_actor(request), action, self.policy_target(obj)).allowed

    def require(self, request: HttpRequest, action: str, target: policy.Target | None) -> None:
        """Refuse (with the policy's message) unless the user may do `action` on `target`."""
        refuse(policy.can(request_actor(request), action, target))

    # --- forms --------------------------------------------------------------------------------------

    def fixed_readonly_fields(self, request: HttpRequest, obj: Any | None = None) -> tuple[str, ...]:
        return tuple(self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any | None = None) -> tuple[str, ...]:
        fields = list(self.fixed_readonly_fields(request, obj))
        if obj is not None:
            actor = request_actor(request)
            target = self.policy_target(obj)
            for action, names in self.field_actions.items():
                if not policy.can(actor, action, target):
                    fields += [n for n in names if n not in fields]
        # A relation the user may not list is shown, not chosen (its autocomplete would be refused).
        for field in self.model._meta.concrete_fields:
            related = self.admin_site._registry.get(field.related_model) if field.many_to_one else None
            if (
                related is not None
                and field.name != "user"
                and field.name not in fields
                and not related.has_view_permission(request)
            ):
                fields.append(field.name)
        return tuple(fields)

    def create_target(self, request: HttpRequest, form: forms.BaseForm) -> policy.Target | None:
        """Where the submitted form would create a row (checked against the `add` action)."""
        return None

    def update_checks(
        self, request: HttpRequest, stored: Any, data: dict[str, Any]
    ) -> list[tuple[str, policy.Target | None]]:
        """The actions (with targets) a change of the fields in `data` needs, beyond `change` itself."""
        target = self.policy_target(stored)
        return [(action, target) for action, names in self.field_actions.items() if set(names) & set(data)]

    # --- writes through services ------------------------------------------------------------------

    def create(self, request: HttpRequest, form: forms.BaseForm) -> models.Model:
        raise NotImplementedError(f"{type(self).__name__} must create rows through a service")

    def update(self, request: HttpRequest, obj: models.Model, data: dict[str, Any]) -> models.Model:
        raise NotImplementedError(f"{type(self).__name__} must update rows through a service")

    def remove(self, request: HttpRequest, obj: models.Model) -> None:
        raise NotImplementedError(f"{type(self).__name__} must delete rows through a service")

    def save_model(self, request: HttpRequest, obj: models.Model, form: forms.BaseForm, change: bool) -> None:
        if change:
            data = changed_values(form)
            if data:
                # The form has already written the new values onto `obj`: the policy judges the stored row.
                stored = self.get_queryset(request).get(pk=obj.pk)
                self.require(request, self.policy_actions["change"], self.policy_target(stored))
                for action, target in self.update_checks(request, stored, data):
                    self.require(request, action, target)
            saved = self.update(request, obj, data) if data else obj
        else:
            self.require(request, self.policy_actions["add"], self.create_target(request, form))
            saved = self.create(request, form)
        adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        self.require(request, self.policy_actions["delete"], self.policy_target(obj))
        self.remove(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        # One service call per row, so each deletion is audited and invalidates its cache entries.
        self.each_through_service(
            request, queryset, self.policy_actions["delete"], lambda obj: self.remove(request, obj), None
        )

    def save_formset(self, request: HttpRequest, form: forms.BaseForm, formset: Any, change: bool) -> None:
        inline = formset.service_inline
        if not inline.has_change_permission(request, form.instance):
            # A view-only inline: Django "validates" its forms from their initial values; nothing to save.
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
            return
        # commit=False fills new/changed/deleted_objects (the admin's change message) without writing.
        formset.save(commit=False)
        inline.save_with_services(request, formset)

    def get_form(self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any):
        form_class = with_user_ids(super().get_form(request, obj, change=change, **kwargs))
        error = getattr(request, "_accessctl_service_error", None)
        return _form_refusing(form_class, error) if error is not None else form_class

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceError as exc:
            # The write's transaction has rolled back; show the form again with the refusal on it.
            if request.method != "POST" or getattr(request, "_accessctl_service_error", None) is not None:
                raise
            request._accessctl_service_error = exc
            return super().changeform_view(request, object_id, form_url, extra_context)

    def each_through_service(
        self, request: HttpRequest, queryset: models.QuerySet, action: str, write, done: str | None
    ) -> int:
        """Run `write(obj)` (a service call) for each selected row the policy allows `action` on;
        report each refusal with the row it concerns."""
        actor = request_actor(request)
        count = 0
        for obj in queryset:
            verdict = policy.can(actor, action, self.policy_target(obj))
            try:
                refuse(verdict)
                write(obj)
            except ServiceError as exc:
                self.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
            else:
                count += 1
        if count and done:
            self.message_user(request, done.format(count=count), messages.SUCCESS)
        return count


class ReadOnlyAdmin(ServiceAdmin):
    """Rows written elsewhere (audit entries, budget rows, jobs): visible, never edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return False


# --- inlines ------------------------------------------------------------------------------------


class ServiceInline(TenantForeignKeys, admin.TabularInline):
    """An inline whose rows are written by services: subclasses implement `save_with_services`.

    Permissions follow the parent row: who may change it may edit the inline, when the policy also
    allows `write_action` (e.g. `team:member_manage`) on the parent.
    """

    extra = 0
    show_change_link = False
    write_action: ClassVar[str | None] = None

    def get_formset(self, request: HttpRequest, obj: Any | None = None, **kwargs: Any):
        kwargs.setdefault("form", with_user_ids(self.form))
        formset_class = super().get_formset(request, obj, **kwargs)
        formset_class.service_inline = self
        return formset_class

    def _parent_admin(self) -> ServiceAdmin:
        return self.admin_site._registry[self.parent_model]

    def has_view_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self._parent_admin().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        parent = self._parent_admin()
        if obj is None:
            return parent.has_add_permission(request)
        if not parent.has_change_permission(request, obj):
            return False
        return self.write_action is None or parent.allowed_action(request, self.write_action, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self.has_add_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self.has_add_permission(request, obj)

    def save_with_services(self, request: HttpRequest, formset: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must save its rows through a service")

    def require_parent(self, request: HttpRequest, formset: Any) -> None:
        """Refuse an inline write the policy refuses on the parent row (checked again at save time)."""
        if self.write_action is not None and formset.instance.pk is not None:
            parent = self._parent_admin()
            parent.require(request, self.write_action, parent.policy_target(formset.instance))


def wanted_related_ids(formset: Any, field: str) -> tuple[set[Any], set[Any]]:
    """For an assignment inline: (the ids of `field` the parent has now, the ids it should have).

    Computed from the stored rows and the submitted forms, so rows hidden from the form stay put.
    """
    stored = {
        pk: value
        for pk, value in formset.model.objects.filter(**{formset.fk.name: formset.instance}).values_list(
            "pk", f"{field}_id"
        )
    }
    current = set(stored.values())
    wanted = set(current)
    for form in formset.forms:
        if not form.has_changed() and form.instance.pk is None:
            continue  # an untouched extra row
        deleting = formset.can_delete and form.cleaned_data.get(DELETION_FIELD_NAME)
        if form.instance.pk is not None and (deleting or form.has_changed()):
            wanted.discard(stored.get(form.instance.pk))
        chosen = form.cleaned_data.get(field)
        if chosen is not None and not deleting:
            wanted.add(chosen.pk)
    return current, wanted
