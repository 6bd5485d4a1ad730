"""The shared base of every ModelAdmin: the policy decides who may do what, services do every write."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.forms.formsets import DELETION_FIELD_NAME
from django.http import HttpRequest, HttpResponse

from accessctl import policy
from accessctl.errors import ServiceError

# --- form fields --------------------------------------------------------------------------------


class NameListField(forms.Field):
    """A list of names (models, MCP server ids, agent ids) edited one per line (commas also split)."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if value in (None, ""):
            return []
        if isinstance(value, list | tuple):
            return [str(v).strip() for v in value if str(v).strip()]
        parts = str(value).replace(",", "\n").splitlines()
        return list(dict.fromkeys(p.strip() for p in parts if p.strip()))

    def has_changed(self, initial: Any, data: Any) -> bool:
        return self.to_python(initial) != self.to_python(data)


def changed_values(form: forms.BaseForm, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The cleaned values of the fields the user changed (what a partial-update service takes)."""
    wanted = set(names) if names is not None else None
    return {
        name: form.cleaned_data[name]
        for name in form.changed_data
        if name in form.cleaned_data and (wanted is None or name in wanted)
    }


def adopt(obj: models.Model, saved: models.Model) -> None:
    """Make the admin's in-memory object mirror the row a service wrote (the admin keeps using `obj`)."""
    obj.__dict__.update(saved.__dict__)


def _field_for_param(form: forms.BaseForm, param: str | None) -> str | None:
    """The form field a service's `param` names (`team_id` → `team`), or None for a form-wide error."""
    if not param:
        return None
    for name in (param, param.removesuffix("_ids"), param.removesuffix("_id")):
        if name in form.fields:
            return name
    return None


def _form_refusing(form_class: type[forms.BaseForm], error: ServiceError) -> type[forms.BaseForm]:
    """A subclass of the admin form that shows a service's refusal as a form error."""

    class Refused(form_class):  # type: ignore[valid-type, misc]
        def clean(self):
            cleaned = super().clean()
            self.add_error(_field_for_param(self, error.param), error.message)
            return cleaned

    Refused.__name__ = form_class.__name__
    return Refused


# --- the base ModelAdmin --------------------------------------------------------------------------


def request_actor(request: HttpRequest) -> policy.Actor:
    """The policy's view of the logged-in user, loaded once per request."""
    actor = getattr(request, "_accessctl_actor", None)
    if actor is None:
        actor = policy.actor_for(request.user)
        request._accessctl_actor = actor
    return actor


class ServiceAdmin(admin.ModelAdmin):
    """Permissions come from `accessctl.policy`; every write goes through a service with the acting user.

    Subclasses name their policy actions (`policy_actions`), describe a row for the policy
    (`policy_target`), and implement `create`, `update` and `remove` by calling services.
    A service's refusal (`ServiceError`) is shown on the form, and its transaction is rolled back.
    """

    # {"view": ..., "add": ..., "change": ..., "delete": ...}; a missing verb is not allowed.
    policy_actions: ClassVar[dict[str, str]] = {}
    list_per_page = 50
    save_as = False

    # --- permissions (issue 7 narrows querysets per tenant; until then only platform-wide readers) --

    def policy_target(self, obj: Any | None) -> policy.Target | None:
        return None

    def allowed(self, request: HttpRequest, verb: str, obj: Any | None = None) -> bool:
        action = self.policy_actions.get(verb)
        if action is None or not request.user.is_authenticated:
            return False
        actor = request_actor(request)
        # Querysets are not yet filtered by tenant, so only actors who may read every tenant see rows.
        if not actor.reads_everything:
            return False
        return policy.can(actor, action, self.policy_target(obj)).allowed

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
            saved = self.update(request, obj, data) if data else obj
        else:
            saved = self.create(request, form)
        adopt(obj, saved)

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        self.remove(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        # One service call per row, so each deletion is audited and invalidates its cache entries.
        for obj in queryset:
            self.remove(request, obj)

    def save_formset(self, request: HttpRequest, form: forms.BaseForm, formset: Any, change: bool) -> None:
        # commit=False fills new/changed/deleted_objects (the admin's change message) without writing.
        formset.save(commit=False)
        formset.service_inline.save_with_services(request, formset)

    def get_form(self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any):
        form_class = super().get_form(request, obj, change=change, **kwargs)
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

    def each_through_service(self, request: HttpRequest, queryset: models.QuerySet, write, done: str) -> int:
        """Run `write(obj)` (a service call) for each selected row; report refusals per row."""
        count = 0
        for obj in queryset:
            try:
                write(obj)
            except ServiceError as exc:
                self.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
            else:
                count += 1
        if count:
            self.message_user(request, done.format(count=count), messages.SUCCESS)
        return count


class ReadOnlyAdmin(ServiceAdmin):
    """Rows written elsewhere (audit entries, budget rows): visible, never edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return False


# --- inlines ------------------------------------------------------------------------------------


class ServiceInline(admin.TabularInline):
    """An inline whose rows are written by services: subclasses implement `save_with_services`.

    Permissions follow the parent row: who may change a team may change its members here.
    """

    extra = 0
    show_change_link = False

    def get_formset(self, request: HttpRequest, obj: Any | None = None, **kwargs: Any):
        formset_class = super().get_formset(request, obj, **kwargs)
        formset_class.service_inline = self
        return formset_class

    def _parent_admin(self) -> ServiceAdmin:
        return self.admin_site._registry[self.parent_model]

    def has_view_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self._parent_admin().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        parent = self._parent_admin()
        return parent.has_change_permission(request, obj) if obj is not None else parent.has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self.has_add_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any | None = None) -> bool:
        return self.has_add_permission(request, obj)

    def save_with_services(self, request: HttpRequest, formset: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must save its rows through a service")


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
