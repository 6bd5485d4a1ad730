"""The hot path under load: `GET /healthz` against the warm authorization check on the same server.

One command (`make bench`). For each deployment — the embedded default (SQLite + the file cache) and
PostgreSQL + Redis — it starts `make serve` on a fresh database, creates a key, warms it, drives load
with wrk for `--duration` seconds against each endpoint, then bulk-inserts keys up to 100,000 and
measures again. It prints requests/s, p50 and p99 for both, and the ratio check/healthz (target ≥ 0.8).

Loopback only, bounded in time; it starts its own servers and stops exactly those.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MODEL = "openai/gpt-4o"
TARGET_RATIO = 0.8
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "accessctl_bench_authz"
REDIS_DB = 4


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_s: float = 0.0  # CPU time the server's processes spent on these requests

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6

    @classmethod
    def combine(cls, parts: list[Result]) -> Result:
        """Several slices of load as one: total requests over total time, mean of the slices' percentiles."""
        return cls(
            requests=sum(p.requests for p in parts),
            seconds=sum(p.seconds for p in parts),
            p50_ms=sum(p.p50_ms for p in parts) / len(parts),
            p99_ms=sum(p.p99_ms for p in parts) / len(parts),
            errors=sum(p.errors for p in parts),
            server_cpu_s=sum(p.server_cpu_s for p in parts),
        )


# --- setup, run inside the server's environment (`bench_authz.py setup N`) -------------------


def setup(total_keys: int) -> None:
    """Create the benchmark key (first call) and bulk-insert filler keys until `total_keys` exist."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accessctl.settings")
    sys.path.insert(0, str(ROOT))
    django.setup()
    from keys import crypto
    from keys.models import VirtualKey
    from keys.services import key_generate
    from orgs.models import Organization, Team, User
    from orgs.services import organization_create, team_create, user_create

    raw_file = Path(os.environ["BENCH_STATE_DIR"]) / "raw_key"
    if not raw_file.exists():
        org = organization_create(actor=None, organization_alias="bench", models=[MODEL, "openai/*"])
        team = team_create(actor=None, organization=org, models=[MODEL])
        user = user_create(actor=None, user_id="bench@example.test")
        _, raw = key_generate(actor=None, user=user, team=team, models=[MODEL], max_budget=1000.0)
        raw_file.write_text(raw)
    # Filler keys are rows written directly: the benchmark measures reads, not the services.
    org = Organization.objects.get(organization_alias="bench")
    team = Team.objects.get(organization=org)
    user = User.objects.get(user_id="bench@example.test")
    missing = total_keys - VirtualKey.objects.count()
    batch = 5000
    while missing > 0:
        rows = []
        for _ in range(min(batch, missing)):
            raw = "sk-" + uuid.uuid4().hex + uuid.uuid4().hex
            rows.append(
                VirtualKey(
                    token=crypto.hash_secret(raw),
                    key_name=crypto.mask(raw),
                    user=user,
                    team=team,
                    organization=org,
                    models=[MODEL],
                )
            )
        VirtualKey.objects.bulk_create(rows, batch_size=batch)
        missing -= len(rows)
    print(VirtualKey.objects.count())


# --- orchestration ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, raw: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if raw:
        request.add_header("Authorization", f"Bearer {raw}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _reset_postgres() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')


def _drop_postgres() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')


def _flush_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    for name in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(name)


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNIT[unit]


def wrk(url: str, *, duration: int, connections: int, threads: int, raw: str | None = None) -> Result:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if raw:
        command += ["-H", f"Authorization: Bearer {raw}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", output)
    requests, seconds = int(done.group(1)), float(done.group(2)) / (1000.0 if done.group(3) == "ms" else 1.0)
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:  # sync workers close every connection; only connect/timeout errors are failures
        errors += int(socket_errors.group(1)) + int(socket_errors.group(4))
    return Result(requests, seconds, p50, p99, errors)


class Server:
    """`make serve` in its own process group, stopped by that group's id only."""

    def __init__(self, env: dict[str, str], port: int, log: Path):
        self.port = port
        self.log = log.open("w")
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "serve", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.flush()
                tail = "".join(Path(self.log.name).read_text().splitlines(keepends=True)[-30:])
                raise RuntimeError(f"make serve exited with {self.process.returncode}:\n{tail}")
            try:
                if _get(f"http://127.0.0.1:{self.port}/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("make serve did not come up in 120 s")

    def cpu_seconds(self) -> float:
        """User + system CPU time of every process of the server (make, gunicorn master and workers)."""
        ticks = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[2]) == self.process.pid:  # field 5, the process group: the server's session
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def measure(self, url: str, **load) -> Result:
        before = self.cpu_seconds()
        result = wrk(url, **load)
        result.server_cpu_s = self.cpu_seconds() - before
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def run_deployment(name: str, env: dict[str, str], args: argparse.Namespace, state: Path) -> list[tuple]:
    port = _free_port()
    server = Server(env, port, state / f"serve-{name}.log")
    rows = []
    try:
        server.wait_until_up()
        base = f"http://127.0.0.1:{port}"
        for total in args.keys:
            count = subprocess.run(
                [PYTHON, __file__, "setup", str(total)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
            ).stdout.strip().splitlines()[-1]
            raw = (state / "raw_key").read_text()
            check_url = f"{base}/api/v1/authz/check?model={MODEL}"
            status, body = _get(check_url, raw)  # warm: the first check loads and caches the snapshot
            if status != 200:
                raise RuntimeError(f"the warm-up check answered {status}: {body[:200]!r}")
            feed = json.loads(_get(f"{base}/readyz")[1]).get("invalidation_feed")
            print(f"{name:<20} {int(count):>7,} keys | invalidation feed (from /readyz): {feed}", flush=True)
            # Slices in ABBA order (healthz, check, check, healthz, …): a drift of the machine's load
            # during the run weighs on both endpoints alike instead of on whichever ran second.
            load = {"duration": args.duration, "connections": args.connections, "threads": args.threads}
            health_parts: list[Result] = []
            check_parts: list[Result] = []
            for round_ in range(args.rounds):
                order = ("healthz", "check") if round_ % 2 == 0 else ("check", "healthz")
                for endpoint in order:
                    if endpoint == "healthz":
                        health_parts.append(server.measure(f"{base}/healthz", **load))
                    else:
                        check_parts.append(server.measure(check_url, raw=raw, **load))
            rows.append((name, int(count), Result.combine(health_parts), Result.combine(check_parts)))
            _print_row(rows[-1])
    finally:
        server.stop()
    return rows


def _print_row(row: tuple) -> None:
    name, count, health, check = row
    ratio = check.requests_per_s / health.requests_per_s
    cpu_ratio = health.cpu_us_per_request / check.cpu_us_per_request
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(
        f"{name:<20} {count:>7,} keys | /healthz {health.requests_per_s:6.0f} req/s p50 {health.p50_ms:5.2f} ms "
        f"p99 {health.p99_ms:6.2f} ms {health.cpu_us_per_request:4.0f} µs CPU/req | check "
        f"{check.requests_per_s:6.0f} req/s p50 {check.p50_ms:5.2f} ms p99 {check.p99_ms:6.2f} ms "
        f"{check.cpu_us_per_request:4.0f} µs CPU/req | ratio {ratio:4.2f} {verdict} (by server CPU {cpu_ratio:4.2f})"
        + (f" | errors healthz={health.errors} check={check.errors}" if health.errors or check.errors else ""),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per endpoint and round")
    parser.add_argument(
        "--rounds", type=int, default=4, help="load slices per endpoint, in ABBA order (default: 4 × 5 s = 20 s each)"
    )
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--keys", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="run one deployment")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (make bench does it)", file=sys.stderr)
        return 2
    base_env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CACHE_URL", "REDIS_URL", "CACHE_DIR")
    }
    base_env.update({"WEB_CONCURRENCY": str(args.workers), "DEBUG": "0", "LOG_LEVEL": "ERROR"})
    print(
        f"wrk: {args.threads} thread(s), {args.connections} connections, {args.rounds} × {args.duration} s per "
        f"endpoint (ABBA order); "
        f"gunicorn (gunicorn.conf.py): {args.workers} workers × {os.environ.get('GUNICORN_THREADS', '32')} threads; "
        f"check = GET /api/v1/authz/check?model={MODEL} (warm)",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-authz-") as tmp:
        if args.only in (None, "sqlite"):
            state = Path(tmp, "sqlite")
            state.mkdir()
            env = {
                **base_env,
                "DATABASE_URL": f"sqlite:///{state / 'db.sqlite3'}",
                "CACHE_DIR": str(state / "cache"),
                "BENCH_STATE_DIR": str(state),
            }
            rows += run_deployment("sqlite + file cache", env, args, state)
        if args.only in (None, "postgres"):
            state = Path(tmp, "postgres")
            state.mkdir()
            prefix = f"bench-authz-{uuid.uuid4().hex[:8]}"
            env = {
                **base_env,
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}",
                "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
                "CACHE_KEY_PREFIX": prefix,
                "BENCH_STATE_DIR": str(state),
            }
            _reset_postgres()
            try:
                rows += run_deployment("postgresql + redis", env, args, state)
            finally:
                _flush_redis_prefix(prefix)
                _drop_postgres()
    print(
        "\nsummary (ratio = check req/s ÷ /healthz req/s on the same server, target ≥ 0.8; "
        "by server CPU = /healthz CPU per request ÷ check CPU per request, which the machine's other load "
        "does not skew)"
    )
    for row in rows:
        _print_row(row)
    print(json.dumps([
        {"deployment": n, "keys": c, "healthz_rps": round(h.requests_per_s), "check_rps": round(k.requests_per_s),
         "ratio": round(k.requests_per_s / h.requests_per_s, 3),
         "healthz_cpu_us": round(h.cpu_us_per_request), "check_cpu_us": round(k.cpu_us_per_request),
         "cpu_ratio": round(h.cpu_us_per_request / k.cpu_us_per_request, 3)} for n, c, h, k in rows
    ]))
    return 0 if all(k.requests_per_s >= TARGET_RATIO * h.requests_per_s for _, _, h, k in rows) else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "setup":
        setup(int(sys.argv[2]))
    else:
        sys.exit(main())
