"""Leave more than half of each page of the keys table free, so that rewriting a key row stays a HOT update.

A key row is rewritten far more often than it is created: twice per recorded usage (`spend`, then
`model_spend`), and on every access-group change. None of those columns is indexed, so PostgreSQL can
write the new version next to the old one without touching the table's nine indexes (a HOT update) —
but only if the page has room for it. With full pages (the default fillfactor of 100) every such update
moves the row to another page and inserts a new entry in every index, three of which (id, token, alias)
are in random order: one random index page dirtied, and written to the WAL in full after a checkpoint,
per key and index. A bulk assignment rewrites every key of a page in one transaction (a team's keys are
often created together), so a page needs room for a new version of each of its rows, each a little
longer than the old one (one more group in `access_group_ids`). Measured on the bench database, 10,000
keys of one team after a checkpoint: fillfactor 100: 0 % HOT, 135 MB of WAL, 0.5-1.4 s; 70: 39 %,
111-146 MB, 0.34-0.46 s; 50: 94 %, 25-28 MB, 0.13-0.15 s; 45: 100 %, 4 MB, 0.06-0.08 s. The cost is
disk: the table (not its indexes) takes 2.3 times the pages, ~550 MB per million keys. Listings read
keys through indexes, 50 at a time, and do not notice.

Existing pages keep their layout until the table is rewritten (`VACUUM FULL` or pg_repack in a
maintenance window); new and updated rows get the room at once. Other databases have no such setting.
"""
from django.db import migrations

FILLFACTOR = 45


def _set(schema_editor, apps, value: int | None) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("keys", "VirtualKey")._meta.db_table)
    setting = f"SET (fillfactor = {value})" if value is not None else "RESET (fillfactor)"
    schema_editor.execute(f"ALTER TABLE {table} {setting}")


def forwards(apps, schema_editor):
    _set(schema_editor, apps, FILLFACTOR)


def backwards(apps, schema_editor):
    _set(schema_editor, apps, None)


class Migration(migrations.Migration):

    dependencies = [
        ("keys", "0004_drop_token_like_index"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
