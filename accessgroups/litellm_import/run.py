"""One import run: LiteLLM's tables read in dependency order, each mapped and written batch by batch."""
from __future__ import annotations

import gc
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import mapping as m
from .report import TableReport
from .source import LiteLLMSource, masked_url
from .targets import (
    AccessGroupTarget,
    CatalogTarget,
    KeyTarget,
    OrganizationMemberTarget,
    OrganizationTarget,
    Target,
    TeamMemberTarget,
    TeamTarget,
    UserTarget,
)
from .values import OBJECT_PERMISSION_COLUMNS
from .writer import Importer

DEFAULT_BATCH_SIZE = 5000
REQUIRED_TABLES = (m.BUDGET_TABLE, m.ORGANIZATION_TABLE, m.USER_TABLE, m.TEAM_TABLE, m.KEY_TABLE)
UNUSED_BUDGET = (
    "not used by an organization, a membership or a key (LiteLLM's end-user, tag and default member budgets "
    "have no place here)"
)


class Progress(Protocol):
    def update(self, n: int) -> Any: ...
    def close(self) -> Any: ...


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


ProgressFactory = Callable[[str, int], Progress]


@dataclass
class ImportReport:
    """The outcome of a run, table by table."""

    run_id: str
    source: str
    dry_run: bool
    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def skipped(self) -> int:
        return sum(t.skipped for t in self.tables)

    def table(self, name: str) -> TableReport:
        return next(t for t in self.tables if t.table == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "tables": [t.as_dict() for t in self.tables],
        }


def _noting(report: TableReport) -> m.Note:
    def note(reason: str) -> None:
        report.notes[reason] += 1

    return note


class _Run:
    def __init__(self, source: LiteLLMSource, *, dry_run: bool, batch_size: int, progress: ProgressFactory) -> None:
        self.source = source
        self.batch_size = batch_size
        self.progress = progress
        self.refs = m.Refs()
        self.report = ImportReport(run_id=str(uuid.uuid4()), source=masked_url(source.url), dry_run=dry_run)
        self.importer = Importer(refs=self.refs, dry_run=dry_run, run_id=self.report.run_id,
                                 source_label=self.report.source)

    # -- helpers
    def _rows(self, table: str, columns: Iterable[str], order_by: Iterable[str],
              flags: Iterable[str] = ()) -> Iterable[list[dict[str, Any]]]:
        return self.source.rows(table, list(columns), order_by=list(order_by), batch_size=self.batch_size,
                                flags=list(flags))

    def _table(self, table: str, target: Target, columns: tuple[str, ...], order_by: tuple[str, ...],
               mapper: Callable[[dict[str, Any], m.Refs, m.Note], m.Mapped], label: Callable[[dict[str, Any]], str],
               *, flags: tuple[str, ...] = (),
               before: Callable[[list[dict[str, Any]]], None] | None = None) -> TableReport:
        report = TableReport(table)
        self.report.tables.append(report)
        note = _noting(report)
        bar = self.progress(table, self.source.count(table))
        try:
            for rows in self._rows(table, columns, order_by, flags):
                if before is not None:
                    before(rows)
                self._apply(target, report, rows, lambda row: mapper(row, self.refs, note), label)
                bar.update(len(rows))
        finally:
            bar.close()
        return report

    def _apply(self, target: Target, report: TableReport, rows: list[Any],
               mapper: Callable[[Any], m.Mapped], label: Callable[[Any], str]) -> None:
        plans = []
        for row in rows:
            report.read += 1
            try:
                plans.append(mapper(row))
            except m.Refused as refused:
                report.skip(refused.reason, f"{label(row)}: {refused.detail}" if refused.detail else label(row))
        self.importer.apply(target, plans, report)

    # -- the tables, parents first
    def run(self) -> ImportReport:
        started = time.monotonic()
        self.source.require(*REQUIRED_TABLES)
        used_budgets = self._budgets()
        self._object_permissions()
        self._table(m.ORGANIZATION_TABLE, OrganizationTarget(self.importer), m.ORGANIZATION_COLUMNS,
                    ("organization_id",), m.map_organization, lambda r: str(r.get("organization_id")))
        self._table(m.USER_TABLE, UserTarget(self.importer), m.USER_COLUMNS, ("user_id",), m.map_user,
                    lambda r: str(r.get("user_id")), flags=m.USER_UNSUPPORTED, before=self._index_emails)
        self._table(m.ACCESS_GROUP_TABLE, AccessGroupTarget(self.importer), m.ACCESS_GROUP_COLUMNS,
                    ("created_at", "access_group_id"), m.map_access_group, lambda r: str(r.get("access_group_id")),
                    flags=m.ACCESS_GROUP_UNSUPPORTED)
        members: dict[str, list[dict[str, Any]]] = {}
        self._table(m.TEAM_TABLE, TeamTarget(self.importer), m.TEAM_COLUMNS, ("team_id",), m.map_team,
                    lambda r: str(r.get("team_id")), flags=m.TEAM_UNSUPPORTED,
                    before=lambda rows: members.update((r["team_id"], m.team_members(r)) for r in rows))
        self._table(m.ORGANIZATION_MEMBERSHIP_TABLE, OrganizationMemberTarget(self.importer),
                    m.ORGANIZATION_MEMBERSHIP_COLUMNS, ("organization_id", "user_id"), m.map_organization_member,
                    lambda r: f"{r.get('organization_id')} / {r.get('user_id')}")
        self._team_members(members)
        # In token order: the primary key's index, no sort of the whole table on LiteLLM's server.
        self._table(m.KEY_TABLE, KeyTarget(self.importer), m.KEY_COLUMNS, ("token",), m.map_key,
                    lambda r: f"{str(r.get('token'))[:12]}… ({r.get('key_alias') or r.get('key_name')})",
                    flags=m.KEY_UNSUPPORTED)
        self._catalog()
        budgets = self.importer.budget_report
        budgets.read = self.source.count(m.BUDGET_TABLE)
        for budget_id in sorted(set(self.refs.budgets) - used_budgets):
            budgets.skip(UNUSED_BUDGET, budget_id)
        self.report.tables.insert(0, budgets)
        self.report.seconds = time.monotonic() - started
        return self.report

    def _budgets(self) -> set[str]:
        """Every budget row, and how many organizations and memberships use each (a shared one is copied)."""
        for rows in self._rows(m.BUDGET_TABLE, m.BUDGET_COLUMNS, ("budget_id",)):
            self.refs.budgets.update((r["budget_id"], r) for r in rows)
        used: set[str] = set()
        for table in (m.ORGANIZATION_TABLE, m.ORGANIZATION_MEMBERSHIP_TABLE, m.TEAM_MEMBERSHIP_TABLE):
            for rows in self._rows(table, ("budget_id",), ()):
                owners = [r["budget_id"] for r in rows if r["budget_id"]]
                self.refs.budget_owners.update(owners)
                used.update(owners)
        for rows in self._rows(m.KEY_TABLE, ("budget_id",), ()):
            used.update(r["budget_id"] for r in rows if r["budget_id"])
        return used

    def _object_permissions(self) -> None:
        columns = ("object_permission_id", *OBJECT_PERMISSION_COLUMNS)
        for rows in self._rows(m.OBJECT_PERMISSION_TABLE, columns, ("object_permission_id",)):
            self.refs.object_permissions.update((r["object_permission_id"], r) for r in rows)

    def _index_emails(self, rows: list[dict[str, Any]]) -> None:
        """user_email → user_id, for members named only by e-mail; an e-mail two users share names nobody."""
        for row in rows:
            email = row.get("user_email")
            if email:
                known = self.refs.user_by_email.get(email, row["user_id"])
                self.refs.user_by_email[email] = row["user_id"] if known == row["user_id"] else None

    def _team_members(self, members: dict[str, list[dict[str, Any]]]) -> None:
        """Members are a team's `members_with_roles` (what LiteLLM's checks read); their spend and budget come
        from `LiteLLM_TeamMembership`, whose rows without such an entry are reported."""
        report = TableReport(m.TEAM_MEMBERSHIP_TABLE)
        self.report.tables.append(report)
        note = _noting(report)
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for batch in self._rows(m.TEAM_MEMBERSHIP_TABLE, m.TEAM_MEMBERSHIP_COLUMNS, ("team_id", "user_id")):
            rows.update(((r["team_id"], r["user_id"]), r) for r in batch)
        entries: list[tuple[str, dict[str, Any]]] = []
        for team_id, team_entries in members.items():
            by_user: dict[str, dict[str, Any]] = {}
            for entry in team_entries:
                who = entry.get("user_id") or self.refs.user_by_email.get(entry.get("user_email") or "") \
                    or entry.get("user_email") or ""
                if who in by_user:
                    note("a user listed twice in members_with_roles: the higher role is kept")
                    if entry.get("role") != "admin":
                        continue
                by_user[who] = entry
            entries.extend((team_id, entry) for entry in by_user.values())
        bar = self.progress(m.TEAM_MEMBERSHIP_TABLE, len(entries))
        try:
            for start in range(0, len(entries), self.batch_size):
                batch = entries[start:start + self.batch_size]
                self._apply(TeamMemberTarget(self.importer), report, batch,
                            lambda item: self._team_member(item, rows, note), self._member_label)
                bar.update(len(batch))
        finally:
            bar.close()
        for (team_id, user_id), _row in sorted(rows.items()):
            report.read += 1
            report.skip("not among its team's members_with_roles (LiteLLM's list of members)", f"{team_id} / {user_id}")

    def _team_member(self, item: tuple[str, dict[str, Any]], rows: dict[tuple[str, str], dict[str, Any]],
                     note: m.Note) -> m.Mapped:
        team_id, entry = item
        user_id = entry.get("user_id") or self.refs.user_by_email.get(entry.get("user_email") or "")
        membership = rows.pop((team_id, user_id), None) if user_id else None
        if team_id not in self.refs.team_organization:
            raise m.Refused("its team is not in the source (or was not imported)", f"team_id={team_id}")
        return m.map_team_member(team_id, entry, membership, self.refs, note)

    @staticmethod
    def _member_label(item: tuple[str, dict[str, Any]]) -> str:
        team_id, entry = item
        return f"{team_id} / {entry.get('user_id') or entry.get('user_email')}"

    def _catalog(self) -> None:
        report = TableReport(m.MODEL_TABLE)
        self.report.tables.append(report)
        deployments: dict[str, list[bool]] = defaultdict(list)
        read = Counter()
        for rows in self._rows(m.MODEL_TABLE, m.MODEL_COLUMNS, ("model_name", "model_id")):
            for row in rows:
                deployments[row["model_name"]].append(bool(row.get("blocked")))
                read[row["model_name"]] += 1
        names = sorted(deployments, key=str)
        for start in range(0, len(names), self.batch_size):
            batch = names[start:start + self.batch_size]
            self._apply(CatalogTarget(self.importer), report, batch,
                        lambda name: m.map_catalog_model(name, deployments[name]), str)
        report.read = sum(read.values())


def run_import(
    source_url: str,
    *,
    schema: str | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressFactory | None = None,
) -> ImportReport:
    """Import a LiteLLM deployment's database into accessctl (or, with `dry_run`, only report what would
    change). Raises `SourceError` when the source cannot be read; rows that cannot be mapped are reported."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    # The run allocates millions of short-lived, acyclic objects (rows, values, plans), freed by reference
    # counting batch by batch; the cyclic collector only rescans them: ~17% of the CPU (bench-import).
    collecting = gc.isenabled()
    gc.disable()
    try:
        with LiteLLMSource(source_url, schema=schema) as source:
            return _Run(source, dry_run=dry_run, batch_size=batch_size,
                        progress=progress or (lambda _table, _total: _NoProgress())).run()
    finally:
        if collecting:
            gc.enable()
