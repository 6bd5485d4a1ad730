"""The authorization tests drive the same interfaces as the LiteLLM-route tests, with the same world:
one definition of the fixtures and helpers (tests/litellm/conftest.py)."""
from tests.litellm.conftest import (  # noqa: F401 (fixtures are found by name in a conftest)
    Api,
    _master_key,
    api,
    assert_detail,
    assert_error,
    key_of,
    member,
    org,
    org_admin,
    other_org,
    outsider,
    team,
    team_admin,
)
