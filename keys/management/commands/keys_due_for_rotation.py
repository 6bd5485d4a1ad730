"""manage.py keys_due_for_rotation [--organization ID] [--json] [--notify]: the auto-rotating keys whose
rotation is due (masked), most overdue first."""
import json
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from keys.selectors import keys_due_for_rotation
from keys.services import mark_rotation_due


class Command(BaseCommand):
    help = "List the auto-rotating keys that are due for rotation (secrets masked); --notify audits them now."

    def add_arguments(self, parser):
        parser.add_argument("--organization", help="Only keys of this organization (its organization_id).")
        parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON object per line.")
        parser.add_argument(
            "--notify", action="store_true",
            help="Also tell the owners now through the audit log (what the beat task does every minute).",
        )

    def handle(self, *args, organization=None, as_json: bool = False, notify: bool = False, **options):
        now = timezone.now()
        if notify:
            marked = mark_rotation_due(now=now)
            self.stderr.write(f"{len(marked)} owner(s) told through the audit log.")
        keys = keys_due_for_rotation(now)
        if organization:
            try:
                keys = keys.filter(organization_id=uuid.UUID(organization))
            except ValueError as exc:
                raise CommandError(f"--organization must be an organization_id (a UUID): {organization!r}") from exc
        count = 0
        for key in keys.iterator(chunk_size=500):
            count += 1
            row = {
                "key_name": key.key_name,
                "key_alias": key.key_alias,
                "token": key.token,
                "owner": key.user.user_id if key.user_id else None,
                "team_id": str(key.team_id) if key.team_id else None,
                "organization_id": str(key.organization_id) if key.organization_id else None,
                "rotation_interval": key.rotation_interval,
                "due_at": key.rotation_due_at.isoformat(),
                "owner_told_at": key.rotation_due_notified_at.isoformat() if key.rotation_due_notified_at else None,
            }
            if as_json:
                self.stdout.write(_dumps(row))
            else:
                overdue = now - key.rotation_due_at
                self.stdout.write(
                    f"{row['key_name']}  {row['key_alias'] or '-'}  owner={row['owner'] or '-'}  "
                    f"every {row['rotation_interval']}  due {row['due_at']} ({overdue.days}d overdue)"
                )
        if not as_json:
            self.stdout.write(self.style.SUCCESS(f"{count} key(s) due for rotation."))


def _dumps(row):
    return json.dumps(row, separators=(",", ":"))
