"""Shared fixtures: the cache is cleared around every test so snapshots never leak between tests."""
import pytest
from django.core.cache import cache


def pytest_configure(config):
    # PBKDF2's million rounds cost ~0.3 s per password set or checked; the suite sets thousands.
    # Servers the tests start as subprocesses keep the production hasher.
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
