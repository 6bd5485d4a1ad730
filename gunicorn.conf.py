"""gunicorn settings of `make serve` (read by gunicorn from the working directory, or `-c gunicorn.conf.py`).

Threads (gthread): a request waiting on the database holds one thread, not a whole process, and the
database lane (accessctl/lanes.py) keeps two threads per process for what needs no database (warm
checks, /healthz, /readyz), so a hung database never stops the warm checks. gthread also keeps client
connections alive, which a gateway's connection pool expects. `make bench` holds the warm check/healthz
ratio with it (README, "Under faults").

Graceful stop: on SIGTERM the server first drains for ACCESSCTL_DRAIN_SECONDS — /readyz answers 503
"draining" while every request, queued or new, is still served — so the load balancer takes it out of
rotation before it stops accepting; then gunicorn's graceful stop lets in-flight requests finish (up to
graceful_timeout). A second SIGTERM, or SIGINT/SIGQUIT, stops at once.
"""
from __future__ import annotations

import os
import signal
import time

wsgi_app = "accessctl.wsgi:application"
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")  # "sync": one request per process
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
keepalive = 5
timeout = 30
graceful_timeout = 15
backlog = 2048
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True
# The access log goes to stdout; secrets in paths, queries and headers are masked (accessctl/redaction.py).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")

DRAIN_SECONDS = float(os.environ.get("ACCESSCTL_DRAIN_SECONDS", "5"))

# The web server's time limits (settings.py keeps longer ones for Celery and commands).
os.environ.setdefault("DB_STATEMENT_TIMEOUT_MS", "5000")
os.environ.setdefault("DB_LOCK_TIMEOUT", "5")
# Of each process's threads: a quarter may wait on the database, half may hold unknown keys' answers, and
# the rest are always there for warm checks and probes.
os.environ.setdefault("ACCESSCTL_DB_LANE", str(max(1, threads // 4)))
os.environ.setdefault("ACCESSCTL_UNKNOWN_KEY_SLOTS", str(threads // 2))
_drain_dir = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
os.environ.setdefault("ACCESSCTL_DRAIN_FILE", os.path.join(_drain_dir, f"accessctl-draining-{os.getpid()}"))


DRAIN, STOP = "drain", "stop"


def _drain_file() -> str:
    return os.environ["ACCESSCTL_DRAIN_FILE"]


def _write_drain_file(state: str) -> None:
    temporary = _drain_file() + ".new"
    with open(temporary, "w") as handle:
        handle.write(state)
    os.replace(temporary, _drain_file())  # whole or absent: a worker never reads half of it


def _read_drain_file() -> str | None:
    try:
        with open(_drain_file()) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def on_starting(server) -> None:
    if os.path.exists(_drain_file()):
        os.unlink(_drain_file())  # left by an earlier master with this pid


def when_ready(server) -> None:
    """Replace the master's SIGTERM handling: drain first, then gunicorn's graceful stop."""
    deadline: list[float] = []
    manage_workers = server.manage_workers

    def handle_term() -> None:
        if deadline or DRAIN_SECONDS <= 0:
            _write_drain_file(STOP)
            raise StopIteration  # a second SIGTERM: stop now
        _write_drain_file(DRAIN)
        deadline.append(time.monotonic() + DRAIN_SECONDS)
        server.log.info("SIGTERM: draining for %.1f s (/readyz answers 503), then stopping", DRAIN_SECONDS)

    def manage_workers_then_stop() -> None:
        manage_workers()
        if deadline and time.monotonic() >= deadline[0]:
            _write_drain_file(STOP)  # the workers' next SIGTERM is the real one
            raise StopIteration  # the arbiter's loop turns it into a graceful halt

    server.handle_term = handle_term
    server.manage_workers = manage_workers_then_stop


def post_worker_init(worker) -> None:
    """A SIGTERM sent to the whole process group (systemd's default, a terminal) reaches the workers as
    well as the master: a worker that sees the master draining keeps serving, and stops on the master's
    own SIGTERM at the end of the drain. A SIGTERM aimed at this worker alone (a reload, fewer workers)
    finds no drain started, and stops it as before."""
    stop = worker.handle_exit

    def handle_exit(sig, frame) -> None:
        deadline = time.monotonic() + 0.1  # the master, signalled at the same moment, starts the drain
        while True:
            state = _read_drain_file()
            if state == DRAIN:
                return
            if state == STOP or time.monotonic() >= deadline:
                return stop(sig, frame)
            time.sleep(0.005)

    signal.signal(signal.SIGTERM, handle_exit)


def child_exit(server, worker) -> None:
    """Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR, see accessctl.metrics): a worker that exits
    leaves its counters' files for `/metrics` to keep adding up; mark it dead."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if os.path.exists(_drain_file()):
        os.unlink(_drain_file())
