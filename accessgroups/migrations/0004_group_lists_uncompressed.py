"""Store the groups' id lists uncompressed on PostgreSQL: a bulk assignment rewrites them once per batch."""
from django.db import migrations

COLUMNS = ("assigned_key_ids", "assigned_team_ids")


def set_storage(storage: str):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for column in COLUMNS:
            # A list of 100,000 tokens is ~6.5 MB of JSON; compressing it again on every batch's rewrite costs
            # more than the disk it saves. Long lists are still stored out of line (TOAST), just not compressed.
            schema_editor.execute(f"ALTER TABLE accessgroups_accessgroup ALTER COLUMN {column} SET STORAGE {storage}")

    return apply


class Migration(migrations.Migration):
    dependencies = [("accessgroups", "0003_bulkjob")]

    operations = [migrations.RunPython(set_storage("EXTERNAL"), set_storage("EXTENDED"))]
