"""Shared fixtures: the cache is cleared around every test so snapshots never leak between tests."""
import pytest
from django.core.cache import cache

# Under `--dist loadgroup` (make test), what must not be split across the xdist workers runs on one:
# the directories whose tests share servers or databases of their own through session fixtures (a gunicorn
# + LiteLLM + nginx stack, fault proxies, a browser, an identity provider, scratch LiteLLM databases), so
# those are started once and never twice at the same time; and the modules whose tests share expensive
# module-scoped rows, set up once. Everything else is dealt out test by test.
SERIAL_DIRECTORIES = ("browser", "faults", "gateways", "litellm_import", "sso")
SERIAL_MODULES = ("tests/accessgroups/test_group_read_size.py",)


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its serial directory or module, else the test alone."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    if len(parts) > 2 and parts[1] in SERIAL_DIRECTORIES:
        return parts[1]
    return path if path in SERIAL_MODULES else nodeid


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent under `-p no:xdist` (PYTEST_WORKERS=0)
def pytest_xdist_make_scheduler(config, log):
    """xdist's own loadgroup reads `xdist_group` marks through a node id suffix that pytest 9 no longer
    honours (Node.nodeid is derived, not stored), so the grouping is ours: xdist's scope scheduler, keyed
    by `work_unit`. Its bookkeeping is by node id, and schemathesis gives all 117 operations of
    tests/schema/test_schemathesis.py one node id: repeats get a suffix, so each still runs."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from collections import Counter

    from xdist.scheduler import LoadScopeScheduling

    class PathGroupScheduling(LoadScopeScheduling):
        def add_node_collection(self, node, collection):
            seen: Counter[str] = Counter()
            unique = []
            for nodeid in collection:
                unique.append(nodeid if not seen[nodeid] else f"{nodeid}\x00{seen[nodeid]}")
                seen[nodeid] += 1
            super().add_node_collection(node, unique)

        def _split_scope(self, nodeid: str) -> str:
            unit = work_unit(nodeid.split("\x00", 1)[0])
            return nodeid if unit == nodeid.split("\x00", 1)[0] else unit

    return PathGroupScheduling(config, log)


def pytest_configure(config):
    # PBKDF2's million rounds cost ~0.3 s per password set or checked; the suite sets thousands.
    # Servers the tests start as subprocesses keep the production hasher.
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # PostgreSQL: the test database need not survive a crash, so a commit does not wait for its WAL flush
    # (migrations, transactional tests, module-scoped rows, live servers commit often). A session setting:
    # the shared server's configuration is untouched.
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.postgresql":
        options = database.setdefault("OPTIONS", {})
        options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()


@pytest.fixture(autouse=True)
def _clear_cache():
    from keys import cache as snapshot_cache

    cache.clear()
    snapshot_cache.reset_process_state()  # a breaker a test opened (a closed port) must not outlive it
    yield
    cache.clear()
    snapshot_cache.reset_process_state()


@pytest.fixture
def admin_user(db):
    from tests.factories import AdminFactory

    return AdminFactory(user_id="admin@example.test")
