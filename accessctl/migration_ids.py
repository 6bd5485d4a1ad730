"""Migration helpers for SPEC §1's string ids: UUID primary keys become `CharField(128)` primary keys.

PostgreSQL casts a `uuid` column to text in its hyphenated form, which is how the API always showed the
ids. SQLite stored Django's UUIDs as 32 hex digits; after the column becomes text, those are rewritten in
the same hyphenated form, in the primary key and in every foreign key that points at it, so every id a
client has seen keeps working.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def _hyphenate_sql(column: str) -> str:
    return (
        f"substr({column},1,8)||'-'||substr({column},9,4)||'-'||substr({column},13,4)||'-'"
        f"||substr({column},17,4)||'-'||substr({column},21,12)"
    )


def _id_columns(model: Any) -> list[tuple[str, str]]:
    """(table, column) of the model's primary key and of every foreign key that points at it."""
    columns = [(model._meta.db_table, model._meta.pk.column)]
    for rel in model._meta.related_objects:
        field = rel.field
        is_fk = getattr(field, "many_to_one", False) or getattr(field, "one_to_one", False)
        if is_fk and field.target_field.primary_key:
            columns.append((rel.related_model._meta.db_table, field.column))
    return columns


def hyphenate_uuid_ids(models: Iterable[tuple[str, str]], extra: Iterable[tuple[str, str, str]] = ()) -> Callable:
    """A RunPython function: on SQLite, 32-hex-digit ids become hyphenated UUID strings in the primary keys of
    `models` ((app_label, model_name)), in the foreign keys pointing at them, and in the `extra`
    ((app_label, model_name, field_name)) plain columns. Other databases already hold the hyphenated form."""

    def run(apps: Any, schema_editor: Any) -> None:
        connection = schema_editor.connection
        if connection.vendor != "sqlite":
            return
        qn = connection.ops.quote_name
        targets: list[tuple[str, str]] = []
        for app_label, model_name in models:
            targets += _id_columns(apps.get_model(app_label, model_name))
        for app_label, model_name, field_name in extra:
            model = apps.get_model(app_label, model_name)
            targets.append((model._meta.db_table, model._meta.get_field(field_name).column))
        with connection.cursor() as cursor:
            for table, column in dict.fromkeys(targets):
                col = qn(column)
                cursor.execute(
                    f"UPDATE {qn(table)} SET {col} = {_hyphenate_sql(col)} "
                    f"WHERE length({col}) = 32 AND {col} NOT GLOB '*[^0-9a-fA-F]*'"
                )

    return run
