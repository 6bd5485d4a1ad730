"""The string ids of SPEC §1: caller-chosen `team_id`, `organization_id`, `user_id` and access-group ids.

As in LiteLLM, any printable string up to 128 characters (`litellm-dashboard`, `test_team_1a2b`,
`alice@corp`); a generated UUID string when the caller names none. Ids are unique and never reused for
another row (the audit log keeps every id that ever existed).
"""
from __future__ import annotations

import datetime
import os
import threading
import time
import uuid
from typing import Any

from accessctl.errors import InvalidInput

ID_MAX_LENGTH = 128


def new_id() -> str:
    """A generated id: a UUID string (LiteLLM's default)."""
    return str(uuid.uuid4())


_uuid7_lock = threading.Lock()
_uuid7_last = 0


def uuid7(at: datetime.datetime | None = None) -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7; the standard library has it from Python 3.14).

    48 bits of Unix milliseconds, then 12 bits of sub-millisecond fraction (the RFC's method 3), so ids
    made in one process sort in the order they were made, then 62 random bits. Rows inserted over time
    then sit in their primary key's index in insertion order: a batch of neighbouring rows (bulk
    assignment runs in creation order) touches a few index pages instead of one random page per row.
    `at` stamps a given time (data loaded with its own creation times).
    """
    global _uuid7_last
    if at is None:
        with _uuid7_lock:
            # Strictly increasing within the process, even when the clock stands still or steps back.
            stamp = max(time.time_ns() // 1000 * 4096 // 1000, _uuid7_last + 1)
            _uuid7_last = stamp
    else:
        stamp = int(at.timestamp() * 1_000_000) * 4096 // 1000
    millis, fraction = divmod(stamp, 4096)
    random_bits = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return uuid.UUID(int=(millis << 80) | (0x7 << 76) | (fraction << 64) | (0b10 << 62) | random_bits)


def is_valid_id(value: Any) -> bool:
    """A non-empty printable string of at most 128 characters, without leading or trailing blanks."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= ID_MAX_LENGTH
        and value.isprintable()
        and value == value.strip()
    )


def valid_id(value: Any, param: str) -> str:
    """The id, or a 400 naming `param`."""
    if not is_valid_id(value):
        raise InvalidInput(
            f"{param} must be a printable string of 1 to {ID_MAX_LENGTH} characters without surrounding spaces.",
            param=param,
        )
    return value


def as_id(value: Any) -> str | None:
    """An id from what a caller passed, or None when it cannot be one (it then finds nothing, like a
    missing id)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    return value if is_valid_id(value) else None


def _id_field_class():
    from rest_framework import serializers

    class IdField(serializers.CharField):
        """An id of SPEC §1 in a request or response: a printable string of at most 128 characters."""

        default_error_messages = {
            "invalid_id": f"Must be an id: a printable string of 1 to {ID_MAX_LENGTH} characters without "
            "surrounding spaces.",
        }

        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("max_length", ID_MAX_LENGTH)
            kwargs.setdefault("trim_whitespace", False)
            super().__init__(**kwargs)

        def to_internal_value(self, data: Any) -> str:
            if isinstance(data, uuid.UUID):
                data = str(data)
            if not isinstance(data, str):
                self.fail("invalid")
            value = super().to_internal_value(data)
            if not is_valid_id(value):
                self.fail("invalid_id")
            return value

        def to_representation(self, value: Any) -> str:
            return str(value)

    return IdField


IdField = _id_field_class()
