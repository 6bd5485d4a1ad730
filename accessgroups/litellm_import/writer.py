"""The import's writes: each table batch compared with what accessctl holds, then written in one transaction
with one audit entry (its counts) and the cache invalidation of what it changed.

A row is created when accessctl has nothing under its id; updated when the import made it and accessctl has
left it as the import wrote it (its values' digest is kept in `ImportedRow`); otherwise left alone and
reported: a row accessctl changed since (a key blocked or rotated, a spend that grew here), a row deleted
here since (never re-created: a revoked key stays revoked), an id held by a row the import did not make.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from orgs.audit import Affects, record
from orgs.models import AuditEntry, Budget, ImportedRow, User

from .insert import insert_rows
from .mapping import BUDGET_VALUE_FIELDS
from .report import TableReport
from .targets import ACTOR_LABEL, ALREADY_IN_CATALOG, Current, Target, among
from .values import Mapped, Refs, fingerprint

SOURCE = "litellm"
AUDIT_ACTION = "litellm_import"
# Above this many keys (or rows naming keys) a batch drops every snapshot at once: the invalidation log
# does the same above its own bound (keys.revocations.MAX_NAMES_PER_NOTE).
NAMED_INVALIDATION_LIMIT = 500

DELETED_HERE = "deleted in accessctl since it was imported: not re-created"
CHANGED_HERE = "changed in accessctl since it was imported: left as accessctl has it"
RETIRED = "the id belonged to an accessctl row deleted earlier (ids are never reused)"


@dataclass
class Decisions:
    """What one batch does with each of its rows (the rest are reported as kept or skipped)."""

    create: list[Mapped] = field(default_factory=list)
    update: list[tuple[Mapped, Current]] = field(default_factory=list)
    # Rows that exist and stay (unchanged, or changed here and kept): they still count as parents.
    present: list[tuple[Mapped, Current]] = field(default_factory=list)
    refresh: list[tuple[ImportedRow, str]] = field(default_factory=list)


# --- the run ----------------------------------------------------------------------------------------

class Importer:
    """Writes the mapped rows of one import run (or, dry, only decides what it would write)."""

    def __init__(self, *, refs: Refs, dry_run: bool, run_id: str, source_label: str) -> None:
        self.refs = refs
        self.dry_run = dry_run
        self.run_id = run_id
        self.source_label = source_label
        self.budget_report = TableReport("LiteLLM_BudgetTable")

    def user_pks(self, user_ids: Iterable[str]) -> dict[str, int]:
        user_ids = list(user_ids)
        if not user_ids:
            return {}
        return dict(User.objects.filter(among("user_id", user_ids)).values_list("user_id", "pk"))

    def write_budgets(self, rows: dict[uuid.UUID, dict[str, Any]]) -> None:
        """Create or update the budget rows an organization or membership points to."""
        if not rows:
            return
        existing = set(Budget.objects.filter(among("budget_id", rows)).values_list("budget_id", flat=True))
        insert_rows(Budget, [
            {"budget_id": b, "created_by": ACTOR_LABEL, "updated_by": ACTOR_LABEL, **v} for b, v in rows.items()
            if b not in existing
        ])
        now = timezone.now()
        Budget.objects.bulk_update(
            [Budget(budget_id=b, updated_by=ACTOR_LABEL, updated_at=now, **rows[b]) for b in existing],
            [*BUDGET_VALUE_FIELDS, "updated_by", "updated_at"],
            batch_size=500,
        )

    def _decide(self, target: Target, plans: list[Mapped], report: TableReport) -> Decisions:
        provenance = {
            row.source_id: row
            for row in ImportedRow.objects.filter(
                among("source_id", [p.source_id for p in plans]), source=SOURCE, source_table=target.source_table
            )
        }
        # Rows the last run wrote with these very values need no name or alias checks again.
        settled = [p for p in plans if p.source_id in provenance and provenance[p.source_id].fingerprint == p.digest()]
        settled_ids = {p.source_id for p in settled}
        plans = settled + target.prepare([p for p in plans if p.source_id not in settled_ids], report)
        current = target.current(plans, lock=False) if plans else {}
        fresh = [p for p in plans if p.source_id not in provenance and p.target_id not in current]
        clashes = target.clashes(fresh) if fresh else set()
        retired: set[str] = set()
        if target.object_type and fresh:
            retired = set(
                AuditEntry.objects.filter(
                    among("object_id", [target.retired_id(p) for p in fresh]), object_type=target.object_type
                ).values_list("object_id", flat=True)
            )
        decisions = Decisions()
        for plan in plans:
            prov, cur = provenance.get(plan.source_id), current.get(plan.target_id)
            new = plan.digest()
            if prov is not None:
                if cur is None:
                    report.skip(DELETED_HERE, plan.label)
                    continue
                now_there = fingerprint(cur.values, plan.values)
                if now_there == new:
                    report.unchanged += 1
                    self.budget_report.unchanged += 1 if plan.values.get("budget_id") else 0
                    decisions.present.append((plan, cur))
                    if prov.fingerprint != new:
                        decisions.refresh.append((prov, new))
                elif now_there != prov.fingerprint:
                    report.keep(CHANGED_HERE, plan.label)
                    decisions.present.append((plan, cur))
                else:
                    decisions.update.append((plan, cur))
            elif cur is not None or plan.source_id in clashes:
                if target.not_imported_reason == ALREADY_IN_CATALOG:
                    report.keep(ALREADY_IN_CATALOG, plan.label)
                else:
                    report.skip(target.not_imported_reason, plan.label)
            elif target.retired_id(plan) in retired:
                report.skip(RETIRED, plan.label)
            else:
                decisions.create.append(plan)
        return decisions

    def apply(self, target: Target, plans: list[Mapped], report: TableReport) -> None:
        """Decide and write one batch of a table: one transaction, one audit entry with its counts."""
        if not plans:
            return
        report.batches += 1
        if self.dry_run:
            self._settle(target, self._decide(target, plans, report), report)
            return
        with transaction.atomic():
            decisions = self._decide(target, plans, report)
            updates = self._still_as_imported(target, decisions, report)
            if decisions.create:
                target.create(decisions.create)
            if updates:
                target.update(updates)
            self._remember(target, decisions)
            if decisions.create or updates:
                changed = [(p, None) for p in decisions.create] + updates
                record(
                    actor=None,
                    action=AUDIT_ACTION,
                    object_type=AUDIT_ACTION,
                    object_id=self.run_id,
                    after={
                        "source": self.source_label,
                        "source_table": target.source_table,
                        "batch": report.batches,
                        "created": len(decisions.create),
                        "updated": len(updates),
                    },
                    affects=self._bounded(target.affects(changed)),
                )
            self._settle(target, decisions, report)

    def _still_as_imported(self, target: Target, decisions: Decisions, report: TableReport) -> list[tuple[Mapped, Current]]:
        """The rows to update, locked, each checked again under its lock: one an accessctl write changed
        since it was read is kept as accessctl has it. (Reads take no lock, so a run with nothing to write
        writes nothing, not even row locks.)"""
        if not decisions.update:
            return []
        locked = target.current([p for p, _ in decisions.update], lock=True)
        updates = []
        for plan, cur in decisions.update:
            now = locked.get(plan.target_id)
            if now is None:
                report.skip(DELETED_HERE, plan.label)
            elif fingerprint(now.values, plan.values) == fingerprint(cur.values, plan.values):
                updates.append((plan, now))
            else:
                report.keep(CHANGED_HERE, plan.label)
                decisions.present.append((plan, now))
        decisions.update = updates
        return updates

    def _settle(self, target: Target, decisions: Decisions, report: TableReport) -> None:
        report.created += len(decisions.create)
        report.updated += len(decisions.update)
        # Budget rows are written with the organizations and memberships that own them.
        self.budget_report.created += sum(1 for p in decisions.create if p.values.get("budget_id"))
        self.budget_report.updated += sum(1 for p, _ in decisions.update if p.values.get("budget_id"))
        for plan in [*decisions.create, *(p for p, _ in decisions.update)]:
            target.available(plan, plan.values)
        for plan, cur in decisions.present:
            target.available(plan, cur.values)

    def _remember(self, target: Target, decisions: Decisions) -> None:
        now = timezone.now()
        insert_rows(ImportedRow, [
            {"source": SOURCE, "source_table": target.source_table, "source_id": p.source_id,
             "target_id": p.target_id, "fingerprint": p.digest(), "imported_at": now, "updated_at": now}
            for p in decisions.create
        ])
        by_source = {
            row.source_id: row
            for row in ImportedRow.objects.filter(
                among("source_id", [p.source_id for p, _ in decisions.update]), source=SOURCE,
                source_table=target.source_table,
            )
        } if decisions.update else {}
        refreshed = []
        for plan, _ in decisions.update:
            row = by_source[plan.source_id]
            row.fingerprint, row.updated_at = plan.digest(), now
            refreshed.append(row)
        for row, new in decisions.refresh:
            row.fingerprint, row.updated_at = new, now
            refreshed.append(row)
        ImportedRow.objects.bulk_update(refreshed, ["fingerprint", "updated_at"], batch_size=1000)

    @staticmethod
    def _bounded(affects: Affects) -> Affects:
        named = sum(len(s) for s in (affects.tokens, affects.key_ids, affects.team_ids, affects.organization_ids,
                                     affects.user_pks, affects.access_group_ids))
        return Affects(everything=True) if named > NAMED_INVALIDATION_LIMIT else affects
