"""The one map of which changed fields need which further action (`policy.FIELD_ACTIONS`), shared by the
services of every interface and the admin's read-only fields."""
from __future__ import annotations

import pytest

from accessctl.policy import FIELD_ACTIONS, WRITE_ACTIONS, actions_for


@pytest.mark.parametrize(
    ("kind", "fields", "actions"),
    [
        pytest.param("key", {"key_alias"}, [], id="key alias: key:update alone"),
        pytest.param("key", {"key_type", "allowed_routes"}, [], id="key routes: key:update alone"),
        pytest.param("key", {"max_budget"}, ["key:update_budget"], id="key budget"),
        pytest.param("key", {"user"}, ["key:reassign"], id="key owner"),
        pytest.param("key", {"access_group_ids"}, ["key:assign_access_groups"], id="key access groups"),
        pytest.param("team", {"team_alias"}, [], id="team alias: team:update alone"),
        pytest.param("team", {"models", "blocked"}, ["team:update_limits"], id="team limits"),
        pytest.param("team", {"organization"}, ["team:update_limits"], id="team move"),
        pytest.param("team", {"member_permissions"}, ["team:permissions_update"], id="team member permissions"),
        pytest.param("organization", {"organization_alias"}, [], id="organization alias"),
        pytest.param("organization", {"models", "max_budget"}, ["organization:update_limits"], id="organization limits"),
        pytest.param("access_group", {"access_model_names"}, [], id="group models: access_group:update alone"),
        pytest.param("access_group", {"assigned_key_ids"}, ["access_group:assign"], id="group assignments"),
        pytest.param("user", {"password"}, ["user:update_password"], id="user password"),
        pytest.param("user", {"user_role"}, ["user:update_role"], id="user role"),
        pytest.param("user", {"is_system", "spend"}, ["user:update_role", "user:update_budget"], id="user role and spend"),
        pytest.param("user", {"user_alias"}, [], id="user alias: user:update alone"),
    ],
)
def test_actions_for_changed_fields(kind, fields, actions):
    assert actions_for(kind, fields) == actions


def test_every_field_action_has_a_row_above():
    rows = test_actions_for_changed_fields.pytestmark[0].args[1]
    assert {action for row in rows for action in row.values[2]} == {
        action for kind in FIELD_ACTIONS.values() for action in kind
    }


def test_field_actions_name_only_write_actions():
    assert {action for kind in FIELD_ACTIONS.values() for action in kind} <= WRITE_ACTIONS
