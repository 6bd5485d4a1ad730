"""What a bulk assignment acts on: the request (`Selection`), the groups it names and the plan of its batches
(`plan`), and the reports it gives back. `accessgroups.bulk` runs the plan."""
from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower

from accessctl.errors import InvalidInput
from accessctl.ids import as_id
from keys import crypto
from orgs.models import Organization, Team

from .bulk_sql import (
    KEYS,
    KINDS,
    TEAMS,
    Kind,
)
from .models import AccessGroup

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
