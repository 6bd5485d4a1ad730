"""manage.py check_access_sync [--repair]: compare the denormalized access-group ids with the relation."""
from django.core.management.base import BaseCommand, CommandError

from accessgroups.services import sync_all


class Command(BaseCommand):
    help = "Report teams, keys and access groups whose access-group id lists drifted from the assignments."

    def add_arguments(self, parser):
        parser.add_argument("--repair", action="store_true", help="Rewrite the drifted lists from the assignments.")

    def handle(self, *args, repair: bool = False, **options):
        drift = sync_all(repair=repair)
        total = sum(len(v) for v in drift.values())
        if not total:
            self.stdout.write(self.style.SUCCESS("In sync: every list equals the assignment relation."))
            return
        for kind, ids in drift.items():
            for ident in ids:
                self.stdout.write(f"drift: {kind[:-1]} {ident}")
        summary = ", ".join(f"{len(v)} {k}" for k, v in drift.items() if v)
        if repair:
            self.stdout.write(self.style.SUCCESS(f"Repaired {summary}."))
            return
        raise CommandError(f"Drift found: {summary}. Run with --repair to fix.")
