"""The two-tenant world of the API tests, shared with the tenancy tests."""
from tests.api.conftest import client_for, master, tenant_a, tenant_b  # noqa: F401 - fixtures
