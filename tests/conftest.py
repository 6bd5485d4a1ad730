"""Shared fixtures: the cache is cleared around every test so snapshots never leak between tests."""
import pytest
from django.core.cache import cache


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
