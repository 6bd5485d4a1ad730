"""Form fields and form helpers of the admin pages: bounded JSON, name lists, users typed by `user_id`, and
the mapping of a service's refusal onto the form field it names."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import QuerySet
from django.forms.fields import InvalidJSONInput

from accessctl.errors import ServiceError
from accessctl.jsonbody import MAX_JSON_DEPTH, TooDeep, check_depth

# --- form fields --------------------------------------------------------------------------------


class BoundedJSONFormField(forms.JSONField):
    """Django's JSON form field with the API's nesting bound (accessctl/jsonbody.py): too deep a value is
    a form error, never a RecursionError (a 500) while cleaning or re-displaying the form."""

    too_deep = f"Nested deeper than {MAX_JSON_DEPTH} levels."

    def to_python(self, value: Any) -> Any:
        try:
            data = super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(self.too_deep, code="invalid") from None
        if isinstance(value, str):
            try:
                check_depth(data, value)
            except TooDeep:
                raise forms.ValidationError(self.too_deep, code="invalid") from None
        return data

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)


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


# --- form fields for users --------------------------------------------------------------------------


class UserIdField(forms.ModelChoiceField):
    """A user chosen by typing their `user_id`: offered to tenant admins, who may not list every user."""

    widget = forms.TextInput(attrs={"size": 30, "placeholder": "user_id"})
    default_error_messages = {"invalid_choice": "No active user has this user_id."}

    def __init__(self, queryset: QuerySet | None = None, **kwargs: Any) -> None:
        kwargs.pop("to_field_name", None)
        kwargs.setdefault("help_text", "The user's user_id.")
        if queryset is None:
            queryset = get_user_model().objects.filter(is_active=True)
        super().__init__(queryset=queryset, to_field_name="user_id", **kwargs)


def with_user_ids(form_class: type[forms.BaseForm]) -> type[forms.BaseForm]:
    """A subclass whose `UserIdField`s start from the stored user's `user_id` (the model field holds a pk)."""

    class ShowsUserIds(form_class):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            instance = getattr(self, "instance", None)
            for name, field in self.fields.items():
                if isinstance(field, UserIdField) and getattr(instance, f"{name}_id", None):
                    self.initial[name] = getattr(instance, name).user_id

    ShowsUserIds.__name__ = form_class.__name__
    return ShowsUserIds
