"""SPEC §1: organization and team ids become caller-chosen strings (UUID strings when omitted).

Depends on the latest migrations of `keys` and `accessgroups` so that their foreign keys to teams and
organizations are part of the state: Django then changes those columns' type with the primary keys
(dropping and recreating the constraints on PostgreSQL, rebuilding the tables on SQLite).
"""
from django.db import migrations, models

import accessctl.ids
from accessctl.migration_ids import hyphenate_uuid_ids


class Migration(migrations.Migration):

    dependencies = [
        ("orgs", "0003_team_legacy_admins_members"),
        ("keys", "0005_keys_fillfactor"),
        ("accessgroups", "0005_drop_redundant_assignment_indexes"),
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
