"""SPEC §1: organization and team ids become caller-chosen strings (UUID strings when omitted).

Depends on the latest migrations of `keys` and `accessgroups` so that their foreign keys to teams and
organizations are part of the state: Django then changes those columns' type with the primary keys
(dropping and recreating the constraints on PostgreSQL, rebuilding the tables on SQLite).
"""
from django.db import migrations, models

import accessctl.ids
from accessctl.migration_ids import hyphenate_uuid_ids


class Migration(migrations.Migration):

    # After every keys and accessgroups migration that precedes it in history: on SQLite, changing a
    # primary key rebuilds the tables that refer to it from the state *before* this migration, so that
    # state must already hold their later columns (or unapplying it drops them).
    dependencies = [
        ("orgs", "0003_team_legacy_admins_members"),
        ("keys", "0009_key_rotation"),
        ("accessgroups", "0006_bulk_job_heartbeat"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditentry",
            name="organization_id",
            field=models.CharField(
                blank=True, db_index=True, help_text="Tenant the object belongs to, for filtering.",
                max_length=128, null=True,
            ),
        ),
        migrations.AlterField(
            model_name="organization",
            name="organization_id",
            field=models.CharField(
                default=accessctl.ids.new_id, editable=False,
                help_text="Caller-chosen string id (SPEC §1); a UUID string when omitted.",
                max_length=128, primary_key=True, serialize=False,
            ),
        ),
        migrations.AlterField(
            model_name="team",
            name="team_id",
            field=models.CharField(
                default=accessctl.ids.new_id, editable=False,
                help_text="Caller-chosen string id (SPEC §1); a UUID string when omitted.",
                max_length=128, primary_key=True, serialize=False,
            ),
        ),
        migrations.RunPython(
            hyphenate_uuid_ids(
                [("orgs", "Organization"), ("orgs", "Team")], extra=[("orgs", "AuditEntry", "organization_id")]
            ),
            migrations.RunPython.noop,
            elidable=False,
        ),
    ]
