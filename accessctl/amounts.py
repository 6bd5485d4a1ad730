"""Bounds on amounts: budgets, spend, per-model caps and usage reports."""
from __future__ import annotations

import sys
from typing import Any

# Amounts in USD (budgets, spend, per-model caps, one usage report) are finite, ≥ 0 and at most this:
# a trillion dollars is no real budget, and sums of bounded amounts can never overflow a float
# (1e308 reported twice made spend infinite, which PostgreSQL's JSON refuses and the dashboard divided by).
MAX_AMOUNT = 1e12
# Token counts of one usage report: bounded like amounts (and exact as JSON numbers, below 2**53).
MAX_TOKENS = 10**12
FLOAT_MAX = sys.float_info.max


def stored_amount(value: Any) -> float:
    """A spend as stored, made a float in range: rows written before amounts were bounded may hold
    infinity or more than a float can (saturated, so a per-model cap stays spent), or garbage (0)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0.0
    return float(min(max(value, 0), FLOAT_MAX))
