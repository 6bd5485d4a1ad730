"""Shared fixtures: the cache is cleared around every test so snapshots never leak between tests."""
import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def admin_user(db):
    from tests.factories import AdminFactory

    return AdminFactory(user_id="admin@example.test")
