"""Budgets and model lists as every level (user, organization, team, key) stores them: the fields, and
their validation, shared by the orgs and keys services."""
from __future__ import annotations

import datetime
from typing import Any

from .amounts import MAX_AMOUNT
from .durations import DurationError, next_reset_at
from .errors import InvalidInput

BUDGET_FIELDS = (
    "max_budget",
    "soft_budget",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "model_max_budget",
    "budget_duration",
    "budget_reset_at",
)
SPEND_FIELDS = ("spend", "model_spend")


def validate_budget(data: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    clean = dict(data)
    for name in ("max_budget", "soft_budget", "spend"):
        value = clean.get(name)
        if value == "":
            clean[name] = None
            continue
        if value is not None:
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"{name} must be a number.", param=name) from exc
            if not 0 <= number <= MAX_AMOUNT:  # also refuses NaN
                raise InvalidInput(f"{name} must be a number between 0 and {MAX_AMOUNT:g}.", param=name)
            clean[name] = number
    for name in ("tpm_limit", "rpm_limit", "max_parallel_requests"):
        value = clean.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise InvalidInput(f"{name} must be a whole number ≥ 0.", param=name)
        # The columns' range (max_parallel_requests is a 32-bit integer, the limits 64-bit).
        ceiling = 2**31 - 1 if name == "max_parallel_requests" else 2**63 - 1
        if value is not None and value > ceiling:
            raise InvalidInput(f"{name} must be at most {ceiling}.", param=name)
    both = clean.get("max_budget") is not None and clean.get("soft_budget") is not None
    if both and clean["soft_budget"] >= clean["max_budget"]:
        raise InvalidInput("soft_budget must be lower than max_budget.", param="soft_budget")
    for name in ("model_max_budget", "model_spend", "metadata"):
        if name in clean:
            if clean[name] is None:
                clean[name] = {}
            elif not isinstance(clean[name], dict):
                raise InvalidInput(f"{name} must be an object.", param=name)
    for name in ("model_max_budget", "model_spend"):
        # Per-model amounts are compared as numbers on the hot path: anything else is refused here.
        for model, amount in (clean.get(name) or {}).items():
            if amount is None and name == "model_max_budget":
                continue
            if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount <= MAX_AMOUNT:
                raise InvalidInput(f"{name}[{model}] must be a number between 0 and {MAX_AMOUNT:g}.", param=name)
    if clean.get("budget_duration"):
        try:
            clean["budget_reset_at"] = next_reset_at(clean["budget_duration"], now)
        except DurationError as exc:
            raise InvalidInput(str(exc), param="budget_duration") from exc
    return clean


def validate_models(value: Any, param: str = "models") -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidInput(f"{param} must be a list of non-empty strings.", param=param)
    return list(dict.fromkeys(v.strip() for v in value))
