"""The import's writes: each table batch compared with what accessctl holds, then written in one transaction
with one audit entry (its counts) and the cache invalidation of what it changed.

A row is created when accessctl has nothing under its id; updated when the import made it and accessctl has
left it as the import wrote it (its values' digest is kept in `ImportedRow`); otherwise left alone and
reported: a row accessctl changed since (a key blocked or rotated, a spend that grew here), a row deleted
here since (never re-created: a revoked key stays revoked), an id held by a row the import did not make.
"""
from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.db.models import F, Lookup, Model, Q
from django.db.models.functions import Lower
from django.utils import timezone

from accessgroups.models import AccessGroup, CatalogModel, KeyAccessGroup, TeamAccessGroup
from accessgroups.services import count_assignments
from keys.models import VirtualKey
from orgs.audit import Affects, record
from orgs.models import (
    AuditEntry,
    Budget,
    ImportedRow,
    Organization,
    OrganizationMembership,
    Team,
    TeamMembership,
    User,
)

from .insert import insert_rows
from .mapping import BUDGET_VALUE_FIELDS, Mapped, fingerprint, membership_id

SOURCE = "litellm"
ACTOR_LABEL = "import_litellm"  # created_by / updated_by of rows the import writes
AUDIT_ACTION = "litellm_import"
# Above this many keys (or rows naming keys) a batch drops every snapshot at once: the invalidation log
# does the same above its own bound (keys.revocations.MAX_NAMES_PER_NOTE).
NAMED_INVALIDATION_LIMIT = 500

DELETED_HERE = "deleted in accessctl since it was imported: not re-created"
CHANGED_HERE = "changed in accessctl since it was imported: left as accessctl has it"
NOT_IMPORTED = "accessctl already has a row with this id that the import did not create: left as it is"
ALREADY_IN_CATALOG = "already in accessctl's catalog: left as it is"
RETIRED = "the id belonged to an accessctl row deleted earlier (ids are never reused)"
EXAMPLES_PER_REASON = 5


@dataclass
class TableReport:
    """What happened to one source table's rows."""

    table: str
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0
    skipped: int = 0
    batches: int = 0
    skip_reasons: Counter = field(default_factory=Counter)
    kept_reasons: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: Counter = field(default_factory=Counter)

    def skip(self, reason: str, example: str) -> None:
        self.skipped += 1
        self.skip_reasons[reason] += 1
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(example)

    def keep(self, reason: str, example: str) -> None:
        self.kept += 1
        self.kept_reasons[reason] += 1
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(example)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "kept": self.kept,
            "skipped": self.skipped,
            "batches": self.batches,
            "skip_reasons": [
                {"reason": r, "rows": n, "examples": self.examples[r]} for r, n in self.skip_reasons.most_common()
            ],
            "kept_reasons": [
                {"reason": r, "rows": n, "examples": self.examples[r]} for r, n in self.kept_reasons.most_common()
            ],
            "notes": [{"note": r, "rows": n} for r, n in self.notes.most_common()],
        }


# --- comparing what the import writes with what accessctl holds --------------------------------------

@dataclass
class Current:
    """An accessctl row as it is now: its primary key and its values under the import's keys."""

    pk: Any
    values: dict[str, Any]


@dataclass
class Decisions:
    create: list[Mapped] = field(default_factory=list)
    update: list[tuple[Mapped, Current]] = field(default_factory=list)
    # Rows that exist and stay (unchanged, or changed here and kept): they still count as parents.
    present: list[tuple[Mapped, Current]] = field(default_factory=list)
    refresh: list[tuple[ImportedRow, str]] = field(default_factory=list)


class _AnyOf(Lookup):
    """`field = ANY(%s)`: a list as one array parameter. psycopg parses every placeholder of a query, and an
    IN list of 5,000 values cost more than the lookup itself (cProfile, `make bench-import`)."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, list(self.rhs)]


def among(field: str, values: Iterable[Any]) -> Q | Lookup:
    """A filter: `field` is one of `values` (on PostgreSQL as `= ANY(array)`, elsewhere as IN)."""
    values = list(values)
    if connection.vendor == "postgresql":
        return _AnyOf(F(field), values)
    return Q(**{f"{field}__in": values})


def _locked(queryset: Any, lock: bool) -> Any:
    if not lock:
        return queryset
    if connection.features.has_select_for_update_of:
        return queryset.select_for_update(of=("self",))
    return queryset.select_for_update()


def _direct(values: dict[str, Any]) -> dict[str, Any]:
    """The values that are columns of the row itself (not `budget__…` of its budget, not `user__user_id`)."""
    return {k: v for k, v in values.items() if "__" not in k}


def _budget_rows(plans: Iterable[Mapped]) -> dict[uuid.UUID, dict[str, Any]]:
    rows = {}
    for plan in plans:
        if plan.values.get("budget_id"):
            rows[uuid.UUID(plan.values["budget_id"])] = {k: plan.values[f"budget__{k}"] for k in BUDGET_VALUE_FIELDS}
    return rows


# --- the tables' targets ------------------------------------------------------------------------------

class Target:
    """How one source table lands in accessctl: the model, how rows are found, created and updated."""

    name: str
    source_table: str
    model: type[Model]
    id_field: str = "pk"
    # Audit entries of this object type keep ids of deleted rows, which are never reused (SPEC §1).
    object_type: str | None = None
    not_imported_reason: str = NOT_IMPORTED

    def __init__(self, importer: Importer) -> None:
        self.importer = importer

    # reads
    def current(self, plans: list[Mapped], lock: bool) -> dict[str, Current]:
        paths = sorted({k for p in plans for k in p.values})
        rows = _locked(self.model.objects.filter(among(self.id_field, [p.target_id for p in plans])), lock)
        out = {}
        for row in rows.values("pk", self.id_field, *paths):
            out[str(row[self.id_field])] = Current(row["pk"], {k: row[k] for k in paths})
        return out

    def clashes(self, plans: list[Mapped]) -> set[str]:
        """Source ids whose row would collide with an accessctl row under another id (keys: a token)."""
        return set()

    def retired_id(self, plan: Mapped) -> str:
        return plan.target_id

    def prepare(self, plans: list[Mapped], report: TableReport) -> list[Mapped]:
        """Last checks that need accessctl's rows (names, aliases); may refuse or adjust a plan."""
        return plans

    # writes
    def create(self, plans: list[Mapped]) -> None:
        raise NotImplementedError

    def update(self, plans: list[tuple[Mapped, Current]]) -> None:
        raise NotImplementedError

    def affects(self, changed: list[tuple[Mapped, Current | None]]) -> Affects:
        return Affects()

    # parents for later tables
    def available(self, plan: Mapped, values: dict[str, Any]) -> None:
        """Called for every row that is in accessctl after this batch (or would be, in a dry run)."""

    def _bulk_update(self, rows: list[Model], fields: Iterable[str]) -> None:
        # created_at never changes in LiteLLM, and a row without one must not get the model's default here.
        if rows:
            self.model.objects.bulk_update(rows, sorted(set(fields) - {"created_at"}), batch_size=500)


class OrganizationTarget(Target):
    name, source_table, model, object_type = "organizations", "LiteLLM_OrganizationTable", Organization, "organization"

    def create(self, plans: list[Mapped]) -> None:
        self.importer.write_budgets(_budget_rows(plans))
        insert_rows(Organization, [
            {"organization_id": p.target_id, "updated_by": ACTOR_LABEL, **_direct(p.values)} for p in plans
        ])

    def update(self, plans: list[tuple[Mapped, Current]]) -> None:
        self.importer.write_budgets(_budget_rows(p for p, _ in plans))
        now = timezone.now()
        rows = [Organization(organization_id=p.target_id, updated_by=ACTOR_LABEL, updated_at=now, **_direct(p.values))
                for p, _ in plans]
        self._bulk_update(rows, [*_direct(plans[0][0].values), "updated_by", "updated_at"])

    def affects(self, changed: list[tuple[Mapped, Current | None]]) -> Affects:
        return Affects(organization_ids={p.target_id for p, _ in changed})

    def available(self, plan: Mapped, values: dict[str, Any]) -> None:
        self.importer.refs.organizations.add(plan.target_id)


class UserTarget(Target):
    name, source_table, model, object_type, id_field = "users", "LiteLLM_UserTable", User, "user", "user_id"

    def create(self, plans: list[Mapped]) -> None:
        insert_rows(User, [
            {"user_id": p.target_id, "password": make_password(None), "is_active": True, **p.values} for p in plans
        ])

    def update(self, plans: list[tuple[Mapped, Current]]) -> None:
        now = timezone.now()
        rows = [User(pk=cur.pk, user_id=p.target_id, updated_at=now, **p.values) for p, cur in plans]
        self._bulk_update(rows, [*_direct(plans[0][0].values), "updated_at"])

    def affects(self, changed: list[tuple[Mapped, Current | None]]) -> Affects:
        return Affects(user_pks={cur.pk for _, cur in changed if cur is not None})

    def available(self, plan: Mapped, values: dict[str, Any]) -> None:
        self.importer.refs.users.add(plan.target_id)


class AccessGroupTarget(Target):
    name, source_table, model, object_type = "access_groups", "LiteLLM_AccessGroupTable", AccessGroup, "access_group"

    def __init__(self, importer: Importer) -> None:
        super().__init__(importer)
        self.claimed: dict[str, str] = {}  # lower-cased name → the source id that has it in this run

    def prepare(self, plans: list[Mapped], report: TableReport) -> list[Mapped]:
        """Names are unique per owner ignoring case (LiteLLM's only with case): the first keeps it."""
        names = {p.values["access_group_name"].lower() for p in plans}
        holders = dict(
            AccessGroup.objects.annotate(name_lower=Lower("access_group_name"))
            .filter(organization__isnull=True, name_lower__in=names)
            .values_list("name_lower", "access_group_id")
        )
        kept = []
        for plan in plans:
            lowered = plan.values["access_group_name"].lower()
            holder = self.claimed.setdefault(lowered, plan.source_id)
            if holder != plan.source_id or holders.get(lowered, plan.target_id) != plan.target_id:
                report.skip("another access group has this name (names are unique ignoring case)",
                            f"{plan.label} ({plan.source_id})")
                continue
            kept.append(plan)
        return kept

    def create(self, plans: list[Mapped]) -> None:
        insert_rows(AccessGroup, [
            {"access_group_id": p.target_id, "updated_by": ACTOR_LABEL, **p.values} for p in plans
        ])

    def update(self, plans: list[tuple[Mapped, Current]]) -> None:
        now = timezone.now()
        rows = [AccessGroup(access_group_id=p.target_id, updated_by=ACTOR_LABEL, updated_at=now, **p.values)
                for p, _ in plans]
        self._bulk_update(rows, [*_direct(plans[0][0].values), "updated_by", "updated_at"])

    def affects(self, changed: list[tuple[Mapped, Current | None]]) -> Affects:
        return Affects(access_group_ids={p.target_id for p, _ in changed})

    def available(self, plan: Mapped, values: dict[str, Any]) -> None:
        self.importer.refs.access_groups.add(plan.target_id)


class AssignedTarget(Target):
    """Teams and keys: rows with access-group assignments, whose `access_group_ids` mirror them."""

    relation: type[TeamAccessGroup] | type[KeyAccessGroup]
    relation_fk: str

    def write_assignments(self, wanted: dict[str, list[str]], *, fresh: bool) -> None:
        """Make each row's assignment rows equal to `wanted[row id]`, and the groups' counts follow."""
        have: dict[str, set[str]] = defaultdict(set)
        if not fresh:
            for row_id, group_id in self.relation.objects.filter(among(self.relation_fk, wanted)).values_list(
                self.relation_fk, "access_group_id"
            ):
                have[str(row_id)].add(str(group_id))
        deltas: Counter = Counter()
        to_delete = Q()
        for row_id, groups in wanted.items():
            for group_id in have[row_id] - set(groups):
                to_delete |= Q(**{self.relation_fk: row_id, "access_group_id": group_id})
                deltas[group_id] -= 1
        if to_delete:
            self.relation.objects.filter(to_delete).delete()
        new_rows = [
            {self.relation_fk: row_id, "access_group_id": group_id}
            for row_id, groups in wanted.items()
            for group_id in groups
            if group_id not in have[row_id]
        ]
        for row in new_rows:
            deltas[row["access_group_id"]] += 1
        insert_rows(self.relation, new_rows)
        count_assignments(self.relation, dict(deltas))


class TeamTarget(AssignedTarget):
    name, source_table, model, object_type = "teams", "LiteLLM_TeamTable", Team, "team"
    relation, relation_fk = TeamAccessGroup, "team_id"

    def create(self, plans: list[Mapped]) -> None:
        insert_rows(Team, [
            {"team_id": p.target_id, "created_by": ACTOR_LABEL, "updated_by": ACTOR_LABEL, **p.values} for p in plans
        ])
        self.write_assignments({p.target_id: p.values["access_group_ids"] for p in plans}, fresh=True)

    def update(self, plans: list[tuple[Mapped, Current]]) -> None:
        now = timezone.now()
        rows = [Team(team_id=p.target_id, updated_by=ACTOR_LABEL, updated_at=now, **p.values) for p, _ in plans]
        self._bulk_update(rows, [*_direct(plans[0][0].values), "updated_by", "updated_at"])
        self.write_assignments({p.target_id: p.values["access_group_ids"] for p, _ in plans}, fresh=False)

    def affects(self, changed: list[tuple[Mapped, Current | None]]) -> Affects:
        return Affects(team_ids={p.target_id for p, _ in changed})

    def available(self, plan: Mapped, values: dict[str, Any]) -> None:
        self.importer.refs.team_organization[plan.target_id] = values.get("organization_id")


class KeyTarget(AssignedTarget):
    name, source_table, model, object_type = "keys", "LiteLLM_VerificationToken", VirtualKey, "key"
    relation, relation_fk = KeyAccessGroup, "key_id"

    def __init__(self, importer: Importer) -> None:
        super().__init__(importer)
        self.claimed: dict[tuple[Any, ...], str] = {}  # (tenant, alias) → the source id that has it in this run

    def retired_id(self, plan: Mapped) -> str:
        return plan.source_id  # a key's audit entries name its token

    def clashes(self, plans: list[Mapped]) -> set[str]:
        tokens = [p.source_id for p in plans]
        rows = [
            *VirtualKey.objects.filter(among("token", tokens)).values_list("id", "token", "previous_token"),
            *VirtualKey.objects.filter(among("previous_token", tokens)).values_list("id", "token", "previous_token"),
        ]
        by_token: dict[str, str] = {}
        for pk, token, previous in rows:
            by_token[token] = str(pk)
            if previous:
                by_token[previous] = str(pk)
        return {p.source_id for p in plans if p.source_id in by_token and by_token[p.source_id] != p.target_id}

    @staticmethod
    def _tenant(organization_id: Any, user_id: Any) -> tuple[Any, ...]:
        """Where an alias must be unique (keys.services.alias_scope)."""
        if organization_id is not None:
            return ("organization", str(organization_id))
        if user_id is not None:
            return ("user", user_id)
        return ("none",)

    def prepare(self, plans: list[Mapped], report: TableReport) -> list[Mapped]:
        """Aliases are unique per tenant here (LiteLLM: globally, by its code only): a key whose alias
        another key of its tenant already has is imported without one."""
        aliases = {p.values["key_alias"] for p in plans if p.values["key_alias"]}
        holders: dict[tuple[Any, ...], str] = {}
        if aliases:
            for pk, alias, org_id, user_id in VirtualKey.objects.filter(among("key_alias", aliases)).values_list(
                "id", "key_alias", "organization_id", "user__user_id"
            ):
                holders[(*self._tenant(org_id, user_id), alias)] = str(pk)
        for plan in plans:
            alias = plan.values["key_alias"]
            if not alias:
                continue
            where = (*self._tenant(plan.values["organization_id"], plan.values["user__user_id"]), alias)
            holder = self.claimed.setdefault(where, plan.source_id)
            if holder != plan.source_id or holders.get(where, plan.target_id) != plan.target_id:
                report.notes["key_alias already used by another key of its tenant: imported without alias"] += 1
                plan.values["key_alias"] = None
                plan._digest = None
        return plans

    def _rows(self, plans: Iterable[Mapped], **extra: Any) -> list[dict[str, Any]]:
        plans = list(plans)
        user_pks = self.importer.user_pks({p.values["user__user_id"] for p in plans} - {None})
        return [
            {"id": uuid.UUID(p.target_id), "user_id": user_pks.get(p.values["user__user_id"]), **extra,
             **_direct(p.values)}
            for p in plans
        ]

    def create(self, plans: list[Mapped]) -> None:
        insert_rows(VirtualKey, self._rows(plans, updated_by=ACTOR_LABEL))
        self.write_assignments({p.target_id: p.values["access_group_ids"] for p in plans}, fresh=True)

    def update(self, plans: list[tuple[Mapped, Current]]) -> None:
        rows = [VirtualKey(**row) for row in self._rows([p for p, _ in plans], updated_by=ACTOR_LABEL,
                                                         updated_at=timezone.now())]
        self._bulk_update(rows, [*_direct(plans[0][0].values), "user_id", "updated_by", "updated_at"])
        self.write_assignments({p.target_id: p.values["access_group_ids"] for p, _ in plans}, fresh=False)

    def affects(self, changed: list[tuple[Mapped, Current | None]]) -> Affects:
        return Affects(tokens={p.source_id for p, _ in changed})


class MembershipTarget(Target):
    """Organization and team memberships: found by (parent id, user_id)."""

    parent_field: str

    def current(self, plans: list[Mapped], lock: bool) -> dict[str, Current]:
        pairs = {tuple(json.loads(p.target_id)) for p in plans}
        paths = sorted({k for p in plans for k in p.values})
        rows = _locked(
            self.model.objects.filter(
                among(self.parent_field, {a for a, _ in pairs}), among("user__user_id", {b for _, b in pairs})
            ),
            lock,
        )
        out = {}
        for row in rows.values("pk", self.parent_field, "user__user_id", *paths):
            pair = (str(row[self.parent_field]), row["user__user_id"])
            if pair in pairs:
                out[membership_id(*pair)] = Current(row["pk"], {k: row[k] for k in paths})
        return out

    def _rows(self, plans: Iterable[Mapped], **extra: Any) -> list[dict[str, Any]]:
        plans = list(plans)
        pairs = [json.loads(p.target_id) for p in plans]
        user_pks = self.importer.user_pks({user_id for _, user_id in pairs})
        return [
            {self.parent_field: parent, "user_id": user_pks[user_id], **extra, **_direct(p.values)}
            for p, (parent, user_id) in zip(plans, pairs, strict=True)
        ]

    def create(self, plans: list[Mapped]) -> None:
        self.importer.write_budgets(_budget_rows(plans))
        insert_rows(self.model, self._rows(plans))

    def update(self, plans: list[tuple[Mapped, Current]]) -> None:
        self.importer.write_budgets(_budget_rows(p for p, _ in plans))
        rows = [self.model(**row) for row in self._rows([p for p, _ in plans], updated_at=timezone.now())]
        for row, (_, cur) in zip(rows, plans, strict=True):
            row.pk = cur.pk
        self._bulk_update(rows, [*_direct(plans[0][0].values), "updated_at"])

    def affects(self, changed: list[tuple[Mapped, Current | None]]) -> Affects:
        pks = self.importer.user_pks({json.loads(p.target_id)[1] for p, _ in changed})
        return Affects(user_pks=set(pks.values()))


class OrganizationMemberTarget(MembershipTarget):
    name, source_table, model = "organization_members", "LiteLLM_OrganizationMembership", OrganizationMembership
    parent_field = "organization_id"


class TeamMemberTarget(MembershipTarget):
    name, source_table, model = "team_members", "LiteLLM_TeamMembership", TeamMembership
    parent_field = "team_id"


class CatalogTarget(Target):
    name, source_table, model, id_field = "catalog_models", "LiteLLM_ProxyModelTable", CatalogModel, "model_name"
    not_imported_reason = ALREADY_IN_CATALOG

    def create(self, plans: list[Mapped]) -> None:
        insert_rows(CatalogModel, [{"model_name": p.target_id, **p.values} for p in plans])
        self._catalog_changed()

    def update(self, plans: list[tuple[Mapped, Current]]) -> None:
        self._bulk_update([CatalogModel(pk=cur.pk, model_name=p.target_id, **p.values) for p, cur in plans],
                          plans[0][0].values)
        self._catalog_changed()

    @staticmethod
    def _catalog_changed() -> None:
        from keys.cache import invalidate_catalog

        transaction.on_commit(invalidate_catalog)  # /v1/models expands to the cached catalog


# --- the run ----------------------------------------------------------------------------------------

class Importer:
    """Writes the mapped rows of one import run (or, dry, only decides what it would write)."""

    def __init__(self, *, refs: Any, dry_run: bool, run_id: str, source_label: str) -> None:
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


TargetFactory = Callable[[Importer], Target]
