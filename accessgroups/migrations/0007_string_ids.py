"""SPEC §1: access-group ids become caller-chosen strings (UUID strings when omitted)."""
from django.db import migrations, models

import accessctl.ids
from accessctl.migration_ids import hyphenate_uuid_ids


class Migration(migrations.Migration):

    dependencies = [
        ("accessgroups", "0006_bulk_job_heartbeat"),
        ("orgs", "0004_string_ids"),
    ]

    operations = [
        migrations.AlterField(
            model_name="accessgroup",
            name="access_group_id",
            field=models.CharField(
                default=accessctl.ids.new_id, editable=False,
                help_text="Caller-chosen string id (SPEC §1); a UUID string when omitted.",
                max_length=128, primary_key=True, serialize=False,
            ),
        ),
        migrations.AlterField(
            model_name="bulkjob",
            name="cursor",
            field=models.CharField(
                blank=True, default="", help_text="Last id handled; a retried job resumes after it.", max_length=200
            ),
        ),
        migrations.RunPython(
            hyphenate_uuid_ids([("accessgroups", "AccessGroup")]), migrations.RunPython.noop, elidable=False
        ),
    ]
