"""The plugin's usage reports under failure: retried with backoff under one Idempotency-Key, final on a 4xx.

The plugin runs in LiteLLM's interpreter (`.venv-litellm`), reporting to a stand-in for accessctl's
`/api/v1/usage` in this process that fails as told and records every attempt.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import PLUGIN_DIR, ROOT

PYTHON = ROOT / ".venv-litellm" / "bin" / "python"

# Each scenario: the statuses the stand-in answers in turn; the script prints what `send` returned.
SCRIPT = """
import asyncio, json, sys
import accessctl_litellm as plugin

kwargs = {"standard_logging_object": {
    "litellm_call_id": "call-1", "model_group": "openai/gpt-4o", "response_cost": 0.0005,
    "prompt_tokens": 10, "completion_tokens": 20,
    "metadata": {"user_api_key_hash": "ab" * 32, "user_api_key_auth_metadata": {"accessctl": "1"}},
}}
key, body = plugin.usage_report(kwargs)
foreign = plugin.usage_report({"standard_logging_object": {**kwargs["standard_logging_object"], "metadata": {
    "user_api_key_hash": "cd" * 32, "user_api_key_auth_metadata": {}}}})

async def main():
    return [await plugin.usage_reporter.send(f"{key}-{n}", body) for n in range(int(sys.argv[1]))]

print(json.dumps({"key": key, "body": body, "foreign": foreign, "sent": asyncio.run(main())}))
"""


class UsageStandIn(BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        UsageStandIn.seen.append({"idempotency_key": self.headers.get("Idempotency-Key"),
                                  "authorization": self.headers.get("Authorization"), "body": body})
        status = UsageStandIn.answers.pop(0) if UsageStandIn.answers else 200
        payload = b'{"ok": true}' if status < 300 else b'{"error": {"type": "x"}}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def reported() -> Iterator[dict]:
    """One run of the plugin (LiteLLM's import is slow) sending three reports: the first meets 503, 429 and
    502 before a 200; the second a 400; the third only 503s."""
    UsageStandIn.answers, UsageStandIn.seen = [503, 429, 502, 200, 400, 503, 503, 503, 503], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), UsageStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield run_plugin(server.server_address[1], reports=3)
    finally:
        server.shutdown()
        server.server_close()


def run_plugin(port: int, reports: int) -> dict:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: build it with `make .venv-litellm/.installed` (make test does).")
    env = {**os.environ, "PYTHONPATH": str(PLUGIN_DIR), "ACCESSCTL_URL": f"http://127.0.0.1:{port}",
           "ACCESSCTL_USAGE_KEY": "sk-system-user", "ACCESSCTL_USAGE_BACKOFF": "0.01",
           "ACCESSCTL_USAGE_RETRIES": "4", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    result = subprocess.run([str(PYTHON), "-c", SCRIPT, str(reports)], env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def attempts(report: str) -> list[dict]:
    return [seen for seen in UsageStandIn.seen if seen["idempotency_key"] == report]


def test_usage_report_is_retried_on_5xx_and_429_under_one_idempotency_key(reported):
    assert reported["sent"][0] is True
    assert len(attempts(f"{reported['key']}-0")) == 4
    assert {seen["authorization"] for seen in UsageStandIn.seen} == {"Bearer sk-system-user"}


def test_usage_report_refused_with_a_4xx_is_not_retried(reported):
    assert reported["sent"][1] is False
    assert len(attempts(f"{reported['key']}-1")) == 1


def test_usage_report_given_up_after_the_retries_when_accessctl_stays_down(reported):
    assert reported["sent"][2] is False
    assert len(attempts(f"{reported['key']}-2")) == 4


def test_usage_report_carries_cost_model_and_tokens_of_an_accessctl_key_only(reported):
    assert reported["key"] == "litellm-call-1"
    assert reported["body"] == {"key": "ab" * 32, "model": "openai/gpt-4o", "spend": 0.0005, "prompt_tokens": 10,
                                "completion_tokens": 20}
    assert reported["foreign"] is None  # a key accessctl did not vouch for (the proxy's master key): not reported
    assert attempts(f"{reported['key']}-0")[0]["body"] == reported["body"]
