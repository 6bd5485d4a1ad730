"""Key secrets never reach a log line (SPEC §9): every log record is redacted as it is made.

Secrets travel in URL paths (`/api/v1/keys/sk-…/`), query strings (`/key/info?key=sk-…`) and headers,
and Django (`django.request`, `django.server`), gunicorn's access log and our own code log those. A
filter on one handler would miss the others (and pytest's caplog), so the process-wide log record
factory rewrites each record's message, at every level and for every logger: `sk-…` becomes the
masked form `sk-...abcd`, and the master key (which need not start with `sk-`) becomes `[master key]`.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

# What follows `sk-` up to a delimiter of a URL, a header, JSON or prose.
_SECRET = re.compile(r"sk-[^\s/?&#=\"'`,;:<>()\[\]{}\\]+")
MASTER_KEY_SHOWN = "[master key]"


def mask_secret(secret: str) -> str:
    """`sk-...abcd`: the only form of a secret that may be shown (a short one is shown as `sk-...`)."""
    return f"sk-...{secret[-4:]}" if len(secret) >= 16 else "sk-..."


def redact(text: str, master_key: str = "") -> str:
    """`text` with every `sk-…` secret masked and the master key replaced."""
    if master_key and master_key in text:
        text = text.replace(master_key, MASTER_KEY_SHOWN)
    if "sk-" in text:
        text = _SECRET.sub(lambda match: mask_secret(match.group(0)), text)
    return text


_installed: dict[str, Any] = {}


def install(master_key: Callable[[], str]) -> None:
    """Make every log record of this process redacted (idempotent). `master_key` is read per record,
    so a changed setting is honoured."""
    _installed["master_key"] = master_key
    if "factory" in _installed:
        return
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        master = _installed["master_key"]() or ""
        _redact_record(record, master if len(master) >= 8 else "")
        return record

    _installed["factory"] = redacting_factory
    logging.setLogRecordFactory(redacting_factory)


def _redact_record(record: logging.LogRecord, master_key: str) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed call; logging reports it when the record is emitted
        return
    redacted = redact(message, master_key)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and record.exc_info[1] is not None:
        # The traceback is formatted later, by each handler: format it now, redacted, so they reuse it.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info), master_key)
