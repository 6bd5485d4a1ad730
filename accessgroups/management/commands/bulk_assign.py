"""manage.py bulk_assign: assign (or --unassign) access groups to many keys or teams, in batches."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from accessctl.errors import ServiceError
from accessgroups.bulk import DEFAULT_BATCH_SIZE, KEYS, BatchReport, Selection, bulk_assign
from accessgroups.bulk_sql import TEAMS

# Header names recognised in a CSV file, first match wins; without one, the first column is used.
CSV_COLUMNS = ("key", "token", "key_id", "id", "team_id")


def read_csv_ids(path: str, column: str | None = None) -> list[str]:
    """The ids in one column of a CSV file (a header row is detected by its column names)."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}") from exc
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if column is not None:
        if column.lower() not in header:
            raise CommandError(f"{path} has no column {column!r}; its header is {rows[0]}")
        index, rows = header.index(column.lower()), rows[1:]
    elif known := [name for name in CSV_COLUMNS if name in header]:
        index, rows = header.index(known[0]), rows[1:]
    else:
        index = 0
    return [row[index].strip() for row in rows if len(row) > index and row[index].strip()]


class Command(BaseCommand):
    help = (
        "Assign (or with --unassign remove) access groups to many keys or teams, chosen by ids, a CSV file "
        "or filters. Batched set-based SQL; idempotent, so an interrupted run can simply be run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--group", "-g", action="append", required=True, dest="groups", metavar="NAME_OR_ID",
                            help="Access group by id or name; repeat for several.")
        kind = parser.add_mutually_exclusive_group()
        kind.add_argument("--keys", action="store_const", const=KEYS, dest="target", help="Target keys (default).")
        kind.add_argument("--teams", action="store_const", const=TEAMS, dest="target", help="Target teams.")
        parser.add_argument("--ids", nargs="+", default=[], metavar="ID",
                            help="Key ids, tokens or secrets, or team ids.")
        parser.add_argument("--csv", dest="csv_path", metavar="FILE", help="A CSV file listing the ids.")
        parser.add_argument("--csv-column", metavar="NAME", help="Column of --csv to read (default: detected).")
        parser.add_argument("--team", metavar="TEAM_ID", help="Keys of this team.")
        parser.add_argument("--organization", metavar="ORG_ID", help="Keys or teams of this organization.")
        parser.add_argument("--alias-prefix", metavar="PREFIX", help="Keys (key_alias) or teams (team_alias) "
                                                                     "whose alias starts with this.")
        parser.add_argument("--all", action="store_true", help="Every key or team (within the other filters).")
        parser.add_argument("--unassign", action="store_true", help="Remove the groups instead of assigning them.")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; write nothing.")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Targets per transaction.")
        parser.add_argument("--json", action="store_true", help="Print only a JSON summary.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar, even on a terminal.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        ids = list(options["ids"])
        if options["csv_path"]:
            ids += read_csv_ids(options["csv_path"], options["csv_column"])
            if not ids:
                raise CommandError(f"{options['csv_path']} lists no ids.")
        selection = Selection(
            ids=tuple(ids),
            team_id=options["team"],
            organization_id=options["organization"],
            alias_prefix=options["alias_prefix"],
            all=options["all"],
        )
        target = options["target"] or KEYS
        as_json, dry_run = options["json"], options["dry_run"]
        verb = "remove" if options["unassign"] else "assign"
        show_bar = not (as_json or options["no_progress"]) and sys.stderr.isatty()
        bar = tqdm(unit=target[:-1], file=sys.stderr, disable=not show_bar)

        def on_batch(report: BatchReport) -> None:
            if bar.total is None:
                bar.reset(total=report.total)
            bar.update(report.matched)
            if dry_run and not as_json:
                with bar.external_write_mode():
                    for public_id, label in report.changed:
                        self.stdout.write(f"would {verb}: {target[:-1]} {label} ({public_id})")

        try:
            result = bulk_assign(
                actor=None,
                target=target,
                group_refs=options["groups"],
                selection=selection,
                unassign=options["unassign"],
                dry_run=dry_run,
                batch_size=options["batch_size"],
                on_batch=on_batch,
            )
        except ServiceError as exc:
            raise CommandError(f"{exc.param}: {exc.message}" if exc.param else exc.message) from exc
        finally:
            bar.close()
        if as_json:
            self.stdout.write(json.dumps(result.as_dict(), sort_keys=True))
            return
        done = "would change" if dry_run else ("unassigned from" if options["unassign"] else "assigned to")
        self.stdout.write(self.style.SUCCESS(
            f"{'Dry run: ' if dry_run else ''}{result.matched} {target} matched; {done} {result.changed}, "
            f"{result.unchanged} unchanged ({result.rows} assignment rows, {result.batches} batches, "
            f"{result.seconds:.2f}s)."
        ))
