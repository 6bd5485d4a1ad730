"""Drop the `varchar_pattern_ops` index PostgreSQL gets for the unique `token` column.

Django adds it to every unique CharField so that `LIKE 'abc%'` can use an index outside the C locale.
Nothing searches tokens by prefix: a token is a SHA-256 hex, looked up by equality (the unique index),
and the admin's search is `icontains`, which no B-tree serves. The index was pure cost: its leaves are
in random order, so every key update that is not HOT (a bulk access-group assignment, for one) dirtied
one more random page per key — about a third of the WAL of a bulk batch, as full-page images.
"""
from django.db import migrations


def _like_index(schema_editor, model) -> str:
    # The name Django gave it, and the one its schema editor drops (IF EXISTS) if `token` ever changes.
    return schema_editor._create_index_name(model._meta.db_table, ["token"], suffix="_like")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # only PostgreSQL's schema editor creates these indexes
    model = apps.get_model("keys", "VirtualKey")
    schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(_like_index(schema_editor, model))}")


def restore(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    model = apps.get_model("keys", "VirtualKey")
    qn = schema_editor.quote_name
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {qn(_like_index(schema_editor, model))} "
        f"ON {qn(model._meta.db_table)} ({qn('token')} varchar_pattern_ops)"
    )


class Migration(migrations.Migration):

    dependencies = [
        ("keys", "0003_drop_redundant_fk_indexes"),
    ]

    operations = [
        migrations.RunPython(drop, restore, elidable=False),
    ]
