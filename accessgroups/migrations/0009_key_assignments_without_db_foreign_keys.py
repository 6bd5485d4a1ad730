"""Key assignments keep their foreign keys in Django only: the writers lock what the rows point at (issue 17)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accessgroups', '0008_group_counts'),
        ('keys', '0011_usage_report_no_request_id'),
    ]

    operations = [
        migrations.AlterField(
            model_name='keyaccessgroup',
            name='access_group',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='key_assignments', to='accessgroups.accessgroup'),
        ),
        migrations.AlterField(
            model_name='keyaccessgroup',
            name='key',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='access_group_assignments', to='keys.virtualkey'),
        ),
    ]
