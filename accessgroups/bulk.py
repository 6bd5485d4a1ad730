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
from typing import Any

from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, F, Func, Max, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from accessctl import metrics
from accessctl.errors import Conflict, NotFound
from orgs.audit import Affects, record
from orgs.models import Organization, User

from .bulk_plan import (
    DEFAULT_BATCH_SIZE,
    BatchReport,
    BulkResult,
    Selection,
    _Plan,
    batch_limit,
    plan,
)
from .bulk_sql import (
    KEYS,
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


def _targets(p: _Plan, after: Position | None, limit: int, index: int) -> QuerySet | None:
    """The next batch's targets in (created_at, id) order, as a queryset to take columns from; None when
    no target is left.

    Creation order follows the table's physical order, so a batch touches a few neighbouring pages
    (and index leaves) rather than one random page per row: far less I/O and WAL than id order.
    No row lock: the lists are written with a compare-and-set (`write_target_lists`).
    """
    kind = p.kind
    qs = p.queryset
    if p.positions is not None:
        chunk = p.positions[index * limit : (index + 1) * limit]
        if not chunk:
            return None
        return qs.filter(pk__in=[pk for _, pk in chunk]).order_by("created_at", kind.pk)
    if p.until is None:
        return None  # nothing matched when the run started
    # The upper bound ends the last batch's index scan at the selection's last target, not at the
    # end of the table (the scan filters the rows it reads by the selection).
    qs = qs.filter(created_at__lte=p.until)
    if after is not None:
        created_at, pk = after
        # The `>=` bounds the scan from below; the OR only settles ties (it cannot be an index
        # condition: without the bound every batch would scan the targets of all batches before it).
        qs = qs.filter(created_at__gte=created_at).filter(Q(created_at__gt=created_at) | Q(pk__gt=pk))
    return qs.order_by("created_at", kind.pk)[:limit]


def _fetch(p: _Plan, after: Position | None, limit: int, index: int, labels: bool) -> list[tuple]:
    """The next batch of targets (`_targets`): (id as text, created_at, list as JSON text, public id[,
    labels]); see `_position` for created_at."""
    kind = p.kind
    qs = _targets(p, after, limit, index)
    if qs is None:
        return []
    qs = qs.annotate(lists_text=Cast("access_group_ids", TextField()))
    id_field, created_field = kind.pk, "created_at"
    if connection.vendor == "postgresql":
        # Ids as text and times as integers from the database: Django's per-value timestamptz loader
        # and the UUID objects cost more Python time than the query itself at 10,000 rows a batch.
        qs = qs.annotate(id_text=Cast(kind.pk, TextField()), created_us=_EpochMicros("created_at"))
        id_field, created_field = "id_text", "created_us"
    public = ("token",) if kind.name == KEYS else ()
    fields = (id_field, created_field, "lists_text", *public, *(kind.label_fields if labels else ()))
    qs = qs.values_list(*fields)
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
            p, operation, actor, job, rows[0][0], rows[-1][0],
            changed=sorted(_public_id(kind, row) for row in changed),
            repaired=sorted(_public_id(kind, row) for row in stale if row[0] not in changed_ids),
            touched=[_public_id(kind, row) for row in touched.values()],
            assignment_rows=len(done),
        )
    return len(changed), [], len(done)


def _run_selected_batch_postgresql(
    p: _Plan, after: Position | None, limit: int, index: int, operation: str, actor: User | None,
    job: BulkJob | None,
) -> tuple[int, int, int, Position] | None:
    """One batch of a filter's targets on PostgreSQL: lock the groups (first, as the per-row path does),
    then one statement reads the batch, changes the assignment rows and the same targets' lists
    (`bulk_sql.apply_batch` with the batch's query), then the groups' counts and the audit entry. No
    list, id or assignment row travels to Python. Returns (targets in the batch, targets changed,
    assignment rows, the batch's last position), or None when no target is left."""
    kind = p.kind
    targets = _targets(p, after, limit, index)
    if targets is None:
        return None
    query = targets.annotate(created_us=_EpochMicros("created_at")).values_list(kind.pk, "created_us")
    group_ids = [str(g.pk) for g in p.groups]
    _lock_groups(p.groups)
    with connection.cursor() as cursor:
        # The statement's estimated cost passes PostgreSQL's JIT threshold, and compiling it costs more
        # than the JIT saves on 10,000 rows (~10 ms a batch): this batch's transaction runs without it.
        cursor.execute("SET LOCAL jit = off")
    applied = apply_batch(kind, [], group_ids, assign=operation == ASSIGN,
                          selection=query.query.get_compiler(using=query.db).as_sql())
    _marker, size, first, last, last_created_us = applied.pop()[1]
    if size == "0":
        return None
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
        _audit_batch(p, operation, actor, job, first, last, changed=public, repaired=[], touched=public,
                     assignment_rows=assignment_rows)
    return int(size), len(applied), assignment_rows, _position((last, int(last_created_us)))


def _audit_batch(
    p: _Plan, operation: str, actor: User | None, job: BulkJob | None, first: str, last: str, *,
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
            "first": first,
            "last": last,
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
    # PostgreSQL reads the batch inside the batch's statement; a dry run reads labels into Python.
    selected = connection.vendor == "postgresql" and not dry_run
    while True:
        with transaction.atomic():
            if selected:
                outcome = _run_selected_batch_postgresql(p, after, limit, index, operation, actor, job)
                if outcome is None:
                    break
                size, changed, count, after = outcome
                changed_rows: list[tuple] = []
            else:
                rows = _fetch(p, after, limit, index=index, labels=dry_run)
                if not rows:
                    break
                changed, changed_rows, count = _run_batch(p, rows, operation, dry_run, actor, job)
                size, after = len(rows), _position(rows[-1])
            if not dry_run:
                metrics.bulk_rows(operation, size)
            if job is not None:
                # In the batch's transaction: the job's progress, its heartbeat and the batch commit
                # together, and only while this run still holds the job (else the batch rolls back).
                progressed = BulkJob.objects.filter(pk=job.pk, runner=job.runner).update(
                    processed=F("processed") + size, changed=F("changed") + changed,
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
        yield BatchReport(size, labels, result.cursor, result.matched)
        if p.positions is None and size < limit:
            break
        if deadline is not None and time.monotonic() >= deadline:
            result.finished = False
            break


class JobTakenOver(Exception):
    """Another run holds the job now (it was resumed, or redelivered after this run was thought dead)."""
