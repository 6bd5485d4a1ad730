"""Usage reports at gateway rates (issue 16): ingestion rate for one hot key and over 1,000 keys, and the
lag from a report to its spend landing.

One command (`make bench-usage`). It starts `make serve` on PostgreSQL + Redis (a fresh database) and a
Celery worker (the applier) on a queue of its own, drives `POST /api/v1/usage` with wrk — one report
per request, and lists of `--list-size` reports per request — first for one hot key, then spread over
1,000 keys, and prints reports/s, p50/p99 per request, the applier's lag (report received → its
batch committed: mean, and max over the batches) and whether the sums are exact (every accepted
report counted once: spend on the keys = accepted × spend). It then does the same for one hot key
with no broker (eager mode: requests apply what is pending, as `make run` does). Each scenario runs
`--warmup` seconds unmeasured first (steady state: resolved keys, warm snapshots and connections).

Since the machine is shared, each row also gives the CPU time per report of the web server, the
applier (the Celery worker) and PostgreSQL's backends of the benchmark database, and the rate those
costs allow on this machine's cores ("→ N/s"), which other load does not skew; and the server's floor,
the web CPU of a `GET /healthz`, which any request costs whatever it does.

Targets: ≥ 1,000 reports/s for one hot key, ≥ 2,000/s over 1,000 keys. Loopback only, bounded in
time; it stops exactly the processes it started.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_authz import PG_ADMIN_URL, Server, _free_port, _ms  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MODEL = "openai/gpt-4o"
SPEND = 0.01
PG_BENCH_DB = "accessctl_bench_usage"
REDIS_DB = 7
TARGETS = {"hot key": 1000, "1,000 keys": 2000}


# --- run inside the server's environment --------------------------------------------------------


def _django() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accessctl.settings")
    sys.path.insert(0, str(ROOT))
    django.setup()


def setup(keys: int) -> None:
    """A gateway's system user with its key, and `keys` keys of one team; raw secrets into the state dir."""
    _django()
    from keys import crypto
    from keys.models import VirtualKey
    from keys.services import key_generate
    from orgs.models import User
    from orgs.services import organization_create, team_create, user_create

    state = Path(os.environ["BENCH_STATE_DIR"])
    org = organization_create(actor=None, organization_alias="bench", models=[MODEL])
    team = team_create(actor=None, organization=org, models=[MODEL])
    user = user_create(actor=None, user_id="bench@example.test")
    gateway = user_create(actor=None, user_id="gateway@example.test")
    User.objects.filter(pk=gateway.pk).update(is_system=True)
    _, gateway_raw = key_generate(actor=None, user=gateway)
    raws, rows = [], []
    for _ in range(keys):
        raw = "sk-" + uuid.uuid4().hex + uuid.uuid4().hex
        raws.append(raw)
        rows.append(VirtualKey(token=crypto.hash_secret(raw), key_name=crypto.mask(raw), user=user, team=team,
                               organization=org, models=[MODEL]))
    VirtualKey.objects.bulk_create(rows, batch_size=5000)
    (state / "gateway").write_text(gateway_raw)
    (state / "keys").write_text("\n".join(raws))


def status(since: str) -> None:
    """Print, as JSON: pending reports, total spend on the keys, and the lag of batches since `since`."""
    _django()
    import datetime

    from django.db.models import Avg, Max, Sum

    from keys.models import UsageBatch, UsageReport, VirtualKey
    from orgs.models import Team

    since_at = datetime.datetime.fromisoformat(since)
    batches = UsageBatch.objects.filter(applied_at__gte=since_at, reports__gt=0)
    lag = batches.aggregate(max=Max("max_lag_ms"), mean=Avg("mean_lag_ms"), reports=Sum("reports"))
    print(json.dumps({
        "pending": UsageReport.objects.filter(applied_at__isnull=True).count(),
        "key_spend": VirtualKey.objects.filter(team__isnull=False).aggregate(s=Sum("spend"))["s"] or 0.0,
        "applied_spend": UsageBatch.objects.aggregate(s=Sum("spend"))["s"] or 0.0,
        "applied_reports": UsageBatch.objects.aggregate(s=Sum("reports"))["s"] or 0,
        "team_spend": Team.objects.aggregate(s=Sum("spend"))["s"] or 0.0,
        "batches": batches.count(),
        "batch_reports": lag["reports"] or 0,
        "max_lag_ms": lag["max"] or 0.0,
        "mean_lag_ms": lag["mean"] or 0.0,
    }))


# --- orchestration ----------------------------------------------------------------------------


def _reset_postgres() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')


def _drop_postgres() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')


def _pg_backends() -> dict[int, int]:
    """pid → CPU ticks of the PostgreSQL backends serving the benchmark's database (the server is shared
    with other work: only these count)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        pids = [pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> "
                                               "pg_backend_pid()", [PG_BENCH_DB])]
    ticks = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile, or not on this host
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def _pg_cpu_since(before: dict[int, int]) -> float:
    """CPU seconds the benchmark database's backends spent since `before` (backends that ended meanwhile
    are missed: the web server and the applier keep theirs open)."""
    after = _pg_backends()
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / os.sysconf("SC_CLK_TCK")


def _lua(state: Path, name: str, raws: list[str], list_size: int) -> Path:
    """A wrk script posting reports for keys drawn in turn from `raws` (`list_size` per request; 0: one
    report as an object)."""
    keys = ",".join(json.dumps(raw) for raw in raws)
    script = state / f"{name}.lua"
    script.write_text(f"""
local keys = {{{keys}}}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local function report()
  n = n + 1
  return '{{"key":"' .. keys[(n % #keys) + 1] .. '","model":"{MODEL}","spend":{SPEND}}}'
end
request = function()
  local body
  if {list_size} == 0 then
    body = report()
  else
    local items = {{}}
    for i = 1, {list_size} do items[i] = report() end
    body = "[" .. table.concat(items, ",") .. "]"
  end
  return wrk.format(nil, nil, nil, body)
end
""")
    return script


def _wrk_post(url: str, script: Path, gateway: str, args: argparse.Namespace, duration: int | None = None) -> str:
    duration = duration or args.duration
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
               "--timeout", "5s", "-s", str(script), "-H", f"Authorization: Bearer {gateway}", url]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 60).stdout


def _wrk_get(url: str, args: argparse.Namespace) -> str:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=args.duration + 60).stdout


def _status(env: dict[str, str], since: str) -> dict:
    out = subprocess.run([PYTHON, __file__, "status", since], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _wait_drained(env: dict[str, str], since: str, timeout: float = 120.0) -> tuple[dict, float]:
    started = time.monotonic()
    while True:
        now = _status(env, since)
        if now["pending"] == 0 or time.monotonic() - started > timeout:
            return now, time.monotonic() - started
        time.sleep(0.5)


class Worker:
    """A Celery worker (the applier) in its own process group, stopped by that group's id only."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [str(Path(PYTHON).parent / "celery"), "-A", "accessctl", "worker", "--beat", "-c", "1",
             "--schedule", str(log.with_suffix(".schedule")), "--loglevel=WARNING", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    cpu_seconds = Server.cpu_seconds  # CPU of every process in its group (its session)

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def run(label: str, env: dict[str, str], args: argparse.Namespace, state: Path, with_worker: bool) -> list[dict]:
    import datetime

    port = _free_port()
    server = Server(env, port, state / f"serve-{label}.log")
    worker = Worker(env, state / f"worker-{label}.log") if with_worker else None
    rows = []
    try:
        server.wait_until_up()
        subprocess.run([PYTHON, __file__, "setup", str(args.keys)], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        gateway = (state / "gateway").read_text()
        raws = (state / "keys").read_text().split("\n")
        url = f"http://127.0.0.1:{port}/api/v1/usage"
        scenarios = [("hot key", raws[:1], 0), ("hot key", raws[:1], args.list_size),
                     ("1,000 keys", raws, 0), ("1,000 keys", raws, args.list_size)]
        if not with_worker:
            scenarios = [("hot key", raws[:1], 0), ("hot key", raws[:1], args.list_size)]
        scenarios = [s for s in scenarios if args.only is None or (s[2] == 0) == (args.only == "single")]
        # The server's floor: what any request costs it (gunicorn, the middleware), whatever the route.
        web_before = server.cpu_seconds()
        floor = _parse(_wrk_get(f"http://127.0.0.1:{port}/healthz", args))
        floor_ms = (server.cpu_seconds() - web_before) / max(floor["requests"], 1) * 1e3
        print(f"{label:<22} floor: GET /healthz {floor['requests'] / floor['seconds']:,.0f} req/s, web CPU "
              f"{floor_ms:.3f} ms/request", flush=True)
        for spread, keys, list_size in scenarios:
            script = _lua(state, f"{label}-{len(keys)}-{list_size}", keys, list_size)
            if args.warmup:  # steady state: the caller's snapshot, the resolved keys, the connections
                _wrk_post(url, script, gateway, args, duration=args.warmup)
                _wait_drained(env, datetime.datetime.now(datetime.UTC).isoformat())
            since = datetime.datetime.now(datetime.UTC).isoformat()
            web_before, pg_before = server.cpu_seconds(), _pg_backends()
            worker_before = worker.cpu_seconds() if worker is not None else 0.0
            output = _wrk_post(url, script, gateway, args)
            web_cpu = server.cpu_seconds() - web_before
            parsed = _parse(output)
            drained, drain_s = _wait_drained(env, since)
            worker_cpu = worker.cpu_seconds() - worker_before if worker is not None else 0.0
            pg_cpu = _pg_cpu_since(pg_before)
            per_request = max(list_size, 1)
            accepted = (parsed["requests"] - parsed["errors"]) * per_request
            counted = max(drained["batch_reports"], accepted, 1)  # this scenario's reports
            cpu_ms = {"web": web_cpu / counted * 1e3, "applier": worker_cpu / counted * 1e3,
                      "postgres": pg_cpu / counted * 1e3}
            total_ms = sum(cpu_ms.values())
            row = {
                "deployment": label, "spread": spread, "reports_per_request": per_request,
                "requests_per_s": round(parsed["requests"] / parsed["seconds"]),
                "reports_per_s": round(accepted / parsed["seconds"]),
                "p50_ms": parsed["p50"], "p99_ms": parsed["p99"], "errors": parsed["errors"],
                # CPU per report of the web server, the applier (Celery worker) and PostgreSQL's backends of
                # this database: what the machine's other load does not skew; and the rate those CPU costs
                # allow on this machine's cores (wrk's own CPU left out).
                "cpu_ms_per_report": {name: round(value, 3) for name, value in cpu_ms.items()},
                "cpu_bound_reports_per_s": round((os.cpu_count() or 1) / total_ms * 1e3) if total_ms else None,
                "lag_mean_ms": round(drained["mean_lag_ms"], 1), "lag_max_ms": round(drained["max_lag_ms"], 1),
                "batches": drained["batches"], "drained_after_load_s": round(drain_s, 1),
                # Every applied report counted once on the keys and once on their team (wrk stops counting
                # while its last requests are in flight, so its count is a lower bound).
                "floor_web_cpu_ms_per_request": round(floor_ms, 3),
                "sums_exact": drained["pending"] == 0
                and abs(drained["key_spend"] - drained["applied_reports"] * SPEND) < 1e-6
                and abs(drained["team_spend"] - drained["applied_reports"] * SPEND) < 1e-6
                and drained["applied_reports"] * SPEND >= accepted * SPEND - 1e-6,
            }
            rows.append(row)
            _print_row(row)
    finally:
        server.stop()
        if worker is not None:
            worker.stop()
    return rows


def _parse(output: str) -> dict:
    import re


    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", output)
    requests, seconds = int(done.group(1)), float(done.group(2)) / (1000.0 if done.group(3) == "ms" else 1.0)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += int(socket_errors.group(1)) + int(socket_errors.group(4))
    return {"requests": requests, "seconds": seconds, "errors": errors,
            "p50": _ms(re.search(r"\s50%\s+(\S+)", output).group(1)),
            "p99": _ms(re.search(r"\s99%\s+(\S+)", output).group(1))}


def _print_row(row: dict) -> None:
    target = TARGETS[row["spread"]]
    verdict = "ok" if row["reports_per_s"] >= target else f"BELOW {target}/s"
    cpu = row["cpu_ms_per_report"]
    bound = row["cpu_bound_reports_per_s"]
    print(
        f"{row['deployment']:<22} {row['spread']:<10} {row['reports_per_request']:>4} report(s)/request | "
        f"{row['reports_per_s']:6,} reports/s ({row['requests_per_s']:5,} req/s, p50 {row['p50_ms']:6.2f} ms, "
        f"p99 {row['p99_ms']:7.2f} ms) {verdict} | CPU/report web {cpu['web']:.3f} + applier {cpu['applier']:.3f} "
        f"+ PostgreSQL {cpu['postgres']:.3f} ms → {bound:,}/s on {os.cpu_count()} CPUs "
        f"({'ok' if bound and bound >= target else 'BELOW'}) | lag mean {row['lag_mean_ms']:7.1f} ms max {row['lag_max_ms']:7.1f} ms "
        f"({row['batches']} batches, drained {row['drained_after_load_s']} s after the load) | "
        f"sums {'exact' if row['sums_exact'] else 'WRONG'}"
        + (f" | errors {row['errors']}" if row["errors"] else ""),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per scenario")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--list-size", type=int, default=100, help="reports per request in the list scenarios")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each scenario")
    parser.add_argument("--only", choices=("single", "list"), help="only the one-report or the list scenarios")
    parser.add_argument("--no-eager", action="store_true", help="skip the deployment with no broker")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (make bench-usage does it)", file=sys.stderr)
        return 2
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "CACHE_URL", "REDIS_URL", "CACHE_DIR", "CELERY_BROKER_URL")}
    base_env.update({"WEB_CONCURRENCY": str(args.workers), "DEBUG": "0", "LOG_LEVEL": "ERROR"})
    print(f"wrk: {args.threads} thread(s), {args.connections} connections, {args.duration} s per scenario; "
          f"gunicorn: {args.workers} workers (gunicorn.conf.py); POST /api/v1/usage, {SPEND} USD per report; machine load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-usage-") as tmp:
        deployments = (("pg+redis, celery", True), ("pg+redis, no broker", False))
        for label, with_worker in deployments[:1] if args.no_eager else deployments:
            state = Path(tmp, label.replace(" ", "").replace(",", "-").replace("+", ""))
            state.mkdir()
            prefix = f"bench-usage-{uuid.uuid4().hex[:8]}"
            env = {
                **base_env,
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}",
                "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
                "CACHE_KEY_PREFIX": prefix,
                "BENCH_STATE_DIR": str(state),
            }
            if with_worker:
                env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:6379/{REDIS_DB}"
                env["CELERY_TASK_DEFAULT_QUEUE"] = prefix
            _reset_postgres()
            try:
                rows += run(label, env, args, state, with_worker)
            finally:
                _cleanup_redis(prefix)
                _drop_postgres()
    print(f"\nsummary (machine load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    for row in rows:
        _print_row(row)
    print(json.dumps(rows))
    return 0


def _cleanup_redis(prefix: str) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    for name in client.scan_iter(match=f"*{prefix}*", count=1000):
        client.delete(name)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "setup":
        setup(int(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "status":
        status(sys.argv[2])
    else:
        sys.exit(main())
