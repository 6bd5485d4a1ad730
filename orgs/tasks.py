"""Budget resets on `budget_duration` for keys, teams, organizations and users (Celery beat runs them).

A row is due when its `budget_reset_at` has passed. Its spend goes back to zero and the next reset is
scheduled on the duration's boundary (`accessctl.durations.next_reset_at`: 1d → midnight, 7d → Monday,
30d/1mo → the 1st). Spend reported concurrently is never lost: the due rows are locked before their
spend is read (a usage report's `UPDATE … spend + x` waits for the reset to commit, then lands on the
new window), and the reset subtracts the spend it observed with a database-side `F()` expression rather
than writing zero. Each table is reset in its own transactions, so a reset never holds locks on two of
the tables a usage report walks (key → team → organization → user) and the two cannot deadlock.
"""
from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import shared_task
from django.db import transaction
from django.db.models import Case, F, FloatField, Model, Q, Value, When
from django.utils import timezone

from accessctl.durations import DurationError, next_reset_at

from . import hooks
from .audit import Affects, record
from .models import Budget, Organization, Team, User

logger = logging.getLogger(__name__)

BATCH_SIZE = 500


@dataclass(frozen=True)
class BudgetScope:
    """Where one kind of row keeps its spend and its budget window."""

    name: str  # the audit object_type: key, team, organization, user
    model: type[Model]  # the row holding `spend` and `model_spend`
    window: str  # "" when the window fields are on the row itself, "budget__" for an organization's Budget row
    public_id: str  # the id shown in the audit entry
    affects: Callable[[list[Any]], Affects]


TEAM_SCOPE = BudgetScope("team", Team, "", "team_id", lambda rows: Affects(team_ids={r["pk"] for r in rows}))
ORGANIZATION_SCOPE = BudgetScope(
    "organization", Organization, "budget__", "organization_id",
    lambda rows: Affects(organization_ids={r["pk"] for r in rows}),
)
USER_SCOPE = BudgetScope("user", User, "", "user_id", lambda rows: Affects(user_pks={r["pk"] for r in rows}))


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else timezone.now()


def _next_window(duration: str, now: datetime.datetime) -> datetime.datetime | None:
    try:
        return next_reset_at(duration, now)
    except DurationError:
        logger.warning("invalid budget_duration %r: its budget is no longer reset", duration)
        return None


def _due(scope: BudgetScope, now: datetime.datetime) -> Q:
    w = scope.window
    has_window = Q(**{f"{w}budget_duration__isnull": False}) & ~Q(**{f"{w}budget_duration": ""})
    return has_window & (Q(**{f"{w}budget_reset_at__lte": now}) | Q(**{f"{w}budget_reset_at__isnull": True}))


def reset_batch(scope: BudgetScope, *, now: datetime.datetime, limit: int = BATCH_SIZE, after: Any = None) -> list[Any]:
    """Reset one batch of due rows of one scope (primary keys after `after`) in one transaction.

    Returns the primary keys handled, in order. A row with a duration but no `budget_reset_at` yet is only
    scheduled (its window has not started); one whose duration cannot be parsed is left alone.
    """
    w = scope.window
    with transaction.atomic():
        qs = scope.model.objects.filter(_due(scope, now)).order_by("pk")
        if after is not None:
            qs = qs.filter(pk__gt=after)
        # Locked in primary-key order before anything is read (an organization's Budget row too, being
        # joined): concurrent usage reports queue behind the reset.
        rows = list(
            qs.select_for_update().values("pk", "spend", scope.public_id, f"{w}budget_duration", f"{w}budget_reset_at",
                          *(("budget_id",) if w else ()))[:limit]
        )
        if not rows:
            return []
        windows: dict[Any, datetime.datetime | None] = {}
        for row in rows:
            windows[row["pk"]] = _next_window(row[f"{w}budget_duration"], now)
        resets = [r for r in rows if r[f"{w}budget_reset_at"] is not None and windows[r["pk"]] is not None]
        reset_pks = {r["pk"] for r in resets}
        if resets:
            # Subtract what was observed (not "= 0"): spend that landed since the read stays.
            scope.model.objects.filter(pk__in=[r["pk"] for r in resets]).update(
                spend=Case(*[When(pk=r["pk"], then=F("spend") - Value(r["spend"])) for r in resets],
                           default=F("spend"), output_field=FloatField()),
                model_spend={},
            )
        scheduled = [r for r in rows if windows[r["pk"]] is not None]
        window_model = Budget if w else scope.model
        window_pk = "budget_id" if w else "pk"
        if scheduled:
            window_model.objects.filter(pk__in=[r[window_pk] for r in scheduled]).update(
                budget_reset_at=Case(*[When(pk=r[window_pk], then=Value(windows[r["pk"]])) for r in scheduled],
                                     default=F("budget_reset_at"))
            )
        record(
            actor=None,
            action="budget_reset",
            object_type=scope.name,
            object_id="*",
            before={str(r[scope.public_id]): {"spend": r["spend"], "budget_reset_at": _iso(r[f"{w}budget_reset_at"])}
                    for r in rows},
            after={str(r[scope.public_id]): {"spend_subtracted": r["spend"] if r["pk"] in reset_pks else 0.0,
                                             "budget_reset_at": _iso(windows[r["pk"]])} for r in rows},
            affects=scope.affects(resets) if resets else None,
        )
    return [r["pk"] for r in rows]


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def reset_due_budgets(scope: BudgetScope, *, now: datetime.datetime | None = None, limit: int = BATCH_SIZE) -> int:
    """Reset every due row of one scope, batch after batch; returns the rows handled."""
    now = _now(now)
    total, after = 0, None
    # Keyset over the primary key: each due row is visited once per run, even one left due (bad duration).
    while handled := reset_batch(scope, now=now, limit=limit, after=after):
        total += len(handled)
        after = handled[-1]
        if len(handled) < limit:
            break
    return total


def budget_reset_all(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Reset every due budget: keys, teams, organizations, users. Returns rows handled per scope."""
    now = _now(now)
    scopes = (hooks.ask(hooks.key_budget_scope), TEAM_SCOPE, ORGANIZATION_SCOPE, USER_SCOPE)
    return {scope.name: reset_due_budgets(scope, now=now) for scope in scopes}


@shared_task(name="orgs.reset_budgets", ignore_result=True)
def reset_budgets() -> dict[str, int]:
    """Beat task: reset the budgets whose window has ended."""
    return budget_reset_all()
