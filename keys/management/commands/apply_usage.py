"""Apply the buffered usage reports now (what the `keys.apply_usage` task does), then print the count."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from keys.usage import usage_drain


class Command(BaseCommand):
    help = "Apply every pending usage report to its key, team, organization and user, batch after batch."

    def add_arguments(self, parser):
        parser.add_argument("--max-seconds", type=float, default=None, help="Stop after this long.")

    def handle(self, *args, max_seconds: float | None = None, **options) -> None:
        applied, more = usage_drain(max_seconds=max_seconds)
        self.stdout.write(f"applied {applied} usage reports" + ("; more are pending" if more else ""))
