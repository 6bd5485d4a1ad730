"""manage.py import_litellm: import a LiteLLM deployment's PostgreSQL database (accessgroups/litellm_import)."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from tqdm import tqdm

from accessgroups.litellm_import import DEFAULT_BATCH_SIZE, ImportReport, SourceError, run_import

SOURCE_ENV = "LITELLM_DATABASE_URL"


class Command(BaseCommand):
    help = (
        "Import a LiteLLM deployment's PostgreSQL database: organizations, users, teams, members, keys (their "
        "sk- secrets keep working), access groups, budgets, spend and the models of its model table. Safe to "
        "run again: a re-run writes only what changed in LiteLLM, and never re-creates or overwrites what was "
        "changed or deleted in accessctl since. Rows that cannot be mapped are skipped and reported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", metavar="URL", default=os.environ.get(SOURCE_ENV),
                            help=f"LiteLLM's DATABASE_URL (postgres://…); default: ${SOURCE_ENV}.")
        parser.add_argument("--schema", metavar="NAME",
                            help="Schema of LiteLLM's tables (default: the URL's ?schema=, else public).")
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; write nothing.")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Rows per transaction.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON only.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar, even on a terminal.")
        parser.add_argument("--strict", action="store_true", help="Exit with status 1 if any row was skipped.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["source"]:
            raise CommandError(f"Name LiteLLM's database: --source postgres://… (or set {SOURCE_ENV}).")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        show = not (options["json"] or options["no_progress"]) and sys.stderr.isatty()

        def progress(table: str, total: int) -> tqdm:
            return tqdm(total=total, desc=table, unit=" rows", file=sys.stderr, disable=not show, leave=False)

        try:
            report = run_import(
                options["source"], schema=options["schema"], dry_run=options["dry_run"],
                batch_size=options["batch_size"], progress=progress,
            )
        except SourceError as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            # Batches committed before this one stay; a re-run continues from them.
            raise CommandError(f"accessctl's database refused a write: {exc}. Batches written so far are kept; "
                               "run the command again to continue.") from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))
        else:
            self._print(report)
        if options["strict"] and report.skipped:
            raise CommandError(f"{report.skipped} rows were skipped (--strict).", returncode=1)

    def _print(self, report: ImportReport) -> None:
        write = self.stdout.write
        header = "Dry run: nothing was written. " if report.dry_run else ""
        write(f"{header}Import from {report.source} ({report.seconds:.1f}s, run {report.run_id})")
        columns = ("read", "created", "updated", "unchanged", "kept", "skipped")
        verb = "would be " if report.dry_run else ""
        width = max(len(t.table) for t in report.tables)
        write(f"  {'LiteLLM table':<{width}}  " + "  ".join(f"{c:>9}" for c in columns))
        for table in report.tables:
            write(f"  {table.table:<{width}}  " + "  ".join(f"{getattr(table, c):>9}" for c in columns))
        if report.dry_run:
            write(f"  (created / updated: {verb}created / updated)")
        for title, attr in (("Skipped (not imported)", "skip_reasons"), ("Kept as accessctl has it", "kept_reasons")):
            lines = [(t, r, n) for t in report.tables for r, n in getattr(t, attr).most_common()]
            if lines:
                write(self.style.WARNING(f"{title}:") if attr == "skip_reasons" else f"{title}:")
                for table, reason, rows in lines:
                    write(f"  {table.table}: {rows} × {reason}")
                    for example in table.examples[reason]:
                        write(f"      e.g. {example}")
        notes = [(t, r, n) for t in report.tables for r, n in t.notes.most_common()]
        if notes:
            write("Imported with a change (settings accessctl does not have):")
            for table, reason, rows in notes:
                write(f"  {table.table}: {rows} × {reason}")
        total = sum(t.created + t.updated for t in report.tables)
        summary = f"{total} rows {'would be ' if report.dry_run else ''}written, {report.skipped} skipped."
        write(self.style.SUCCESS(summary) if not report.skipped else self.style.WARNING(summary))
