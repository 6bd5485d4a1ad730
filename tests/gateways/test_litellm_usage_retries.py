"""The plugin's usage reports: queued by the callback, sent in lists, retried with backoff under the same
idempotency keys, one refused report dropped from its list, and what is left sent when the process exits.

The plugin runs in LiteLLM's interpreter (`.venv-litellm`), reporting to a stand-in for accessctl's
`/api/v1/usage` in this process that answers as each scenario says and records every attempt. The
scenario is named by the prefix of the reports' idempotency keys.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import PLUGIN_DIR, ROOT

PYTHON = ROOT / ".venv-litellm" / "bin" / "python"

SCRIPT = """
import asyncio, json, sys, time
import accessctl_litellm as plugin

reporter = plugin.usage_reporter

def logged(call_id, key_hash="ab" * 32, marker=True):
    return {"standard_logging_object": {
        "litellm_call_id": call_id, "model_group": "openai/gpt-4o", "response_cost": 0.0005,
        "prompt_tokens": 10, "completion_tokens": 20,
        "metadata": {"user_api_key_hash": key_hash,
                     "user_api_key_auth_metadata": {"accessctl": "1"} if marker else {}},
    }}

key, body = plugin.usage_report(logged("call-1"))
foreign = plugin.usage_report(logged("call-2", key_hash="cd" * 32, marker=False))

async def main():
    if sys.argv[1] == "exit":  # queued, then the process ends before the list is due
        for n in range(3):
            await reporter.async_log_success_event(logged(f"exit-{n}"), None, None, None)
        return {}
    slowest = 0.0
    for n in range(250):  # calls finishing one after the other while lists are in flight
        started = time.perf_counter()
        await reporter.async_log_success_event(logged(f"batch-{n}"), None, None, None)
        slowest = max(slowest, time.perf_counter() - started)
        await asyncio.sleep(0)
    await reporter.flush()
    for scenario in ("retry", "item", "down"):
        for n in range(3):
            reporter.enqueue(f"{scenario}-{n}", body)
        await reporter.flush()
    for n in range(5):
        reporter.enqueue(f"timer-{n}", body)
    await asyncio.sleep(1.0)  # no flush(): the background task sends them
    return {"slowest_callback_s": slowest, "timer_unacknowledged": len(reporter._unacked),
            "dropped": reporter.dropped}

result = asyncio.run(main())
print(json.dumps({"key": key, "body": body, "foreign": foreign, **result}))
"""

# scenario → the answers to its lists' attempts, in turn (then 202); "down" answers 503 for ever.
ANSWERS = {
    "retry": [503, 429, 502],
    "item": [(404, {"error": {"message": "Key not found.", "type": "not_found", "param": "[1].key", "code": "404"}})],
}


class UsageStandIn(BaseHTTPRequestHandler):
    answers: dict[str, list] = {}
    seen: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        keys = [item["idempotency_key"] for item in body] if isinstance(body, list) else None
        scenario = keys[0].removeprefix("litellm-").split("-")[0] if keys else None
        if scenario == "batch":
            time.sleep(0.3)  # a slow accessctl: the callbacks must not wait for it
        queue = UsageStandIn.answers.get(scenario, [])
        answer = 503 if scenario == "down" else (queue.pop(0) if queue else 202)
        status, payload = answer if isinstance(answer, tuple) else (answer, {"error": {"type": "x"}} if answer >= 300
                                                                    else {"reports": len(body)})
        UsageStandIn.seen.append({"scenario": scenario, "keys": keys, "body": body, "status": status,
                                  "authorization": self.headers.get("Authorization")})
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def reported() -> Iterator[dict]:
    """Two runs of the plugin (LiteLLM's import is slow): the scenarios, then a process that exits with
    reports still queued."""
    UsageStandIn.answers = {name: list(answers) for name, answers in ANSWERS.items()}
    UsageStandIn.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), UsageStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        result = run_plugin(port, "scenarios", ACCESSCTL_USAGE_FLUSH_SECONDS="0.1")
        run_plugin(port, "exit", ACCESSCTL_USAGE_FLUSH_SECONDS="30")
        yield result
    finally:
        server.shutdown()
        server.server_close()


def run_plugin(port: int, mode: str, **extra_env: str) -> dict:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: build it with `make .venv-litellm/.installed` (make test does).")
    env = {**os.environ, "PYTHONPATH": str(PLUGIN_DIR), "ACCESSCTL_URL": f"http://127.0.0.1:{port}",
           "ACCESSCTL_USAGE_KEY": "sk-system-user", "ACCESSCTL_USAGE_BACKOFF": "0.01",
           "ACCESSCTL_USAGE_RETRIES": "4", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           **extra_env}
    result = subprocess.run([str(PYTHON), "-c", SCRIPT, mode], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def attempts(scenario: str) -> list[dict]:
    return [seen for seen in UsageStandIn.seen if seen["scenario"] == scenario]


def test_usage_reports_are_sent_as_lists_each_report_once_with_its_idempotency_key(reported):
    lists = attempts("batch")
    sent = [key for seen in lists for key in seen["keys"]]
    assert sorted(sent) == sorted(f"litellm-batch-{n}" for n in range(250))
    assert len(lists) <= 5  # a few lists, not one request per call
    assert {seen["authorization"] for seen in UsageStandIn.seen} == {"Bearer sk-system-user"}


def test_usage_callback_never_waits_for_accessctl(reported):
    assert reported["slowest_callback_s"] < 0.05  # while each list took accessctl 0.3 s


def test_usage_list_is_retried_on_5xx_and_429_with_the_same_idempotency_keys(reported):
    lists = attempts("retry")
    assert [seen["status"] for seen in lists] == [503, 429, 502, 202]
    assert all(seen["keys"] == ["retry-0", "retry-1", "retry-2"] for seen in lists)
    assert all(seen["body"] == lists[0]["body"] for seen in lists)


def test_usage_report_refused_in_a_list_is_dropped_and_the_rest_sent_again(reported):
    lists = attempts("item")
    assert [(seen["status"], seen["keys"]) for seen in lists] == [
        (404, ["item-0", "item-1", "item-2"]), (202, ["item-0", "item-2"])
    ]


def test_usage_list_given_up_after_the_retries_when_accessctl_stays_down(reported):
    assert len(attempts("down")) == 4
    assert reported["dropped"] == 3 + 1  # the list given up, and the report refused in the other


def test_usage_reports_are_sent_in_the_background_within_the_flush_interval(reported):
    assert reported["timer_unacknowledged"] == 0
    assert sorted(key for seen in attempts("timer") for key in seen["keys"]) == [f"timer-{n}" for n in range(5)]


def test_usage_reports_still_queued_at_exit_are_sent(reported):
    assert sorted(key for seen in attempts("exit") for key in seen["keys"]) == [
        f"litellm-exit-{n}" for n in range(3)
    ]


def test_usage_report_carries_cost_model_and_tokens_of_an_accessctl_key_only(reported):
    assert reported["key"] == "litellm-call-1"
    assert reported["body"] == {"key": "ab" * 32, "model": "openai/gpt-4o", "spend": 0.0005, "prompt_tokens": 10,
                                "completion_tokens": 20}
    assert reported["foreign"] is None  # a key accessctl did not vouch for (the proxy's master key): not reported
    assert attempts("retry")[0]["body"][0] == {**reported["body"], "idempotency_key": "retry-0"}
