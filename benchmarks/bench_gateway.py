"""The LiteLLM proxy with the accessctl plugin against the same proxy authenticating its master key only.

One command (`make bench-gateway`). It starts accessctl (`make serve`: gunicorn on PostgreSQL + Redis, a
fresh database), creates a key, then two LiteLLM proxies on the same mock model (LiteLLM's
mock_response, no provider): A asks accessctl on every call and reports spend back (the plugin), B checks
its master key only (no database). wrk drives `POST /chat/completions` against each in ABBA order at
concurrency 1 and 8, and it prints throughput, p50/p99 and the ratios. Targets: throughput ratio ≥ 0.9,
and at most 2 ms added to p50 at concurrency 1.

Loopback only, bounded in time; it starts its own servers and stops exactly those.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_authz import Result, Server, _flush_redis_prefix, _free_port, _get, _ms

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
PLUGIN_DIR = ROOT / "integrations" / "litellm"
MODEL = "openai/gpt-4o"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "accessctl_bench_gateway"
REDIS_DB = 4
TARGET_RATIO = 0.9
TARGET_ADDED_P50_MS = 2.0
LITELLM_MASTER = "sk-bench-litellm-master"
ACCESSCTL_MASTER = f"sk-bench-accessctl-master-{uuid.uuid4().hex}"

CONFIG = """
model_list:
  - model_name: {model}
    litellm_params:
      model: {model}
      api_key: no-provider-account
      mock_response: "benchmark"
    model_info:
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: {master}
{plugin}
"""
PLUGIN = """  custom_auth: accessctl_litellm.user_api_key_auth
litellm_settings:
  callbacks: accessctl_litellm.usage_reporter
  telemetry: false
"""
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def setup() -> None:
    """Inside accessctl's environment: the catalog entry, a system user's usage key, the benchmark key."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accessctl.settings")
    sys.path.insert(0, str(ROOT))
    django.setup()
    from accessgroups.services import catalog_upsert
    from keys.services import key_generate
    from orgs.services import organization_create, team_create, user_create

    catalog_upsert(actor=None, kind="model", data={"model_name": MODEL, "provider": "openai", "active": True})
    system = user_create(actor=None, user_id="bench-gateway@system.test", is_system=True)
    _, usage_key = key_generate(actor=None, user=system)
    org = organization_create(actor=None, organization_alias="bench", models=["openai/*"])
    team = team_create(actor=None, organization=org, models=[MODEL])
    user = user_create(actor=None, user_id="bench@example.test")
    _, raw = key_generate(actor=None, user=user, team=team, models=[MODEL], max_budget=1e9)
    print(json.dumps({"usage_key": usage_key, "key": raw}))


class Proxy:
    """A LiteLLM proxy (one worker) in its own process group, stopped by that group's id only."""

    def __init__(self, name: str, config: str, env: dict[str, str], state: Path):
        self.name = name
        self.port = _free_port()
        path = state / f"{name}.yaml"
        path.write_text(config)
        self.log = (state / f"{name}.log").open("w")
        self.process = subprocess.Popen(
            [str(LITELLM), "--config", str(path), "--host", "127.0.0.1", "--port", str(self.port),
             "--num_workers", "1"],
            cwd=state, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"LiteLLM {self.name} exited:\n{Path(self.log.name).read_text()[-3000:]}")
            try:
                if _get(f"{self.url}/health/liveliness")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"LiteLLM {self.name} did not come up in 180 s")

    cpu_seconds = Server.cpu_seconds  # CPU of every process in its group (its session)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def wrk_post(url: str, script: Path, *, duration: int, connections: int) -> Result:
    import re

    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s", "-s",
               str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", output)
    requests, seconds = int(done.group(1)), float(done.group(2)) / (1000.0 if done.group(3) == "ms" else 1.0)
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Result(requests, seconds, p50, p99, errors)


def _reset_postgres(drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')


def _row(connections: int, plugin: Result, master: Result) -> dict:
    plugin_cpu_ms = plugin.server_cpu_s / plugin.requests * 1e3
    master_cpu_ms = master.server_cpu_s / master.requests * 1e3
    return {
        "plugin_cpu_ms_per_request": round(plugin_cpu_ms, 2),
        "master_cpu_ms_per_request": round(master_cpu_ms, 2),
        "cpu_ratio": round(master_cpu_ms / plugin_cpu_ms, 3),
        "concurrency": connections,
        "plugin_rps": round(plugin.requests_per_s, 1),
        "master_rps": round(master.requests_per_s, 1),
        "ratio": round(plugin.requests_per_s / master.requests_per_s, 3),
        "plugin_p50_ms": round(plugin.p50_ms, 2),
        "master_p50_ms": round(master.p50_ms, 2),
        "added_p50_ms": round(plugin.p50_ms - master.p50_ms, 2),
        "plugin_p99_ms": round(plugin.p99_ms, 2),
        "master_p99_ms": round(master.p99_ms, 2),
        "errors": plugin.errors + master.errors,
    }


def _print(row: dict) -> None:
    ratio_ok = row["ratio"] >= TARGET_RATIO
    p50_ok = row["concurrency"] != 1 or row["added_p50_ms"] <= TARGET_ADDED_P50_MS
    print(
        f"c={row['concurrency']:<2} | plugin {row['plugin_rps']:7.1f} req/s p50 {row['plugin_p50_ms']:6.2f} ms "
        f"p99 {row['plugin_p99_ms']:6.2f} ms | master key only {row['master_rps']:7.1f} req/s "
        f"p50 {row['master_p50_ms']:6.2f} ms p99 {row['master_p99_ms']:6.2f} ms | ratio {row['ratio']:.3f} "
        f"({'ok' if ratio_ok else 'BELOW TARGET'}) | added p50 {row['added_p50_ms']:+.2f} ms"
        + ("" if row["concurrency"] != 1 else f" ({'ok' if p50_ok else 'ABOVE TARGET'})")
        + f" | CPU/req {row['plugin_cpu_ms_per_request']:.2f} ms (LiteLLM + accessctl"
        + (f" {row['accessctl_cpu_ms_per_request']:.2f}" if "accessctl_cpu_ms_per_request" in row else "")
        + ") vs "
        f"{row['master_cpu_ms_per_request']:.2f} ms, by CPU {row['cpu_ratio']:.3f}"
        + (f" | errors {row['errors']}" if row["errors"] else ""),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per slice")
    parser.add_argument("--rounds", type=int, default=4, help="slices per proxy and concurrency, in ABBA order")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--workers", type=int, default=2, help="accessctl's gunicorn workers")
    parser.add_argument("--no-usage", action="store_true",
                        help="the plugin's custom_auth only, without the spend callback (isolates the check's cost)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (make bench-gateway does it)", file=sys.stderr)
        return 2
    if not LITELLM.exists():
        print(f"{LITELLM} is missing: make .venv-litellm/.installed", file=sys.stderr)
        return 2
    prefix = f"bench-gateway-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CACHE_URL", "REDIS_URL", "CACHE_DIR")}
    env.update({
        "WEB_CONCURRENCY": str(args.workers), "DEBUG": "0", "LOG_LEVEL": "ERROR",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}", "CACHE_KEY_PREFIX": prefix,
        "ACCESSCTL_MASTER_KEY": ACCESSCTL_MASTER,
    })
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        state = Path(tmp)
        _reset_postgres()
        server = Server(env, _free_port(), state / "serve.log")
        proxies: list[Proxy] = []
        try:
            server.wait_until_up()
            created = subprocess.run([PYTHON, __file__, "setup"], cwd=ROOT, env=env, capture_output=True,
                                     text=True, check=True).stdout.strip().splitlines()[-1]
            keys = json.loads(created)
            proxy_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
            proxy_env.update({
                "PYTHONPATH": str(PLUGIN_DIR), "ACCESSCTL_URL": f"http://127.0.0.1:{server.port}",
                "ACCESSCTL_USAGE_KEY": keys["usage_key"], "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR", "NO_DOCS": "True",
            })
            plugin_config = PLUGIN if not args.no_usage else PLUGIN.replace(
                "  callbacks: accessctl_litellm.usage_reporter\n", "")
            plugin = Proxy("plugin", CONFIG.format(model=MODEL, master=LITELLM_MASTER, plugin=plugin_config),
                           proxy_env, state)
            master = Proxy("master", CONFIG.format(model=MODEL, master=LITELLM_MASTER,
                                                   plugin="litellm_settings:\n  telemetry: false\n"), proxy_env, state)
            proxies = [plugin, master]
            for proxy in proxies:
                proxy.wait_until_up()
            scripts = {}
            for name, key in (("plugin", keys["key"]), ("master", LITELLM_MASTER)):
                scripts[name] = state / f"{name}.lua"
                scripts[name].write_text(WRK_SCRIPT.format(model=MODEL, key=key))
            for proxy in proxies:  # warm: the first calls load the snapshot and open the pools
                wrk_post(f"{proxy.url}/chat/completions", scripts[proxy.name], duration=2, connections=2)
            print(
                f"LiteLLM proxy (1 worker) + plugin asking accessctl (gunicorn, {args.workers} sync workers, "
                f"PostgreSQL + Redis) vs the same proxy with its master key only; POST /chat/completions on "
                f"{MODEL} (mock_response); wrk, {args.rounds} × {args.duration} s per proxy, ABBA order",
                flush=True,
            )
            for connections in args.concurrency:
                parts: dict[str, list[Result]] = {"plugin": [], "master": []}
                accessctl_share = {"plugin": 0.0, "master": 0.0}
                for round_ in range(args.rounds):
                    order = (plugin, master) if round_ % 2 == 0 else (master, plugin)
                    for proxy in order:
                        # CPU of the processes serving this proxy's calls: LiteLLM's, plus accessctl's for the
                        # plugin (PostgreSQL's share of the usage writes is not counted).
                        litellm_before, accessctl_before = proxy.cpu_seconds(), server.cpu_seconds()
                        result = wrk_post(f"{proxy.url}/chat/completions", scripts[proxy.name],
                                          duration=args.duration, connections=connections)
                        litellm_cpu = proxy.cpu_seconds() - litellm_before
                        accessctl_cpu = server.cpu_seconds() - accessctl_before if proxy is plugin else 0.0
                        result.server_cpu_s = litellm_cpu + accessctl_cpu
                        accessctl_share[proxy.name] += accessctl_cpu
                        parts[proxy.name].append(result)
                rows.append(_row(connections, Result.combine(parts["plugin"]), Result.combine(parts["master"])))
                requests = sum(r.requests for r in parts["plugin"])
                rows[-1]["accessctl_cpu_ms_per_request"] = round(accessctl_share["plugin"] / requests * 1e3, 2)
                _print(rows[-1])
            time.sleep(2)  # the last reports are sent in the background
            info = json.loads(_get(f"http://127.0.0.1:{server.port}/key/info?key={keys['key']}", ACCESSCTL_MASTER)[1])
            print(f"spend the plugin's callback reported for the benchmark key: {info['info']['spend']:.6f} USD "
                  f"(model_spend {info['info']['model_spend']})", flush=True)
        finally:
            for proxy in proxies:
                proxy.stop()
            server.stop()
            _flush_redis_prefix(prefix)
            _reset_postgres(drop_only=True)
    print(f"\nsummary (targets: ratio ≥ {TARGET_RATIO}, added p50 ≤ {TARGET_ADDED_P50_MS} ms at concurrency 1; "
          "by CPU = the master-key proxy's CPU per request ÷ the plugin's (LiteLLM + accessctl), which the "
          "machine's other load does not skew)")
    for row in rows:
        _print(row)
    print(json.dumps(rows))
    met = all(r["ratio"] >= TARGET_RATIO for r in rows) and all(
        r["added_p50_ms"] <= TARGET_ADDED_P50_MS for r in rows if r["concurrency"] == 1
    )
    return 0 if met else 1


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "setup":
        setup()
    else:
        sys.exit(main())
