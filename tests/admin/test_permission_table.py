"""Each role × each model admin × own / other tenant (or a global row) → editable, visible or 404.

"Own" is the organization the org admin administers, whose team the team admin administers and the
granted user was granted; "other" is a second organization none of them belongs to. A model that is not
in a role's admin at all (no module permission) answers 403 for every row, whoever's it is, so no id
can be probed there either.
"""
from __future__ import annotations

import pytest

from tests.admin.conftest import ROLES, admin_url, logged_in

pytestmark = pytest.mark.django_db

E, V, N, F = "editable", "visible", "404", "403"

TENANT_MODELS = (
    "orgs.user", "orgs.budget", "orgs.organization", "orgs.organizationmembership", "orgs.team",
    "orgs.teammembership", "orgs.auditentry", "keys.virtualkey", "accessgroups.accessgroup",
    "accessgroups.teamaccessgroup", "accessgroups.keyaccessgroup", "accessgroups.bulkjob",
)
GLOBAL_MODELS = ("accessgroups.accessgroup", "accessgroups.catalogmodel", "accessgroups.mcpserver",
                 "accessgroups.agent")
READ_ONLY = {"orgs.budget", "orgs.auditentry", "accessgroups.bulkjob", "accessgroups.teamaccessgroup",
             "accessgroups.keyaccessgroup"}  # assignments are added and removed, never edited

# (own tenant, other tenant) for each tenant model; team admins and granted users manage one team only.
ORG_ADMIN = {
    "orgs.user": (E, N), "orgs.budget": (V, N), "orgs.organization": (E, N),
    "orgs.organizationmembership": (E, N), "orgs.team": (E, N), "orgs.teammembership": (E, N),
    "orgs.auditentry": (V, N), "keys.virtualkey": (E, N), "accessgroups.accessgroup": (E, N),
    "accessgroups.teamaccessgroup": (V, N), "accessgroups.keyaccessgroup": (V, N), "accessgroups.bulkjob": (V, N),
}
TEAM_ADMIN = {label: (F, F) for label in TENANT_MODELS} | {
    "orgs.team": (E, N), "orgs.teammembership": (E, N), "keys.virtualkey": (E, N),
}
EXPECTED_TENANT = {
    "proxy_admin": {label: (V, V) if label in READ_ONLY else (E, E) for label in TENANT_MODELS},
    "admin_viewer": {label: (V, V) for label in TENANT_MODELS},
    "org_admin": ORG_ADMIN,
    "team_admin": TEAM_ADMIN,
    "granted": TEAM_ADMIN,
}
EXPECTED_GLOBAL = {
    "proxy_admin": dict.fromkeys(GLOBAL_MODELS, E),
    "admin_viewer": dict.fromkeys(GLOBAL_MODELS, V),
    "org_admin": dict.fromkeys(GLOBAL_MODELS, V),
    "team_admin": dict.fromkeys(GLOBAL_MODELS, V) | {"accessgroups.accessgroup": F},
    "granted": dict.fromkeys(GLOBAL_MODELS, V) | {"accessgroups.accessgroup": F},
}

TABLE = [
    pytest.param(role, label, tenant, EXPECTED_TENANT[role][label][i], id=f"{role}-{label}-{tenant}")
    for role in ROLES for label in TENANT_MODELS for i, tenant in enumerate(("own", "other"))
] + [
    pytest.param(role, label, "global", EXPECTED_GLOBAL[role][label], id=f"{role}-{label}-global")
    for role in ROLES for label in GLOBAL_MODELS
]


def _row(world, label: str, tenant: str):
    return world.global_rows[label] if tenant == "global" else getattr(world, tenant).rows[label]


def _outcome(response) -> str:
    if response.status_code in (404, 403):
        return str(response.status_code)
    assert response.status_code == 200, response.status_code
    return E if response.context["has_change_permission"] else V


def test_admin_permission_table_covers_every_model_the_admin_serves_and_every_role():
    from django.contrib import admin

    served = {model._meta.label_lower for model in admin.site._registry}
    assert served == set(TENANT_MODELS) | set(GLOBAL_MODELS)
    assert set(EXPECTED_TENANT) == set(EXPECTED_GLOBAL) == set(ROLES)
    assert all(set(row) == set(TENANT_MODELS) for row in EXPECTED_TENANT.values())
    assert all(set(row) == set(GLOBAL_MODELS) for row in EXPECTED_GLOBAL.values())


@pytest.mark.parametrize(("role", "label", "tenant", "expected"), TABLE)
def test_admin_change_page_by_role_and_tenant_answers_as_the_table_says(world, role, label, tenant, expected):
    client = logged_in(world.users[role])
    response = client.get(admin_url(label, "change", _row(world, label, tenant).pk))
    assert _outcome(response) == expected


@pytest.mark.parametrize(("role", "label", "tenant", "expected"), TABLE)
def test_admin_changelist_by_role_lists_a_row_exactly_when_it_is_visible(world, role, label, tenant, expected):
    client = logged_in(world.users[role])
    response = client.get(admin_url(label, "changelist"))
    row = _row(world, label, tenant)
    if response.status_code == 403:  # the whole model is out of this role's reach
        assert expected == F
        return
    listed = response.context["cl"].queryset.filter(pk=row.pk).exists()
    assert listed == (expected in (E, V))
