"""Helpers shared by every app: partial updates with a before/after diff, spreadsheet-safe CSV cells."""
from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import models


def jsonable(value: Any) -> Any:
    """A value as it may be stored in an audit entry's JSON."""
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def field_values(instance: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The audit form of some fields of a row (foreign keys by their id)."""
    out: dict[str, Any] = {}
    for name in fields:
        field = instance._meta.get_field(name)
        attname = getattr(field, "attname", name)
        out[name] = jsonable(getattr(instance, attname))
    return out


def model_update(
    instance: models.Model, data: dict[str, Any], fields: Iterable[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set the allowed `fields` present in `data` and save only those that changed.

    Returns the (before, after) of the changed fields; both empty when nothing changed, in which
    case nothing is written.
    """
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name in fields:
        if name not in data:
            continue
        field = instance._meta.get_field(name)
        attname = getattr(field, "attname", name)
        old = getattr(instance, attname)
        new = data[name]
        new_value = new.pk if isinstance(new, models.Model) else new
        if old == new_value:
            continue
        before[name] = jsonable(old)
        if isinstance(new, models.Model) or new is None and field.is_relation:
            setattr(instance, name, new)
        else:
            setattr(instance, attname, new_value)
        after[name] = jsonable(getattr(instance, attname))
    if after:
        update_fields = [*after.keys()]
        if any(f.name == "updated_at" for f in instance._meta.get_fields()):
            update_fields.append("updated_at")
        instance.save(update_fields=update_fields)
    return before, after


# A spreadsheet evaluates a cell that starts with one of these as a formula (`=HYPERLINK(...)`, `@SUM(...)`,
# and tab or carriage return before one): OWASP's "CSV injection".
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a string that could start a formula is prefixed with `'`.
    Numbers are written as numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
