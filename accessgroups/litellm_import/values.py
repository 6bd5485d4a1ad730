"""Column values of LiteLLM's rows as accessctl keeps them, and the types the mappers share.

Every helper either returns the value accessctl stores, notes what it drops (`note`), or raises `Refused`.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from accessctl.amounts import MAX_AMOUNT
from accessctl.durations import DurationError, parse_duration
from accessctl.ids import ID_MAX_LENGTH, is_valid_id

LIMIT_CEILINGS = {"tpm_limit": 2**63 - 1, "rpm_limit": 2**63 - 1, "max_parallel_requests": 2**31 - 1}
DURATION_MAX_LENGTH = 16  # BudgetFields.budget_duration, VirtualKey.rotation_interval
# Object-permission columns that grant or block something per key, team, user or organization.
OBJECT_PERMISSION_COLUMNS = (
    "mcp_servers", "mcp_access_groups", "mcp_tool_permissions", "vector_stores", "agents", "agent_access_groups",
    "models", "blocked_tools", "mcp_toolsets", "search_tools", "skills",
)


class Refused(Exception):
    """A row that cannot be imported as it is: `reason` groups the report, `detail` says what this row had."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not comparable")


def fingerprint(values: dict[str, Any], keys: Iterable[str] | None = None) -> str:
    """SHA-256 of the values (only `keys`, if given), in a form equal for what was written and what is read
    back (datetimes in UTC, UUIDs as strings)."""
    if keys is not None:
        values = {k: values.get(k) for k in keys}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Mapped:
    """One source row as accessctl will hold it. `values` are keyed by how the accessctl row is read back
    (`budget__max_budget`), so what an import wrote can be compared with what is there now."""

    source_id: str
    target_id: str
    label: str
    values: dict[str, Any]
    _digest: str | None = field(default=None, repr=False)

    def digest(self) -> str:
        """The fingerprint of `values` (computed once: they do not change after `prepare`)."""
        if self._digest is None:
            self._digest = fingerprint(self.values)
        return self._digest


@dataclass
class Refs:
    """What the rows read so far make available: the parents a later table's rows may point to."""

    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget_owners: Counter = field(default_factory=Counter)
    object_permissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    organizations: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    user_by_email: dict[str, str | None] = field(default_factory=dict)
    access_groups: set[str] = field(default_factory=set)
    team_organization: dict[str, str | None] = field(default_factory=dict)


Note = Callable[[str], None]


# --- values ------------------------------------------------------------------------------------

def when(value: Any) -> datetime.datetime | None:
    """A LiteLLM timestamp (Prisma stores UTC without a zone) as an aware UTC datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


def amount(value: Any, column: str, *, default: float | None = None) -> float | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= MAX_AMOUNT:
        raise Refused(f"{column} is not an amount between 0 and {MAX_AMOUNT:g}", f"{column}={value!r}")
    return float(value)


def limit(value: Any, column: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LIMIT_CEILINGS[column]:
        raise Refused(f"{column} is not a whole number in accessctl's range", f"{column}={value!r}")
    return value


def per_model(value: Any, column: str, note: Note, *, caps: bool) -> dict[str, Any]:
    """`model_max_budget` / `model_spend`: {model: amount}. LiteLLM's per-model budgets may be
    {model: {"max_budget": x, "budget_duration": d}}: the cap is kept, its own reset period is not."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise Refused(f"{column} is not an object", f"{column}={value!r}")
    out: dict[str, Any] = {}
    for model, entry in value.items():
        if caps and isinstance(entry, dict):
            if entry.get("budget_duration"):
                note(f"{column}: a per-model budget_duration is not kept (the cap is)")
            entry = entry.get("max_budget")
        if entry is None and caps:
            out[str(model)] = None
            continue
        out[str(model)] = amount(entry, f"{column}[{model}]")
    return out


def duration(value: Any, column: str, note: Note) -> str | None:
    if value in (None, ""):
        return None
    try:
        if not isinstance(value, str) or len(value) > DURATION_MAX_LENGTH:
            raise DurationError(str(value))
        parse_duration(value)
    except DurationError:
        note(f"{column} not understood by accessctl (s, m, h, d, w, mo): dropped")
        return None
    return value


def string_list(value: Any) -> list[str]:
    """A text[] column: stripped, without blanks or repeats, in order."""
    if not value:
        return []
    return list(dict.fromkeys(v.strip() for v in value if isinstance(v, str) and v.strip()))


def json_object(value: Any, column: str, note: Note) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        note(f"{column} is not an object: dropped")
        return {}
    return value


def text(value: Any, column: str, max_length: int, note: Note, *, default: str | None = None) -> str | None:
    if value is None or value == "":
        return default
    value = str(value)
    if len(value) > max_length:
        note(f"{column} longer than {max_length} characters: cut")
        return value[:max_length]
    return value


def created(row: dict[str, Any]) -> dict[str, Any]:
    """`created_at`, when LiteLLM recorded one (some of its columns allow none: accessctl then stamps now,
    and leaves it out of what a re-run compares)."""
    value = when(row.get("created_at"))
    return {} if value is None else {"created_at": value}


def an_id(value: Any, column: str) -> str:
    if not is_valid_id(value):
        raise Refused(
            f"{column} is not an accessctl id (a printable string of 1 to {ID_MAX_LENGTH} characters "
            "without surrounding spaces)",
            f"{column}={value!r}",
        )
    return value


def is_set(value: Any) -> bool:
    """Whether a column holds a setting (not null, not empty, not false)."""
    return value not in (None, "", [], {}, False, 0)


def note_unsupported(row: dict[str, Any], columns: Iterable[str], note: Note) -> None:
    for column in columns:
        if is_set(row.get(column)):
            note(f"{column} not kept (accessctl has no such setting)")


def restricting_permissions(object_permission_id: Any, refs: Refs) -> list[str]:
    """The columns of a LiteLLM object permission that grant or block something (MCP servers, agents, …)."""
    if not object_permission_id:
        return []
    row = refs.object_permissions.get(object_permission_id) or {}
    return [c for c in OBJECT_PERMISSION_COLUMNS if is_set(row.get(c))]


def note_object_permission(row: dict[str, Any], refs: Refs, note: Note) -> None:
    if restricting_permissions(row.get("object_permission_id"), refs):
        note("object permission (MCP servers, agents, vector stores, …) not kept: use access groups")
