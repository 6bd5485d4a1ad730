"""Where each LiteLLM table lands in accessctl: the model, how its rows are found, created and updated.

Creates go through `insert_rows` (COPY / executemany), updates through `bulk_update`; the caller (`writer`)
decides which rows, inside the batch's transaction, and records the audit entry.
"""
from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth.hashers import make_password
from django.db import connection
from django.db.models import F, Lookup, Model, Q
from django.db.models.functions import Lower
from django.utils import timezone

from accessctl.events import Affects, publish
from accessgroups.models import AccessGroup, CatalogModel, KeyAccessGroup, TeamAccessGroup
from accessgroups.services import count_assignments
from keys.models import VirtualKey
from orgs.models import Organization, OrganizationMembership, Team, TeamMembership, User

from .insert import insert_rows
from .mapping import BUDGET_VALUE_FIELDS, membership_id
from .report import TableReport
from .values import Mapped

if TYPE_CHECKING:
    from .writer import Importer

ACTOR_LABEL = "import_litellm"  # created_by / updated_by of rows the import writes
NOT_IMPORTED = "accessctl already has a row with this id that the import did not create: left as it is"
ALREADY_IN_CATALOG = "already in accessctl's catalog: left as it is"


@dataclass
class Current:
    """An accessctl row as it is now: its primary key and its values under the import's keys."""

    pk: Any
    values: dict[str, Any]


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
        publish(Affects(catalog=True))  # /v1/models expands to the cached catalog
