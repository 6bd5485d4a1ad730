"""Groups keep counts of their teams and keys instead of lists that grow with every assignment (issue 17)."""

import django.db.models.deletion
from django.db import migrations, models


def count_assignments(apps, schema_editor):
    """Set both counts from the relation, in one statement per count (whatever the number of groups)."""
    qn = schema_editor.quote_name
    groups = qn(apps.get_model("accessgroups", "AccessGroup")._meta.db_table)
    for column, relation in (("assigned_team_count", "TeamAccessGroup"), ("assigned_key_count", "KeyAccessGroup")):
        table = qn(apps.get_model("accessgroups", relation)._meta.db_table)
        schema_editor.execute(
            f"UPDATE {groups} SET {qn(column)} = (SELECT COUNT(*) FROM {table} AS r "
            f"WHERE r.access_group_id = {groups}.access_group_id)"
        )
    if schema_editor.connection.vendor == "postgresql":
        # The UPDATE queued deferred foreign-key checks; PostgreSQL refuses the ALTER TABLEs that follow
        # in this transaction while they are pending, so run them now.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):

    dependencies = [
        ('accessgroups', '0007_string_ids'),
    ]

    operations = [
        # The new index first: the relation is never without one on the group's side.
        migrations.AddIndex(
            model_name='keyaccessgroup',
            index=models.Index(fields=['access_group', 'id'], name='keyaccessgroup_group_row'),
        ),
        migrations.AlterField(
            model_name='keyaccessgroup',
            name='access_group',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='key_assignments', to='accessgroups.accessgroup'),
        ),
        migrations.AddField(
            model_name='accessgroup',
            name='assigned_key_count',
            field=models.PositiveIntegerField(default=0, editable=False, help_text='Keys assigned to the group; kept equal to its key assignments.'),
        ),
        migrations.AddField(
            model_name='accessgroup',
            name='assigned_team_count',
            field=models.PositiveIntegerField(default=0, editable=False, help_text='Teams assigned to the group; kept equal to its team assignments.'),
        ),
        migrations.RunPython(count_assignments, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='accessgroup',
            name='assigned_key_ids',
        ),
        migrations.RemoveField(
            model_name='accessgroup',
            name='assigned_team_ids',
        ),
    ]
