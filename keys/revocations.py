"""The invalidation log: revocations the database holds, so that none is lost whatever the cache did.

A write that changes who may call what commits, then (before its response) appends a note naming the
keys it touched (`keys.models.Invalidation`), then deletes the shared cache entries and announces it on
the feed as before. The note is what makes the revocation durable: the shared cache may be down,
paused, or unreachable from the writer alone, and the delete lost.

Every serving process reads the new notes every POLL_SECONDS in a thread of its own (never on a
request). Each cached decision carries a tag: the highest note id this process had read before the
decision was loaded from the database. A decision is served only if no note read since names its key
(or everything) with a higher id; otherwise it is loaded again. Tags travel with the value through the
shared cache, so a stale entry left in Redis by a failed delete is refused by every process once it has
read the note, and replaced.

Worst case, stated in the README: while the database answers, a revoked key is refused on every process
within POLL_SECONDS plus one read of the log (well under 1 s), whatever Redis did. A revocation is lost
only if the database also becomes unreachable between the write's commit and its note (then the note is
missing) and Redis is unreachable from the writer: such a copy lives until the cache's entry expires
(SNAPSHOT_TTL_SECONDS) — that needs two faults at once within a few milliseconds.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import Invalidation

logger = logging.getLogger(__name__)

# A note names at most this many keys; a larger invalidation is one note naming everything.
MAX_NAMES_PER_NOTE = 500
# Notes are kept this long: longer than any cached copy lives (the shared entries' TTL, the generations').
RETENTION_SECONDS = 900
# Note ids are allocated when a note is inserted and become visible when it commits, not in order: each
# read also looks again at the last LATE_SECONDS of notes, so one that committed late is still seen.
LATE_SECONDS = 10
_PRUNE_EVERY = 200  # the writer of every 200th note deletes the expired ones


def live_seconds() -> float:
    """The log counts as read "now" while its last successful read started within this (1 s by default)."""
    return float(getattr(settings, "ACCESSCTL_REVOCATION_LIVE_SECONDS", 1.0))


def poll_seconds() -> float:
    """How often each serving process reads the log (0: never; the test suite's in-process default)."""
    return float(getattr(settings, "ACCESSCTL_REVOCATION_POLL_SECONDS", 0.2))


def write(names: Iterable[str] | None) -> None:
    """Append a note naming these keys' tokens (or cache names); None: every key. Raises DatabaseError."""
    names = None if names is None else sorted(set(names))
    if names is not None and not names:
        return
    if names is None or len(names) > MAX_NAMES_PER_NOTE:
        note = Invalidation.objects.create(everything=True)
    else:
        note = Invalidation.objects.create(tokens=names)
    if note.id % _PRUNE_EVERY == 0:
        Invalidation.objects.filter(at__lt=timezone.now() - timedelta(seconds=RETENTION_SECONDS)).delete()


class RevocationLog:
    """This process's view of the log; `fresh(name, tag)` says whether a copy tagged `tag` may be served."""

    def __init__(
        self,
        *,
        on_names: Callable[[list[str]], None],
        on_reset: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_names = on_names
        self._on_reset = on_reset
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[int, float] = {}  # note id → when read (to skip a note read again)
        self._stale: dict[str, tuple[int, float]] = {}  # name → (highest note id naming it, when read)
        self._everything = 0  # highest note id naming everything
        self._high = 0  # highest note id read: the tag of a value loaded from now on
        self._read_started: float | None = None  # when the last successful read started
        self._last_prune = clock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.reads = self.failures = 0

    def reset(self) -> None:
        """Forget every note read (tests: each starts as a fresh process would)."""
        with self._lock:
            self._seen, self._stale = {}, {}
            self._everything = self._high = 0
            self._read_started = None

    # --- the hot path ----------------------------------------------------------------------------

    def tag(self) -> int:
        """The tag of a value about to be loaded from the database (read before the load)."""
        self.ensure_running()
        return self._high

    def fresh(self, name: str, tag: int) -> bool:
        """No note read so far says this copy went stale after it was loaded."""
        if tag < self._everything:
            return False
        stale = self._stale.get(name)
        return stale is None or tag >= stale[0]

    def live(self) -> bool:
        """The log was read successfully within `live_seconds()`: a copy it calls fresh is at most that old."""
        started = self._read_started
        return started is not None and self._clock() - started <= live_seconds()

    def state(self) -> str:
        """For /readyz and metrics: "off" (not polled), "live", or "stale" (the database is not answering)."""
        if poll_seconds() <= 0:
            return "off"
        self.ensure_running()
        return "live" if self.live() else "stale"

    # --- reading ---------------------------------------------------------------------------------

    def ensure_running(self) -> None:
        """Start this process's reader thread (once per process: a forked worker starts its own)."""
        if self._pid == os.getpid() or poll_seconds() <= 0:
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="accessctl-revocation-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        interval = poll_seconds()
        while True:
            started = self._clock()
            try:
                self.read_once()
            except Exception as exc:  # noqa: BLE001 - never dies; the state says it is stale
                self.failures += 1
                logger.warning("invalidation log unreadable (%s); copies are served on the feed's word", exc)
                connection.close()  # this thread's own connection: a fresh one next time
            time.sleep(max(0.0, interval - (self._clock() - started)))

    def read_once(self) -> None:
        """Read the notes written since the last read and drop the copies they name. Raises DatabaseError."""
        started = self._clock()
        window = RETENTION_SECONDS if self._read_started is None else LATE_SECONDS
        since = timezone.now() - timedelta(seconds=window)
        ids = Invalidation.objects.filter(id__gt=self._high) | Invalidation.objects.filter(at__gte=since)
        new_ids = [i for i in ids.values_list("id", flat=True) if i not in self._seen]
        notes = []
        if new_ids:
            notes = list(Invalidation.objects.filter(id__in=new_ids).values_list("id", "tokens", "everything"))
        self._apply(notes)
        self._read_started = started
        self.reads += 1

    def _apply(self, notes: list[tuple[int, list[str], bool]]) -> None:
        now = self._clock()
        flush = False
        names: list[str] = []
        for note_id, tokens, everything in notes:
            self._seen[note_id] = now
            if everything:
                self._everything = max(self._everything, note_id)
                flush = True
            else:
                for name in tokens:
                    old = self._stale.get(name)
                    if old is None or old[0] < note_id:
                        self._stale[name] = (note_id, now)
                names.extend(tokens)
        if notes:
            # Raise the tag only after the notes are recorded: a load tagged with the new high can only
            # have started after this point, so it saw every write these notes name.
            self._high = max(self._high, max(n[0] for n in notes))
        if flush:
            self._on_reset()
        elif names:
            self._on_names(names)
        if now - self._last_prune > 60:
            self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - RETENTION_SECONDS
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
        self._stale = {k: v for k, v in self._stale.items() if v[1] >= horizon}
        self._last_prune = now
