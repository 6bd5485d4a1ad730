"""The fault-injection harness: real gunicorn instances (`gunicorn.conf.py`, as `make serve` runs them)
on the suite's database, a Redis of the suite's own, and TCP proxies in front of both that can kill,
pause or delay them. It never stops the machine's shared services: the shared PostgreSQL is only ever
reached through a proxy, and the Redis that is killed and paused is a `redis-server` this harness started.

On the PostgreSQL pass the instances share a database of their own (`<test database>_faultsrv`, created
and dropped here); on SQLite, a file in a temporary directory. "The database hangs" is the proxy paused
on PostgreSQL, and a write lock held by the test on SQLite (WAL readers are not blocked by it).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.faults.tcpproxy import TcpProxy
from tests.gateway.conftest import check, committed  # noqa: F401 - the in-process tests use them too

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
REDIS_SERVER = "/usr/bin/redis-server"
MASTER = "sk-test-faults-master-key"
CHECK = "/api/v1/authz/check?model=openai/gpt-4o"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, path: str, raw: str | None = None, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """One HTTP request (POST when there is a body); (status, parsed JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if raw:
        req.add_header("Authorization", f"Bearer {raw}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            return error.code, json.loads(payload)
        except ValueError:
            return error.code, payload.decode(errors="replace")


class RedisServer:
    """A redis-server of the suite's own, on a free port: killed, paused and restarted at will."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def heal(self) -> None:
        if self.process.poll() is not None:
            self.start()
        else:
            self.resume()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()
            self.process.terminate()
            self.process.wait(timeout=10)


class Instance:
    """One `gunicorn -c gunicorn.conf.py` server (its own process group)."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, **overrides: str) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, **overrides}
        self.log = (log_dir / f"{name}-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [str(GUNICORN), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, f"{name} exited: {Path(self.log.name).read_text()[-3000:]}"
            try:
                if request(self.port, "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{name} did not come up"
            time.sleep(0.1)

    def get(self, path: str, raw: str | None = None, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        return request(self.port, path, raw, body, timeout)

    def check(self, raw: str, timeout: float = 10) -> int:
        return self.get(CHECK, raw, timeout=timeout)[0]

    def wait_feed_live(self) -> None:
        deadline = time.monotonic() + 10
        while self.get("/readyz")[1].get("invalidation_feed") != "live":
            assert time.monotonic() < deadline, f"{self.name}'s invalidation feed never became live"
            time.sleep(0.05)

    def terminate(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)  # no drain: the suite is done with it
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


class Database:
    """The instances' database, and how to make it hang."""

    def __init__(self, url: str, sqlite_path: Path | None, proxy: TcpProxy | None) -> None:
        self.url = url
        self.sqlite_path = sqlite_path
        self.proxy = proxy

    @property
    def is_postgres(self) -> bool:
        return self.sqlite_path is None

    @contextmanager
    def hung(self) -> Iterator[None]:
        """The database stops answering (PostgreSQL: the proxy paused; SQLite: a write lock held)."""
        if self.is_postgres:
            self.proxy.pause()
            try:
                yield
            finally:
                self.proxy.resume()
        else:
            conn = sqlite3.connect(self.sqlite_path, timeout=5, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                conn.execute("ROLLBACK")
                conn.close()

    def heal(self) -> None:
        if self.proxy is not None:
            self.proxy.heal()


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="session")
def fault_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="session")
def fault_database(fault_dir) -> Iterator[Database]:
    """A migrated database for the instances, reached through a proxy on PostgreSQL."""
    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CACHE_URL", "REDIS_URL")}
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        name = url.rsplit("/", 1)[1].split("?")[0] + "_faultsrv"
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        _manage({**base_env, "DATABASE_URL": f"{url.rsplit('/', 1)[0]}/{name}"}, "migrate", "--noinput")
        proxy = TcpProxy("127.0.0.1", 5432)
        host_part = url.split("@", 1)[0]  # postgres://user[:password]
        database = Database(f"{host_part}@127.0.0.1:{proxy.port}/{name}", None, proxy)
        try:
            yield database
        finally:
            proxy.close()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        path = fault_dir / "faults.sqlite3"
        url = f"sqlite:///{path}"
        _manage({**base_env, "DATABASE_URL": url}, "migrate", "--noinput")
        yield Database(url, path, None)


@pytest.fixture(scope="session")
def fault_redis(fault_dir) -> Iterator[RedisServer]:
    server = RedisServer(fault_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_env(fault_database, fault_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CACHE_URL", "REDIS_URL", "CACHE_DIR")}
    env.update(
        {
            "DATABASE_URL": fault_database.url,
            "ACCESSCTL_MASTER_KEY": MASTER,
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
            "ACCESSCTL_DRAIN_SECONDS": "1.5",
            "DB_CONNECT_TIMEOUT": "1",
            "LOG_LEVEL": "CRITICAL",
            "DEBUG": "0",
        }
    )
    return env


class Deployment:
    """Two instances on one database and one Redis; each reaches Redis through a proxy of its own, so
    that one of them alone can be cut off from it."""

    def __init__(self, env: dict[str, str], redis_server: RedisServer, database: Database, log_dir: Path) -> None:
        self.redis = redis_server
        self.database = database
        self.redis_proxies = {name: TcpProxy("127.0.0.1", redis_server.port) for name in ("a", "b")}
        prefix = f"faults-{uuid.uuid4().hex[:8]}"
        self.instances = {}
        for name, proxy in self.redis_proxies.items():
            self.instances[name] = Instance(
                name, env, log_dir, REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", CACHE_KEY_PREFIX=prefix
            )
        self.a, self.b = self.instances["a"], self.instances["b"]

    def heal(self) -> None:
        self.redis.heal()
        for proxy in self.redis_proxies.values():
            proxy.heal()
        self.database.heal()

    def new_key(self) -> str:
        user_id = f"faults-{uuid.uuid4().hex[:10]}@example.test"
        status, body = self.a.get("/key/generate", MASTER, {"user_id": user_id, "models": ["openai/gpt-4o"]})
        assert status == 200, body
        return body["key"]

    def warm(self, raw: str) -> None:
        """Both instances hold the key's decision (and serve it from memory once their feed is live).

        First lets every process read the key's creation from the invalidation log: a decision loaded
        before that is reloaded once when it does (harmless, but it would make the key cold again)."""
        time.sleep(0.5)
        for instance in (self.a, self.b, self.a, self.b):
            assert instance.check(raw) == 200
        for instance in (self.a, self.b):
            instance.wait_feed_live()
            assert instance.check(raw) == 200

    def close(self) -> None:
        for instance in self.instances.values():
            instance.stop()
        for proxy in self.redis_proxies.values():
            proxy.close()


@pytest.fixture(scope="module")
def deployment(server_env, fault_redis, fault_database, fault_dir) -> Iterator[Deployment]:
    deployment = Deployment(server_env, fault_redis, fault_database, fault_dir)
    try:
        yield deployment
    finally:
        deployment.heal()
        deployment.close()


@pytest.fixture
def healthy(deployment) -> Iterator[Deployment]:
    """The deployment, healed after the test whatever it broke."""
    deployment.heal()
    yield deployment
    deployment.heal()
    time.sleep(0.3)  # the breakers' half-open probes find Redis again


def refused_within(instance: Instance, raw: str, seconds: float, since: float) -> float:
    """Poll until the instance refuses the key; how long after `since` it did. Fails after `seconds`."""
    while True:
        status = instance.check(raw, timeout=5)
        elapsed = time.monotonic() - since
        if status == 403:
            return elapsed
        assert elapsed <= seconds, f"{instance.name} still answered {status} {elapsed:.2f} s after the block"
        time.sleep(0.02)


def in_background(function, *args) -> threading.Thread:
    thread = threading.Thread(target=function, args=args, daemon=True)
    thread.start()
    return thread
