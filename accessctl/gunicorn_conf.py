"""gunicorn settings for `make serve`: Prometheus multiprocess mode (see accessctl.metrics)."""
from prometheus_client import multiprocess


def child_exit(server, worker) -> None:
    """A worker that exits leaves its counters' files for `/metrics` to keep adding up; mark it dead."""
    multiprocess.mark_process_dead(worker.pid)
