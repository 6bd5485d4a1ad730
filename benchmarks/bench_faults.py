"""Warm checks during each fault: Redis killed, Redis paused, the database paused, a flood of random keys.

One command (`make bench-faults`). Starts the production server (gunicorn.conf.py, as `make serve`) on
PostgreSQL (a database of its own, reached through a TCP proxy that can pause it) and on a redis-server
of its own (killed and paused at will, SIGKILL and SIGSTOP; the machine's shared services are never
touched). Creates a key,
warms it, then for each fault drives the warm check with wrk for `--duration` seconds and prints its
requests/s and p99 against the no-fault run.

- "database paused": the proxy stops moving bytes; meanwhile 8 clients keep sending writes (which wait
  on the database), as a management UI and usage reports would.
- "random-key flood": 16 connections of random `sk-…` keys next to the real traffic (8 connections);
  the target is ≥ 80 % of the no-fault throughput for the real key.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_authz import _free_port, _ms  # noqa: E402
from tests.faults.tcpproxy import TcpProxy  # noqa: E402

PYTHON = sys.executable
GUNICORN = Path(sys.executable).with_name("gunicorn")
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "accessctl_bench_faults"
MASTER = "sk-bench-faults-master-key"
MODEL = "openai/gpt-4o"
FLOOD_TARGET = 0.8
FAULTS = ["redis-killed", "redis-paused", "database-paused", "flood"]

FLOOD_SCRIPT = r"""
local chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("seed", counter) end
init = function() math.randomseed(os.time() * 1000 + seed) end
request = function()
  local t = {}
  for i = 1, 43 do local n = math.random(1, #chars); t[i] = chars:sub(n, n) end
  return wrk.format("GET", nil, {["Authorization"] = "Bearer sk-" .. table.concat(t)})
end
"""


@dataclass
class Result:
    requests: int
    seconds: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk(url: str, *, duration: int, connections: int, raw: str | None = None, script: str | None = None) -> Result:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if raw:
        command += ["-H", f"Authorization: Bearer {raw}"]
    if script:
        command += ["-s", script]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", output)
    requests, seconds = int(done.group(1)), float(done.group(2)) / (1000.0 if done.group(3) == "ms" else 1.0)
    p99 = re.search(r"\s99%\s+(\S+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Result(
        requests,
        seconds,
        _ms(p99.group(1)) if p99 else float("nan"),
        int(non2xx.group(1)) if non2xx else 0,
        sum(int(errors.group(i)) for i in (1, 4)) if errors else 0,
    )


def _request(url: str, raw: str | None = None, body: dict | None = None, timeout: float = 10) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if raw:
        req.add_header("Authorization", f"Bearer {raw}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class RedisServer:
    def __init__(self, workdir: str) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()
            self.process.terminate()
            self.process.wait()


def _reset_postgres(drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per fault")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--flood-rounds", type=int, default=3, help="quiet/flood slice pairs")
    parser.add_argument("--only", nargs="+", choices=FAULTS, default=FAULTS, help="run these faults only")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-faults-")
    redis_server = RedisServer(tmp)
    pg_proxy = TcpProxy("127.0.0.1", 5432)
    _reset_postgres()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CACHE_URL", "REDIS_URL", "CACHE_DIR")}
    env.update(
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{pg_proxy.port}/{PG_BENCH_DB}",
            "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",  # killed and paused itself: no proxy
            "ACCESSCTL_MASTER_KEY": MASTER,
            "WEB_CONCURRENCY": str(args.workers),
            "LOG_LEVEL": "CRITICAL",
            "DEBUG": "0",
        }
    )
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    port = _free_port()
    log = open(Path(tmp, "serve.log"), "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    check_url = f"{base}/api/v1/authz/check?model={MODEL}"
    rows: list[tuple[str, Result, str]] = []
    flood_ratio: float | None = None
    try:
        for _ in range(300):
            try:
                if _request(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        status, body = _request(f"{base}/key/generate", MASTER, {"user_id": "bench@example.test", "models": [MODEL]})
        assert status == 200, body
        raw = body["key"]

        def recover() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if _request(f"{base}/readyz", timeout=5)[0] == 200 and _request(check_url, raw)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            time.sleep(1.0)
            for _ in range(20):
                _request(check_url, raw)

        recover()
        print(
            f"wrk: 1 thread, {args.connections} connections, {args.duration} s per fault; gunicorn.conf.py "
            f"({args.workers} workers × {os.environ.get('GUNICORN_THREADS', '32')} threads); "
            f"PostgreSQL and Redis behind TCP proxies; check = GET /api/v1/authz/check (warm)",
            flush=True,
        )

        def measure(name: str, note: str = "") -> Result:
            result = wrk(check_url, duration=args.duration, connections=args.connections, raw=raw)
            rows.append((name, result, note))
            _print(rows[0][1], name, result, note)
            return result

        measure("no fault")

        if "redis-killed" in args.only:
            redis_server.kill()
            time.sleep(0.5)
            measure("redis killed")
            redis_server.start()
            recover()

        if "redis-paused" in args.only:
            redis_server.pause()
            time.sleep(0.5)
            measure("redis paused")
            redis_server.resume()
            recover()

        if "database-paused" in args.only:
            stop = threading.Event()
            writes: dict[str, int] = {"200": 0, "503": 0}

            def writer(n: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        status, _ = _request(
                            f"{base}/key/generate", MASTER, {"user_id": f"w{n}-{i}-{uuid.uuid4().hex[:6]}@example.test"},
                            timeout=30,
                        )
                        writes[str(status)] = writes.get(str(status), 0) + 1
                    except OSError as exc:
                        writes[type(exc).__name__] = writes.get(type(exc).__name__, 0) + 1

            pg_proxy.pause()
            threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(8)]
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            measure("database paused", "8 clients writing meanwhile")
            stop.set()
            pg_proxy.resume()
            for thread in threads:
                thread.join(timeout=30)
            rows[-1] = (rows[-1][0], rows[-1][1], f"writes meanwhile: {writes}")
            recover()

        if "flood" in args.only:
            # Alternating slices (quiet, flood, quiet, flood, …) so that the machine's other load weighs on
            # both alike; the ratio is the flood slices' throughput over the quiet slices'.
            script = Path(tmp, "flood.lua")
            script.write_text(FLOOD_SCRIPT)
            slice_seconds = max(3, args.duration // 2)
            quiet: list[Result] = []
            flooded: list[Result] = []
            flood: list[Result] = []
            for _ in range(args.flood_rounds):
                quiet.append(wrk(check_url, duration=slice_seconds, connections=args.connections, raw=raw))
                flooder = threading.Thread(
                    target=lambda: flood.append(
                        wrk(check_url, duration=slice_seconds + 2, connections=16, script=str(script))
                    )
                )
                flooder.start()
                time.sleep(1.0)
                flooded.append(wrk(check_url, duration=slice_seconds, connections=args.connections, raw=raw))
                flooder.join()
            quiet_total, real = _combine(quiet), _combine(flooded)
            ratio = real.rps / quiet_total.rps
            verdict = "ok" if ratio >= FLOOD_TARGET else "BELOW TARGET"
            flood_rps = sum(f.requests for f in flood) / sum(f.seconds for f in flood)
            rows.append((
                "random-key flood",
                real,
                f"flood: 16 connections, {flood_rps:.0f} req/s answered; real traffic at {ratio:.2f} of the "
                f"quiet slices between ({quiet_total.rps:.0f} req/s; target ≥ {FLOOD_TARGET}) {verdict}",
            ))
            _print(rows[0][1], *rows[-1])
            flood_ratio = ratio
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGQUIT)
            server.wait(timeout=30)
        log.close()
        redis_server.stop()
        pg_proxy.close()
        _reset_postgres(drop_only=True)

    print("\nsummary: warm checks of one real key during each fault (p99 over the whole run)")
    for name, result, note in rows:
        _print(rows[0][1], name, result, note)
    print(json.dumps([
        {"fault": n, "check_rps": round(r.rps), "p99_ms": round(r.p99_ms, 2), "non_2xx": r.non_2xx,
         "socket_errors": r.socket_errors, "vs_no_fault": round(r.rps / rows[0][1].rps, 3)} for n, r, _ in rows
    ]))
    return 0 if flood_ratio is None or flood_ratio >= FLOOD_TARGET else 1


def _combine(parts: list[Result]) -> Result:
    return Result(
        sum(p.requests for p in parts), sum(p.seconds for p in parts), max(p.p99_ms for p in parts),
        sum(p.non_2xx for p in parts), sum(p.socket_errors for p in parts),
    )


def _print(baseline: Result, name: str, result: Result, note: str) -> None:
    print(
        f"{name:<18} {result.rps:7.0f} req/s  p99 {result.p99_ms:8.2f} ms  non-2xx {result.non_2xx:5d}  "
        f"socket errors {result.socket_errors:3d}  {result.rps / baseline.rps:5.2f} × no fault"
        + (f"  | {note}" if note else ""),
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
