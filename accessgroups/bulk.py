"""Bulk assignment of access groups to many keys or teams: set-based SQL in batches (SPEC §4, §7).

Each batch is one transaction. On PostgreSQL: (1) read the next keys or teams in creation order (ids
only); (2) lock the groups; (3) one statement (`bulk_sql.apply_batch`) inserts (`ON CONFLICT DO NOTHING`)
or deletes the assignment rows and applies the same difference to those targets' `access_group_ids` —
under each row's lock, so a list a concurrent writer changed meanwhile gets the difference on top of its
change; (4) add to the groups' counts what the statement added or removed (a group holds counts, not
lists: issue 17); (5) write one audit entry — a count and a sample of the keys or teams, not all of them —
whose `affects` drops the batch's snapshots after commit. Elsewhere (SQLite, and Django's bulk methods
for other databases) the same steps take a few statements: insert or delete the rows, lock the groups,
read the batch's assignments, compare-and-set the lists (re-reading any a writer changed meanwhile),
which also rewrites a drifted list of the batch from the relation. Groups are locked before keys, as on
the per-row signal path, so the two never deadlock. The number of queries grows with the number of
batches, never with the number of rows.

Re-running is safe: rows already in the wanted state are skipped, so a run interrupted after some
batches committed simply finishes the rest (a job also resumes after its `cursor`).
"""
from __future__ import annotations

import datetime
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import BigIntegerField, Count, F, Func, Max, Q, QuerySet, TextField
from django.db.models.functions import Cast, Lower
from django.utils import timezone

from accessctl import metrics
from accessctl.errors import Conflict, InvalidInput, NotFound
from accessctl.ids import as_id
from accessctl.policy import Target, access_group_target
from keys import crypto
from orgs.audit import Affects, record
from orgs.models import Organization, Team, User

from .bulk_sql import (
    KEYS,
    KINDS,
    TEAMS,
    Kind,
    apply_batch,
    assignments_of,
    delete_assignments,
    insert_assignments,
    lists_of,
    write_target_lists,
)
from .models import AccessGroup, BulkJob
from .services import count_assignments

ASSIGN, UNASSIGN = "assign", "unassign"
AUDIT_SAMPLE = 20  # keys or teams named in a batch's audit entry; the entry counts them all
DEFAULT_BATCH_SIZE = 10_000  # keys or teams per transaction (SQLite's parameter limit caps it lower)
# SQLite's Django backend assumes 999 parameters per statement; PostgreSQL takes 65,535 (and gets arrays).
_PG_MAX_PARAMS = 65_535
_INSERT_PARAMS_PER_ROW = 3  # target id, group id, created_at


@dataclass(frozen=True)
class Selection:
    """Which keys or teams: explicit ids and/or filters, combined with AND. `all` must be said explicitly."""

    ids: tuple[str, ...] = ()
    team_id: str | None = None
    organization_id: str | None = None
    alias_prefix: str | None = None
    all: bool = False

    def __bool__(self) -> bool:
        return bool(self.ids or self.team_id or self.organization_id or self.alias_prefix or self.all)

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if v not in (None, (), False)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        return cls(
            ids=tuple(str(i) for i in data.get("ids") or ()),
            team_id=data.get("team_id"),
            organization_id=data.get("organization_id"),
            alias_prefix=data.get("alias_prefix"),
            all=bool(data.get("all")),
        )


@dataclass
class BatchReport:
    """What one batch did (or, in a dry run, would do): handed to the progress callback after commit."""

    matched: int
    changed: list[tuple[str, str]]  # dry run: (public id, label) of the keys or teams that would change
    cursor: str
    total: int  # what the whole run matched


@dataclass
class BulkResult:
    """The summary of a run; `changed + unchanged == matched`."""

    operation: str
    target: str
    access_group_ids: list[str]
    dry_run: bool
    matched: int = 0
    changed: int = 0
    unchanged: int = 0
    rows: int = 0  # assignment rows added or removed
    batches: int = 0
    seconds: float = 0.0
    cursor: str = ""
    finished: bool = True  # False: a job's slice ran out with targets left (it continues in a new task)

    def as_dict(self) -> dict[str, Any]:
        summary = asdict(self)
        del summary["finished"]
        return summary


@dataclass
class _Plan:
    """A validated run: the groups, the kind, the base queryset, and the explicit ids if any."""

    kind: Kind
    groups: list[AccessGroup]
    organization_id: str | None
    queryset: QuerySet
    positions: list[tuple[datetime.datetime, uuid.UUID]] | None = None  # explicit ids, in processing order
    # A filter's run covers the targets created up to its start: the newest created_at it matched then.
    until: datetime.datetime | None = None
    notes: list[str] = field(default_factory=list)


# --- resolving the request --------------------------------------------------------------------


def _uuid(value: Any) -> uuid.UUID | None:
    """A key's primary key (keys keep UUIDs; teams and groups have SPEC §1's string ids)."""
    try:
        return uuid.UUID(str(value).strip())
    except (ValueError, AttributeError):
        return None


def _id(value: Any) -> str | None:
    """A team, organization or access-group id (SPEC §1), or None when the value cannot be one."""
    return as_id(str(value).strip()) if value is not None else None


def resolve_groups(refs: Iterable[str], *, organization: Organization | None = None) -> list[AccessGroup]:
    """Groups named by id or by name (case-insensitive). With `organization`, only global groups and
    that organization's are visible. Unknown or ambiguous names → 400 naming `access_group`."""
    refs = [str(r).strip() for r in refs if str(r).strip()]
    if not refs:
        raise InvalidInput("Name at least one access group.", param="access_group")
    visible = AccessGroup.objects.all()
    if organization is not None:
        visible = visible.filter(Q(organization__isnull=True) | Q(organization=organization))
    # A ref is an id or a name: ids are free strings (SPEC §1), so an id match wins, then names.
    ids = [i for i in map(_id, refs) if i is not None]
    names = [r.lower() for r in refs]
    rows = list(
        visible.annotate(lname=Lower("access_group_name")).filter(Q(access_group_id__in=ids) | Q(lname__in=names))
    )
    found: dict[str, AccessGroup] = {}
    for ref in refs:
        by_id = [g for g in rows if g.access_group_id == ref]
        if by_id:
            matches = by_id
        else:
            matches = [g for g in rows if g.access_group_name.lower() == ref.lower()]
            own = [g for g in matches if organization is not None and g.organization_id == organization.pk]
            matches = own or matches
        if not matches:
            raise InvalidInput(f"Unknown access group: {ref!r}", param="access_group")
        if len(matches) > 1:
            choices = ", ".join(sorted(str(g.pk) for g in matches))
            raise InvalidInput(f"Access group name {ref!r} is ambiguous; use one of the ids: {choices}",
                               param="access_group")
        found[str(matches[0].pk)] = matches[0]
    return sorted(found.values(), key=lambda g: g.access_group_id)


def _restricted_org(groups: Sequence[AccessGroup], organization: Organization | None) -> str | None:
    """The organization every target must belong to: the groups' owner, else the caller's tenant."""
    owners = {str(g.organization_id) for g in groups if g.organization_id is not None}
    if len(owners) > 1:
        raise InvalidInput("Access groups of different organizations cannot be assigned together.",
                           param="access_group")
    tenant = str(organization.pk) if organization is not None else None
    owner = next(iter(owners), None)
    if owner and tenant and owner != tenant:
        raise InvalidInput("An organization's access group may only be assigned inside it.", param="access_group")
    return owner or tenant


def _filtered(kind: Kind, selection: Selection, org_id: str | None) -> QuerySet:
    qs = kind.model.objects.all()
    if org_id is not None:
        qs = qs.filter(organization_id=org_id)
    if selection.organization_id:
        wanted = _id(selection.organization_id)
        if wanted is None or not Organization.objects.filter(pk=wanted).exists():
            raise InvalidInput(f"Unknown organization: {selection.organization_id}", param="organization_id")
        if org_id is not None and str(wanted) != org_id:
            raise InvalidInput("The organization is outside what this assignment may reach.", param="organization_id")
        qs = qs.filter(organization_id=wanted)
    if selection.team_id:
        if kind.name == TEAMS:
            raise InvalidInput("team_id filters keys; choose teams by ids, organization or alias prefix.",
                               param="team_id")
        team_id = _id(selection.team_id)
        teams = Team.objects.filter(pk=team_id) if team_id is not None else Team.objects.none()
        if org_id is not None:
            teams = teams.filter(organization_id=org_id)
        if team_id is None or not teams.exists():
            raise InvalidInput(f"Unknown team: {selection.team_id}", param="team_id")
        qs = qs.filter(team_id=team_id)
    if selection.alias_prefix:
        qs = qs.filter(**{f"{kind.alias_field}__startswith": selection.alias_prefix})
    return qs


def _resolve_ids(kind: Kind, refs: Sequence[str], qs: QuerySet, chunk: int) -> list[tuple[datetime.datetime, Any]]:
    """(created_at, primary key) of the named keys (id, token or raw secret) or teams (id), sorted; one
    query per chunk.

    Any ref not found inside `qs` (missing, or outside the tenant) → 400; raw secrets are never echoed.
    """
    unknown: list[str] = []
    positions: set[tuple[datetime.datetime, Any]] = set()
    for start in range(0, len(refs), chunk):
        part = refs[start : start + chunk]
        by_id = {u: r for r in part if (u := _uuid(r)) is not None}
        if kind.name == KEYS:
            by_token = {crypto.token_for(r): r for r in part if _uuid(r) is None}
            rows = qs.filter(Q(id__in=list(by_id)) | Q(token__in=list(by_token))).values_list(
                "id", "token", "created_at"
            )
            seen: set[str] = set()
            for pk, token, created_at in rows:
                positions.add((created_at, pk))
                seen.update({str(pk), token})
            unknown += [r for u, r in by_id.items() if str(u) not in seen]
            unknown += [r for t, r in by_token.items() if t not in seen]
        else:
            team_ids = {t: r for r in part if (t := _id(r)) is not None}
            rows = qs.filter(team_id__in=list(team_ids)).values_list("created_at", "team_id")
            positions.update(rows)
            found = {pk for _, pk in positions}
            unknown += [r for r in part if _id(r) is None or _id(r) not in found]
    if unknown:
        shown = ", ".join(crypto.mask(r) if r.strip().startswith(crypto.KEY_PREFIX) else r for r in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InvalidInput(f"Unknown {kind.name[:-1]} ids: {shown}{more}", param="ids")
    return sorted(positions)


def batch_limit(requested: int, groups: int) -> int:
    """Targets per batch such that the batch's INSERT and UPDATE are each a single statement."""
    max_params = connection.features.max_query_params or _PG_MAX_PARAMS
    by_insert = max_params // (_INSERT_PARAMS_PER_ROW * max(groups, 1))
    by_update = max_params // 4  # SQLite's compare-and-set: pk, new and old list in VALUES, pk in the IN
    return max(1, min(requested, by_insert, by_update))


def plan(
    *,
    target: str,
    group_refs: Iterable[str],
    selection: Selection,
    organization: Organization | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> _Plan:
    """Validate a request (groups, selection, tenant) without writing; 400 naming the field if it is wrong."""
    if target not in KINDS:
        raise InvalidInput("target must be 'keys' or 'teams'.", param="target")
    if not selection:
        raise InvalidInput("Choose the targets: ids, a filter (team_id, organization_id, alias_prefix) or all.",
                           param="ids")
    kind = KINDS[target]
    groups = resolve_groups(group_refs, organization=organization)
    org_id = _restricted_org(groups, organization)
    qs = _filtered(kind, selection, org_id)
    positions = None
    if selection.ids:
        positions = _resolve_ids(kind, list(dict.fromkeys(selection.ids)), qs, batch_limit(batch_size, len(groups)))
    return _Plan(kind=kind, groups=groups, organization_id=org_id, queryset=qs, positions=positions)


# --- the set-based writes ---------------------------------------------------------------------


def _ids(values: Iterable[Any]) -> list[str]:
    return sorted({str(v) for v in values})


def _lock_groups(groups: Sequence[AccessGroup]) -> None:
    # Groups first, in id order — the order `services.sync_groups` (the per-row signal path) locks in.
    wanted = [g.pk for g in groups]
    found = list(AccessGroup.objects.select_for_update().filter(pk__in=wanted).order_by("pk").values_list("pk", flat=True))
    if len(found) != len(wanted):
        raise NotFound("An access group was deleted while the assignment ran.", param="access_group")


Position = tuple[datetime.datetime, Any]  # (created_at, primary key): the order targets are processed in
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def encode_position(position: Position, *, uuid_pk: bool = True) -> str:
    """A compact, resumable cursor: microseconds since the epoch and the primary key (a key's UUID as hex;
    a team's string id, SPEC §1, as it is)."""
    created_at, pk = position
    ident = uuid.UUID(str(pk)).hex if uuid_pk else str(pk)
    return f"{(created_at - _EPOCH) // datetime.timedelta(microseconds=1)}:{ident}"


def decode_position(cursor: str, *, uuid_pk: bool = True) -> Position | None:
    try:
        micros, pk = cursor.split(":", 1)
        return _EPOCH + datetime.timedelta(microseconds=int(micros)), (uuid.UUID(pk) if uuid_pk else pk)
    except (ValueError, AttributeError):
        return None


class _EpochMicros(Func):
    """A timestamp as integer microseconds since the epoch (PostgreSQL; exact, `EXTRACT` being numeric)."""

    template = "(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint"
    output_field = BigIntegerField()


def _fetch(p: _Plan, after: Position | None, limit: int, index: int, labels: bool) -> list[tuple]:
    """The next batch of targets in (created_at, id) order: (id as text, created_at, list as JSON text,
    public id[, labels]); see `_position` for created_at.

    Creation order follows the table's physical order, so a batch touches a few neighbouring pages
    (and index leaves) rather than one random page per row: far less I/O and WAL than id order.
    No row lock: the lists are written with a compare-and-set (`write_target_lists`).
    """
    kind = p.kind
    qs = p.queryset.annotate(lists_text=Cast("access_group_ids", TextField()))
    id_field, created_field = kind.pk, "created_at"
    if connection.vendor == "postgresql":
        # Ids as text and times as integers from the database: Django's per-value timestamptz loader
        # and the UUID objects cost more Python time than the query itself at 10,000 rows a batch.
        qs = qs.annotate(id_text=Cast(kind.pk, TextField()), created_us=_EpochMicros("created_at"))
        id_field, created_field = "id_text", "created_us"
    public = ("token",) if kind.name == KEYS else ()
    fields = (id_field, created_field, "lists_text", *public, *(kind.label_fields if labels else ()))
    if id_field == "id_text" and not labels:
        fields = (id_field, created_field)  # PostgreSQL's batch reads neither lists nor tokens (apply_batch)
    if p.positions is not None:
        chunk = p.positions[index * limit : (index + 1) * limit]
        if not chunk:
            return []
        qs = qs.filter(pk__in=[pk for _, pk in chunk])
    elif p.until is None:
        return []  # nothing matched when the run started
    else:
        # The upper bound ends the last batch's index scan at the selection's last target, not at the
        # end of the table (the scan filters the rows it reads by the selection).
        qs = qs.filter(created_at__lte=p.until)
        if after is not None:
            created_at, pk = after
            # The `>=` bounds the scan from below; the OR only settles ties (it cannot be an index
            # condition: without the bound every batch would scan the targets of all batches before it).
            qs = qs.filter(created_at__gte=created_at).filter(Q(created_at__gt=created_at) | Q(pk__gt=pk))
    qs = qs.order_by("created_at", kind.pk).values_list(*fields)
    if p.positions is None:
        qs = qs[:limit]
    if id_field == "id_text":
        # Text and integers need none of Django's per-value converters: read the rows as the driver gives them.
        sql, params = qs.query.get_compiler(using=qs.db).as_sql()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    # Ids as text from here on: cheap to hash and compare, and what the SQL of `bulk_sql` speaks.
    return [(str(row[0]), *row[1:]) for row in qs]


def _position(row: tuple) -> Position:
    """Where a fetched row stands in processing order; its created_at may be epoch microseconds."""
    created_at = row[1]
    if isinstance(created_at, int):
        created_at = _EPOCH + datetime.timedelta(microseconds=created_at)
    return created_at, row[0]


def _public_id(kind: Kind, row: tuple) -> str:
    return row[3] if kind.name == KEYS else row[0]  # a key's public id is its token


def _label(kind: Kind, row: tuple) -> str:
    if kind.name == KEYS:
        return row[5] or row[6]  # alias, else the masked secret (fetched for dry runs)
    return row[3] or row[0]


_CAS_ATTEMPTS = 5


def _truth(kind: Kind, target_ids: Sequence[str]) -> dict[str, set[str]]:
    """The groups of each target (by id as text), from the assignment rows: the truth the lists must equal."""
    truth: dict[str, set[str]] = defaultdict(set)
    for target_id, group_id in assignments_of(kind, target_ids):
        truth[target_id].add(group_id)
    return truth


def _run_batch(
    p: _Plan, rows: list[tuple], operation: str, dry_run: bool, actor: User | None, job: BulkJob | None
) -> tuple[int, list[tuple], int]:
    """Apply one batch; returns (targets changed, their rows for a dry run's labels, assignment rows
    added or removed).

    Order, the per-row signal path's (assignment row, then group, then key), so the two cannot deadlock:
    insert or delete the assignment rows (which says exactly what changed), lock the groups, read the
    batch's assignments, compare-and-set the batch's lists (again for any a concurrent writer synced in
    between), then update the groups' lists under their locks.
    """
    kind = p.kind
    group_ids = [str(g.pk) for g in p.groups]
    target_ids = [row[0] for row in rows]
    if dry_run:
        truth = _truth(kind, target_ids)
        want = (lambda t, g: g not in truth[t]) if operation == ASSIGN else (lambda t, g: g in truth[t])
        done = [(t, g) for t in target_ids for g in group_ids if want(t, g)]
        changed_ids = {t for t, _ in done}
        changed = [row for row in rows if row[0] in changed_ids]
        return len(changed), changed, len(done)
    if connection.vendor == "postgresql":
        return _run_batch_postgresql(p, rows, operation, actor, job)
    write = insert_assignments if operation == ASSIGN else delete_assignments
    done = write(kind, target_ids, group_ids)
    changed_ids = {t for t, _ in done}
    changed = [row for row in rows if row[0] in changed_ids]
    _lock_groups(p.groups)
    deltas: dict[str, int] = defaultdict(int)
    for _, group_id in done:
        deltas[group_id] += 1 if operation == ASSIGN else -1
    count_assignments(kind.relation, deltas)  # exact: `done` is what this batch's statement added or removed
    # Rewrite every list of the batch that differs from the relation: the changed ones, and any that drifted.
    truth = _truth(kind, target_ids)
    read = {row[0]: row[2] for row in rows}
    rewritten: set[Any] = set()
    encoded: dict[tuple[str, ...], str] = {}  # most keys of a batch end with the same list: encode it once
    for _attempt in range(_CAS_ATTEMPTS):
        updates = {}
        for pk, text in read.items():
            groups = truth[pk]
            wanted = tuple(groups) if len(groups) < 2 else tuple(sorted(groups))  # most have one: no sort
            if wanted not in encoded:
                encoded[wanted] = json.dumps(list(wanted))
            if text != encoded[wanted]:
                updates[pk] = (text, wanted)
        written = write_target_lists(kind, updates)
        rewritten |= written
        missed = set(updates) - written
        if not missed:
            break
        # A concurrent writer synced these lists after they were read: read them and their rows again.
        read = lists_of(kind, sorted(missed))
        truth.update(_truth(kind, sorted(missed)))
    else:
        raise Conflict("The keys or teams kept changing during the assignment; run it again.", param="ids")
    stale = [row for row in rows if row[0] in rewritten]
    touched = {row[0]: row for row in [*changed, *stale]}
    if touched:
        _audit_batch(
            p, operation, actor, job, rows,
            changed=sorted(_public_id(kind, row) for row in changed),
            repaired=sorted(_public_id(kind, row) for row in stale if row[0] not in changed_ids),
            touched=[_public_id(kind, row) for row in touched.values()],
            assignment_rows=len(done),
        )
    return len(changed), [], len(done)


def _run_batch_postgresql(
    p: _Plan, rows: list[tuple], operation: str, actor: User | None, job: BulkJob | None
) -> tuple[int, list[tuple], int]:
    """One batch on PostgreSQL: lock the groups (first, as the per-row path does), then one statement
    changes the assignment rows and the same targets' lists (`bulk_sql.apply_batch`), then the groups'
    counts and the audit entry. No list is read into Python and no assignment row is read back."""
    kind = p.kind
    group_ids = [str(g.pk) for g in p.groups]
    _lock_groups(p.groups)
    with connection.cursor() as cursor:
        # The statement's estimated cost passes PostgreSQL's JIT threshold, and compiling it costs more
        # than the JIT saves on 10,000 rows (~10 ms a batch): this batch's transaction runs without it.
        cursor.execute("SET LOCAL jit = off")
    applied = apply_batch(kind, [row[0] for row in rows], group_ids, assign=operation == ASSIGN)
    deltas: dict[str, int] = defaultdict(int)
    step = 1 if operation == ASSIGN else -1
    if len(group_ids) == 1:
        deltas[group_ids[0]] = step * len(applied)
    else:
        for _, groups in applied:
            for group_id in groups:
                deltas[group_id] += step
    count_assignments(kind.relation, deltas)
    assignment_rows = sum(abs(n) for n in deltas.values())
    if applied:
        public = sorted(public_id for public_id, _ in applied)
        _audit_batch(p, operation, actor, job, rows, changed=public, repaired=[], touched=public,
                     assignment_rows=assignment_rows)
    return len(applied), [], assignment_rows


def _audit_batch(
    p: _Plan, operation: str, actor: User | None, job: BulkJob | None, rows: list[tuple], *,
    changed: list[str], repaired: list[str], touched: list[str], assignment_rows: int,
) -> None:
    """The batch's one audit entry: counts, and a sample to recognise the batch by (10,000 tokens per
    entry would make the audit log the biggest table of a bulk run); its snapshots dropped after commit."""
    kind = p.kind
    affects = Affects(tokens=set(touched)) if kind.name == KEYS else Affects(team_ids=set(touched))
    noun = kind.name[:-1]
    group_ids = [str(g.pk) for g in p.groups]
    record(
        actor=actor,
        action=f"access_group_bulk_{operation}",
        object_type="access_group",
        object_id=group_ids[0],
        organization_id=p.organization_id,
        after={
            "access_group_ids": _ids(group_ids),
            "target": kind.name,
            f"{noun}_count": len(changed),
            f"{noun}_ids_sample": changed[:AUDIT_SAMPLE],
            "repaired_count": len(repaired),
            "repaired_ids_sample": repaired[:AUDIT_SAMPLE],
            "rows": assignment_rows,
            "first": rows[0][0],
            "last": rows[-1][0],
            "job_id": str(job.pk) if job is not None else None,
        },
        affects=affects,
    )


def bulk_assign(
    *,
    actor: User | None,
    target: str,
    group_refs: Iterable[str],
    selection: Selection,
    unassign: bool = False,
    dry_run: bool = False,
    organization: Organization | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[BatchReport], None] | None = None,
    job: BulkJob | None = None,
    resume_after: str = "",
    deadline: float | None = None,
) -> BulkResult:
    """Assign (or unassign) access groups to every key or team the selection matches.

    Guarantees: each batch commits on its own with its audit entry, its snapshots dropped after commit;
    the invariant of SPEC §4 holds after every batch; nothing changes twice, so a re-run (or a job resumed
    after `resume_after`) only does what is left. A dry run reads, counts and reports, and writes nothing.
    A filter covers what it matches when the run starts, as `matched` counts it: keys or teams created
    during the run are left to the next one. With a `deadline` (`time.monotonic()`), no batch starts
    after it and `result.finished` says whether anything was left.
    """
    started = time.monotonic()
    p = plan(target=target, group_refs=group_refs, selection=selection, organization=organization,
             batch_size=batch_size)
    operation = UNASSIGN if unassign else ASSIGN
    result = BulkResult(operation, target, _ids(g.pk for g in p.groups), dry_run, cursor=resume_after)
    if p.positions is not None:
        result.matched = len(p.positions)
    else:
        found = p.queryset.aggregate(matched=Count("*"), until=Max("created_at"))
        result.matched, p.until = found["matched"], found["until"]
    if job is not None:
        BulkJob.objects.filter(pk=job.pk).update(matched=result.matched)
    limit = batch_limit(batch_size, len(p.groups))
    after = decode_position(resume_after, uuid_pk=p.kind.uuid_pk) if resume_after else None
    if after is not None and p.positions is not None:
        p.positions = [position for position in p.positions if position > after]
    for report in _batches(p, operation, dry_run, actor, job, limit, after, result, deadline):
        if on_batch is not None:
            on_batch(report)
    result.unchanged = result.matched - result.changed
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _batches(
    p: _Plan, operation: str, dry_run: bool, actor: User | None, job: BulkJob | None, limit: int,
    after: Position | None, result: BulkResult, deadline: float | None = None,
) -> Iterator[BatchReport]:
    index = 0
    while True:
        with transaction.atomic():
            rows = _fetch(p, after, limit, index=index, labels=dry_run)
            if not rows:
                break
            changed, changed_rows, count = _run_batch(p, rows, operation, dry_run, actor, job)
            if not dry_run:
                metrics.bulk_rows(operation, len(rows))
            after = _position(rows[-1])
            if job is not None:
                # In the batch's transaction: the job's progress, its heartbeat and the batch commit
                # together, and only while this run still holds the job (else the batch rolls back).
                progressed = BulkJob.objects.filter(pk=job.pk, runner=job.runner).update(
                    processed=F("processed") + len(rows), changed=F("changed") + changed,
                    cursor=encode_position(after, uuid_pk=p.kind.uuid_pk), heartbeat_at=timezone.now(),
                )
                if not progressed:
                    raise JobTakenOver(str(job.pk))
        result.batches += 1
        result.changed += changed
        result.rows += count
        result.cursor = encode_position(after, uuid_pk=p.kind.uuid_pk)
        index += 1
        # Labels only for a dry run, which prints them; a real run reports counts.
        labels = [(_public_id(p.kind, r), _label(p.kind, r)) for r in changed_rows] if dry_run else []
        yield BatchReport(len(rows), labels, result.cursor, result.matched)
        if p.positions is None and len(rows) < limit:
            break
        if deadline is not None and time.monotonic() >= deadline:
            result.finished = False
            break


# --- background jobs --------------------------------------------------------------------------


def bulk_assign_start(
    *,
    actor: User | None,
    target: str,
    group_refs: Iterable[str],
    selection: Selection,
    unassign: bool = False,
    dry_run: bool = False,
    organization: Organization | None = None,
) -> BulkJob:
    """Validate now (400 naming the field), then queue the run as a Celery task once this commits.

    The entry point for the REST API and the admin's bulk actions. Returns the job to poll.
    """
    group_refs = list(group_refs)
    p = plan(target=target, group_refs=group_refs, selection=selection, organization=organization)
    with transaction.atomic():
        job = BulkJob.objects.create(
            operation=UNASSIGN if unassign else ASSIGN,
            target=target,
            access_group_ids=_ids(g.pk for g in p.groups),
            selection=selection.as_dict(),
            dry_run=dry_run,
            organization_id=p.organization_id,
            requested_by=actor.user_id if actor is not None else "system",
            matched=len(p.positions) if p.positions is not None else 0,
        )
        from .tasks import run_bulk_job

        transaction.on_commit(lambda: run_bulk_job.delay(str(job.pk)))
    return job


class JobTakenOver(Exception):
    """Another run holds the job now (it was resumed, or redelivered after this run was thought dead)."""


def job_stalled(job: BulkJob, now: datetime.datetime | None = None) -> bool:
    """Queued or running, and no batch (nor a start or a resume) for `BULK_JOB_STALL_SECONDS`: its worker
    is most likely gone. A stalled job may be resumed."""
    if job.status not in (BulkJob.QUEUED, BulkJob.RUNNING):
        return False
    now = now or timezone.now()
    last = job.heartbeat_at or job.created_at
    return (now - last).total_seconds() > settings.BULK_JOB_STALL_SECONDS


def job_group_target(job: BulkJob) -> Target:
    """What resuming a job is judged on: the same as starting it (`access_group:assign` on its group)."""
    group = AccessGroup.objects.filter(pk__in=job.access_group_ids).first()
    if group is None:
        raise Conflict("The job's access group no longer exists; start a new job.", param="job_id")
    return access_group_target(group)


def _queue_run(job_id: str, runner: str) -> None:
    from .tasks import run_bulk_job

    run_bulk_job.apply_async((job_id,), task_id=runner)


def bulk_job_resume(*, actor: User | None, job: BulkJob) -> BulkJob:
    """Queue a stalled job again; it continues after its last committed batch. 409 unless it is stalled.

    The new run holds the job from now on: the old message, should the broker still redeliver it,
    finds the job held by another live run and stops (and so does the old run, were it only slow).
    The caller has been authorized as for starting the job (`access_group:assign` on its group).
    """
    with transaction.atomic():
        job = BulkJob.objects.select_for_update().get(pk=job.pk)
        if not job_stalled(job):
            state = "finished" if job.status in (BulkJob.SUCCEEDED, BulkJob.FAILED) else "making progress"
            raise Conflict(f"The job is {state}; only a stalled job can be resumed.", param="job_id")
        runner = uuid.uuid4().hex
        before = {"runner": job.runner, "heartbeat_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None}
        BulkJob.objects.filter(pk=job.pk).update(runner=runner, heartbeat_at=timezone.now())
        record(
            actor=actor,
            action="bulk_job_resume",
            object_type="bulk_job",
            object_id=job.pk,
            organization_id=job.organization_id,
            before=before,
            after={"runner": runner, "processed": job.processed, "cursor": job.cursor},
        )
        transaction.on_commit(lambda: _queue_run(str(job.pk), runner))
    job.refresh_from_db()
    return job


def bulk_job_run(job_id: Any, *, runner: str | None = None, slice_seconds: float | None = None) -> BulkJob:
    """Run (or resume) a queued job; records the summary, or the reason it failed. Safe to call twice.

    `runner` is the Celery task id: the job is held by one run at a time (`BulkJob.runner`), taken over
    only by a redelivery of the same message (its worker died), by a resume, or once its heartbeat is
    stale. With `slice_seconds` the run stops after that long and hands the job to a new task, so no
    message runs longer than the broker's visibility timeout. Without `runner` (a command, a test) it
    runs here, under the same rules.
    """
    from accessctl.errors import ServiceError

    runner = runner or f"direct-{uuid.uuid4().hex}"
    job = BulkJob.objects.filter(pk=_uuid(job_id)).first()
    if job is None:
        raise NotFound(f"Bulk job {job_id} not found", param="job_id")
    if job.status in (BulkJob.SUCCEEDED, BulkJob.FAILED):
        return job
    now = timezone.now()
    stale_before = now - datetime.timedelta(seconds=settings.BULK_JOB_STALL_SECONDS)
    claimed = (
        BulkJob.objects.filter(pk=job.pk, status__in=(BulkJob.QUEUED, BulkJob.RUNNING))
        .filter(Q(runner__in=("", runner)) | Q(heartbeat_at__lt=stale_before))
        .update(status=BulkJob.RUNNING, runner=runner, heartbeat_at=now, started_at=job.started_at or now)
    )
    job.refresh_from_db()
    if not claimed:
        return job  # finished meanwhile, or another live run holds it
    actor = User.objects.filter(user_id=job.requested_by).first()
    organization = Organization.objects.filter(pk=job.organization_id).first() if job.organization_id else None
    try:
        result = bulk_assign(
            actor=actor,
            target=job.target,
            group_refs=job.access_group_ids,
            selection=Selection.from_dict(job.selection),
            unassign=job.operation == UNASSIGN,
            dry_run=job.dry_run,
            organization=organization,
            job=job,
            resume_after=job.cursor,
            batch_size=settings.BULK_JOB_BATCH_SIZE,
            deadline=None if slice_seconds is None else time.monotonic() + slice_seconds,
        )
    except JobTakenOver:
        job.refresh_from_db()
        return job
    except ServiceError as exc:
        BulkJob.objects.filter(pk=job.pk, runner=runner).update(
            status=BulkJob.FAILED, error=exc.message, finished_at=timezone.now()
        )
    except OperationalError:
        raise  # the database went away: the task retries, and the job resumes after its cursor
    except Exception as exc:
        # Anything else will fail again: say so on the job instead of leaving it "running" forever.
        BulkJob.objects.filter(pk=job.pk, runner=runner).update(
            status=BulkJob.FAILED, error=f"Internal error ({type(exc).__name__}); see the worker's log.",
            finished_at=timezone.now(),
        )
        raise
    else:
        if not result.finished:
            # The slice is over: hand the job to a new message, which continues after the cursor.
            successor = uuid.uuid4().hex
            if BulkJob.objects.filter(pk=job.pk, runner=runner).update(runner=successor,
                                                                          heartbeat_at=timezone.now()):
                _queue_run(str(job.pk), successor)
            job.refresh_from_db()
            return job
        job.refresh_from_db(fields=["changed"])
        # A resumed job's counters span every attempt; this attempt's result only covers what was left.
        summary = {**result.as_dict(), "changed": job.changed, "unchanged": result.matched - job.changed}
        BulkJob.objects.filter(pk=job.pk, runner=runner).update(
            status=BulkJob.SUCCEEDED, result=summary, processed=result.matched, finished_at=timezone.now()
        )
    job.refresh_from_db()
    return job
