"""The quick start as the README gives it: `make run PORT=…` serves the admin and the Swagger UI with
their CSS and JavaScript (no 404 in the browser's network log), and both pages render.

The server is started exactly through `make run`, on a free port, with its own SQLite file, then stopped
with its whole process group. Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import screenshot

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def make_run(tmp_path_factory) -> Iterator[str]:
    """`make run PORT=…` in the project root; yields its base URL once /healthz answers."""
    workdir = tmp_path_factory.mktemp("make-run")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CACHE_URL", "REDIS_URL"))}
    # The README's defaults, except the database file: a test never touches the developer's db.sqlite3.
    env.update(DATABASE_URL=f"sqlite:///{workdir}/db.sqlite3", DEBUG="false", DJANGO_ALLOW_ASYNC_UNSAFE="")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = (workdir / "make-run.log").open("wb")
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"make run exited with {process.returncode}:\n{(workdir / 'make-run.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"make run did not serve in {START_TIMEOUT_S}s:\n{(workdir / 'make-run.log').read_text()}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def failed_requests(page) -> list[str]:
    """Record every response of status ≥ 400 and every request that failed outright."""
    failures: list[str] = []
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failures.append(f"failed {r.url}"))
    return failures


def test_make_run_serves_the_admin_login_page_with_its_css_and_js(make_run, page):
    failures = failed_requests(page)
    loaded: list[str] = []
    page.on("response", lambda r: loaded.append(r.url) if r.status == 200 else None)

    page.goto(f"{make_run}/admin/login/?next=/admin/")
    page.wait_for_load_state("networkidle")

    assert failures == []
    assert any(url.endswith("/static/admin/css/base.css") for url in loaded), loaded
    assert any(url.endswith(".js") for url in loaded), loaded
    # The stylesheet applied: the admin's header bar has its colour, not the browser's transparent default.
    header = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
    assert header not in ("rgba(0, 0, 0, 0)", "transparent")
    assert page.locator("#id_username").is_visible() and page.locator("#id_password").is_visible()
    screenshot(page, "make_run_admin_login")


def test_make_run_serves_a_rendered_swagger_ui(make_run, page):
    failures = failed_requests(page)
    loaded: list[str] = []
    page.on("response", lambda r: loaded.append(r.url) if r.status == 200 else None)

    page.goto(f"{make_run}/api/docs/")
    # Swagger UI renders the schema's title and its operations only if its JS ran and the schema loaded.
    page.locator(".swagger-ui .info .title").wait_for()
    page.locator(".opblock").first.wait_for()
    page.wait_for_load_state("networkidle")

    assert failures == []
    assert any(url.endswith("swagger-ui-bundle.js") for url in loaded), loaded
    assert any(url.endswith("swagger-ui.css") for url in loaded), loaded
    assert any(url.rstrip("/").endswith("/api/schema") for url in loaded), loaded
    assert "accessctl API" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() > 50
    screenshot(page, "make_run_swagger_ui")
