"""Fixtures of the rotation tests: the LiteLLM client (tests/litellm) and the gateway's check (tests/gateway)."""
from tests.gateway.conftest import check, committed, file_cache, redis_cache, redis_server  # noqa: F401
from tests.litellm.conftest import MASTER_KEY, _master_key, api, org, org_admin, other_org  # noqa: F401

__all__ = ["MASTER_KEY"]
