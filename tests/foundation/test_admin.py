"""The admin: every page answers for a platform admin, changelists keep a constant query count, writes go
through the services (audited), the key secret is shown exactly once, and the audit log is read-only."""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib import admin
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse

from accessctl.roles import PlatformRole, TeamRole
from accessgroups import services as access_services
from accessgroups.models import AccessGroup, KeyAccessGroup, TeamAccessGroup
from keys import crypto
from keys.models import VirtualKey
from orgs.audit import record
from orgs.models import AuditEntry, Team, TeamMembership, User
from tests.factories import (
    AccessGroupFactory,
    AgentFactory,
    CatalogModelFactory,
    KeyFactory,
    MCPServerFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    TeamMembershipFactory,
    UserFactory,
)
from tests.foundation.html_forms import form_data

pytestmark = pytest.mark.django_db

SECRET_IN_PAGE = re.compile(r'value="(sk-[A-Za-z0-9_\-]{20,})"')


# --- builders: n rows of each registered model, made through the services -----------------------------


def _keys(n: int) -> None:
    org = OrganizationFactory()
    team = TeamFactory(organization=org)
    for _ in range(n):
        KeyFactory(team=team)


def _team_assignments(n: int) -> None:
    group = AccessGroupFactory()
    access_services.access_group_assign(actor=None, group=group, teams=[TeamFactory() for _ in range(n)])


def _key_assignments(n: int) -> None:
    group = AccessGroupFactory()
    access_services.access_group_assign(actor=None, group=group, keys=[KeyFactory(team=TeamFactory()) for _ in range(n)])


def _audit_entries(n: int) -> None:
    for i in range(n):
        record(actor=None, action="test_entry", object_type="test", object_id=i)


def _bulk_jobs(n: int) -> None:
    from accessgroups.bulk import Selection
    from accessgroups.bulk_jobs import bulk_assign_start

    group, key = AccessGroupFactory(), KeyFactory()
    for _ in range(n):
        bulk_assign_start(actor=None, target="keys", group_refs=[str(group.pk)], selection=Selection(ids=(str(key.pk),)))


def _many(factory: Callable[..., object], **kwargs: object) -> Callable[[int], None]:
    def build(n: int) -> None:
        for _ in range(n):
            factory(**kwargs)

    return build


BUILDERS: dict[str, Callable[[int], None]] = {
    "orgs.user": _many(UserFactory),
    "orgs.budget": _many(OrganizationFactory),
    "orgs.organization": _many(OrganizationFactory),
    "orgs.organizationmembership": _many(OrganizationMembershipFactory),
    "orgs.team": lambda n: [TeamFactory(organization=OrganizationFactory()) for _ in range(n)],
    "orgs.teammembership": _many(TeamMembershipFactory),
    "orgs.auditentry": _audit_entries,
    "keys.virtualkey": _keys,
    "accessgroups.accessgroup": _many(AccessGroupFactory),
    "accessgroups.teamaccessgroup": _team_assignments,
    "accessgroups.keyaccessgroup": _key_assignments,
    "accessgroups.catalogmodel": _many(CatalogModelFactory),
    "accessgroups.mcpserver": _many(MCPServerFactory),
    "accessgroups.agent": _many(AgentFactory),
    "accessgroups.bulkjob": _bulk_jobs,
}
READ_ONLY = {"orgs.budget", "orgs.auditentry", "accessgroups.bulkjob"}

# Queries of one changelist page, whatever the number of rows: session, user, the caller's memberships (2),
# counts, the page, and one per related-only filter's choices.
CHANGELIST_QUERIES = {
    "orgs.user": 7,
    "orgs.budget": 8,
    "orgs.organization": 7,
    "orgs.organizationmembership": 8,
    "orgs.team": 8,
    "orgs.teammembership": 8,
    "orgs.auditentry": 8,
    "keys.virtualkey": 9,
    "accessgroups.accessgroup": 8,
    "accessgroups.teamaccessgroup": 8,
    "accessgroups.keyaccessgroup": 8,
    "accessgroups.catalogmodel": 8,
    "accessgroups.mcpserver": 7,
    "accessgroups.agent": 7,
    "accessgroups.bulkjob": 6,
}


def _url(label: str, view: str, *args: object) -> str:
    app, model = label.split(".")
    return reverse(f"admin:{app}_{model}_{view}", args=args)


@pytest.fixture
def admin_client(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def world(admin_user: User) -> dict[str, object]:
    """One row of every registered model, linked together as real data is."""
    org = OrganizationFactory()
    member = OrganizationMembershipFactory(organization=org)
    team = TeamFactory(organization=org)
    team_member = TeamMembershipFactory(team=team, user=member.user)
    group = AccessGroupFactory(organization=org)
    key = KeyFactory(team=team, user=member.user, access_group_ids=[group.pk])
    access_services.access_group_assign(actor=None, group=group, teams=[team])
    return {
        "orgs.user": member.user,
        "orgs.budget": org.budget,
        "orgs.organization": org,
        "orgs.organizationmembership": member,
        "orgs.team": team,
        "orgs.teammembership": team_member,
        "orgs.auditentry": AuditEntry.objects.first(),
        "keys.virtualkey": key,
        "accessgroups.accessgroup": group,
        "accessgroups.teamaccessgroup": TeamAccessGroup.objects.get(team=team, access_group=group),
        "accessgroups.keyaccessgroup": KeyAccessGroup.objects.get(key=key, access_group=group),
        "accessgroups.catalogmodel": CatalogModelFactory(),
        "accessgroups.mcpserver": MCPServerFactory(),
        "accessgroups.agent": AgentFactory(),
        "accessgroups.bulkjob": _first_bulk_job(),
    }


def _first_bulk_job() -> object:
    from accessgroups.models import BulkJob

    _bulk_jobs(1)
    return BulkJob.objects.first()


def test_admin_tables_cover_every_registered_model():
    registered = {f"{m._meta.app_label}.{m._meta.model_name}" for m in admin.site._registry}
    assert registered == set(BUILDERS) == set(CHANGELIST_QUERIES)


# --- every page answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [pytest.param(label, id=label) for label in BUILDERS])
def test_admin_changelist_for_platform_admin_answers_200(admin_client, world, label):
    assert admin_client.get(_url(label, "changelist")).status_code == 200


@pytest.mark.parametrize("label", [pytest.param(label, id=label) for label in BUILDERS if label not in READ_ONLY])
def test_admin_add_page_for_platform_admin_answers_200(admin_client, world, label):
    assert admin_client.get(_url(label, "add")).status_code == 200


@pytest.mark.parametrize("label", [pytest.param(label, id=label) for label in BUILDERS])
def test_admin_change_page_for_platform_admin_answers_200(admin_client, world, label):
    assert admin_client.get(_url(label, "change", world[label].pk)).status_code == 200


def test_admin_index_for_platform_admin_lists_every_model(admin_client, world):
    page = admin_client.get(reverse("admin:index")).content.decode()
    for label in BUILDERS:
        assert _url(label, "changelist") in page


@pytest.mark.parametrize("label", [pytest.param(label, id=label) for label in BUILDERS if label not in READ_ONLY])
def test_admin_add_page_for_admin_viewer_is_refused(client, label):
    client.force_login(UserFactory(user_role=PlatformRole.PROXY_ADMIN_VIEWER))
    assert client.get(_url(label, "add")).status_code == 403


def test_admin_changelist_for_admin_viewer_answers_200(client, world):
    client.force_login(UserFactory(user_role=PlatformRole.PROXY_ADMIN_VIEWER))
    assert client.get(_url("keys.virtualkey", "changelist")).status_code == 200


def test_admin_index_for_internal_user_is_refused(client):
    client.force_login(UserFactory())
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_admin_login_with_user_id_and_password_succeeds(client):
    UserFactory(user_id="ops@example.test", user_role=PlatformRole.PROXY_ADMIN, password="a-long-password")
    response = client.post(
        reverse("admin:login"), {"username": "ops@example.test", "password": "a-long-password", "next": "/admin/"}
    )
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


# --- constant query counts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "rows"),
    [pytest.param(label, rows, id=f"{label}-{rows}") for label in BUILDERS for rows in (1, 30)],
)
def test_admin_changelist_query_count_does_not_grow_with_rows(
    admin_client, django_assert_num_queries, label, rows
):
    BUILDERS[label](rows)
    with django_assert_num_queries(CHANGELIST_QUERIES[label]):
        response = admin_client.get(_url(label, "changelist"))
    assert response.status_code == 200


# --- the key secret: shown once -------------------------------------------------------------------------


def _add_key(client: Client, **fields: str) -> tuple[object, str | None]:
    data = form_data(client.get(_url("keys.virtualkey", "add")).content.decode(), "virtualkey_form")
    data.update(fields)
    response = client.post(_url("keys.virtualkey", "add"), data)
    match = SECRET_IN_PAGE.search(response.content.decode())
    return response, match.group(1) if match else None


def test_admin_key_add_shows_the_secret_of_the_new_key(admin_client, admin_user):
    response, raw = _add_key(admin_client, user=str(admin_user.pk), key_alias="from-admin")
    assert response.status_code == 200
    assert VirtualKey.objects.get(key_alias="from-admin").token == crypto.hash_secret(raw)


def test_admin_key_add_page_with_secret_is_not_cached(admin_client, admin_user):
    response, _ = _add_key(admin_client, user=str(admin_user.pk), key_alias="no-store")
    assert "no-store" in response["Cache-Control"]


def test_admin_key_add_is_audited_with_masked_name_only(admin_client, admin_user):
    _, raw = _add_key(admin_client, user=str(admin_user.pk), key_alias="audited")
    entry = AuditEntry.objects.get(action="key_generate")
    assert entry.actor_id == admin_user.user_id
    assert entry.after["key_name"] == crypto.mask(raw)
    assert raw not in str(entry.before) + str(entry.after)


@pytest.mark.parametrize("view", [pytest.param("change", id="change-page"), pytest.param("changelist", id="list")])
def test_admin_key_pages_after_creation_never_show_the_secret(admin_client, admin_user, view):
    _, raw = _add_key(admin_client, user=str(admin_user.pk), key_alias="once")
    key = VirtualKey.objects.get(key_alias="once")
    page = admin_client.get(_url("keys.virtualkey", view, *([key.pk] if view == "change" else []))).content.decode()
    assert raw not in page and raw[3:] not in page
    assert key.key_name in page


def test_admin_key_add_without_user_or_team_is_refused(admin_client):
    response, raw = _add_key(admin_client, key_alias="orphan")
    assert response.status_code == 200 and raw is None
    assert not VirtualKey.objects.filter(key_alias="orphan").exists()


def test_admin_key_add_with_bad_duration_names_the_field(admin_client, admin_user):
    response, raw = _add_key(admin_client, user=str(admin_user.pk), key_alias="bad", duration="soon")
    assert raw is None
    assert "duration" in response.context["adminform"].form.errors


# --- writes go through the services -------------------------------------------------------------------


def _post_action(client: Client, label: str, action: str, rows: list[object]) -> None:
    client.post(
        _url(label, "changelist"),
        {"action": action, admin.helpers.ACTION_CHECKBOX_NAME: [str(r.pk) for r in rows]},
    )


def test_admin_block_action_blocks_keys_and_audits(admin_client):
    keys = [KeyFactory(), KeyFactory()]
    _post_action(admin_client, "keys.virtualkey", "block_keys", keys)
    assert VirtualKey.objects.filter(pk__in=[k.pk for k in keys], blocked=True).count() == 2
    assert AuditEntry.objects.filter(action="key_block").count() == 2


def test_admin_unblock_action_unblocks_keys_and_audits(admin_client):
    key = KeyFactory(blocked=True)
    _post_action(admin_client, "keys.virtualkey", "unblock_keys", [key])
    key.refresh_from_db()
    assert key.blocked is False
    assert AuditEntry.objects.filter(action="key_unblock", object_id=key.token).exists()


def test_admin_key_delete_goes_through_the_service(admin_client):
    key = KeyFactory()
    admin_client.post(_url("keys.virtualkey", "delete", key.pk), {"post": "yes"})
    assert not VirtualKey.objects.filter(pk=key.pk).exists()
    assert AuditEntry.objects.filter(action="key_delete", object_id=key.token).exists()


def test_admin_key_change_updates_through_the_service(admin_client):
    key = KeyFactory(models=["openai/gpt-4o"])
    url = _url("keys.virtualkey", "change", key.pk)
    data = form_data(admin_client.get(url).content.decode(), "virtualkey_form")
    data["models"] = "openai/gpt-4o\nanthropic/claude-3-5-sonnet"
    assert admin_client.post(url, data).status_code == 302
    key.refresh_from_db()
    assert key.models == ["openai/gpt-4o", "anthropic/claude-3-5-sonnet"]
    assert AuditEntry.objects.get(action="key_update").after == {"models": key.models}


def test_admin_key_access_group_inline_assigns_and_keeps_lists_in_sync(admin_client):
    key, group = KeyFactory(), AccessGroupFactory()
    url = _url("keys.virtualkey", "change", key.pk)
    data = form_data(admin_client.get(url).content.decode(), "virtualkey_form")
    data.update({"access_group_assignments-TOTAL_FORMS": "1", "access_group_assignments-0-access_group": str(group.pk)})
    assert admin_client.post(url, data).status_code == 302
    key.refresh_from_db()
    group.refresh_from_db()
    assert key.access_group_ids == [str(group.pk)] and group.assigned_key_count == 1
    assert access_services.sync_all(repair=False) == {"teams": [], "keys": [], "groups": []}


def test_admin_key_assignment_added_on_its_own_page_goes_through_the_service(admin_client):
    key, group = KeyFactory(), AccessGroupFactory()
    url = _url("accessgroups.keyaccessgroup", "add")
    data = form_data(admin_client.get(url).content.decode(), "keyaccessgroup_form")
    data.update({"access_group": str(group.pk), "key": str(key.pk)})
    assert admin_client.post(url, data).status_code == 302
    key.refresh_from_db()
    assert key.access_group_ids == [str(group.pk)]
    assert access_services.sync_all(repair=False) == {"teams": [], "keys": [], "groups": []}


def test_admin_team_assignment_deleted_on_its_own_page_goes_through_the_service(admin_client):
    team, group = TeamFactory(), AccessGroupFactory()
    access_services.access_group_assign(actor=None, group=group, teams=[team])
    assignment = TeamAccessGroup.objects.get(team=team, access_group=group)
    admin_client.post(_url("accessgroups.teamaccessgroup", "delete", assignment.pk), {"post": "yes"})
    team.refresh_from_db()
    assert team.access_group_ids == []
    assert not TeamAccessGroup.objects.filter(pk=assignment.pk).exists()
    assert access_services.sync_all(repair=False) == {"teams": [], "keys": [], "groups": []}


def test_admin_team_member_inline_adds_member_through_the_service(admin_client):
    team, user = TeamFactory(), UserFactory()
    url = _url("orgs.team", "change", team.pk)
    data = form_data(admin_client.get(url).content.decode(), "team_form")
    data.update({"memberships-TOTAL_FORMS": "1", "memberships-0-user": str(user.pk), "memberships-0-role": "admin"})
    assert admin_client.post(url, data).status_code == 302
    assert TeamMembership.objects.get(team=team, user=user).role == TeamRole.ADMIN
    assert AuditEntry.objects.filter(action="team_member_add").exists()


def test_admin_team_member_inline_changes_a_role_through_the_service(admin_client):
    membership = TeamMembershipFactory(role=TeamRole.USER)
    url = _url("orgs.team", "change", membership.team.pk)
    data = form_data(admin_client.get(url).content.decode(), "team_form")
    data["memberships-0-role"] = "admin"
    assert admin_client.post(url, data).status_code == 302
    membership.refresh_from_db()
    assert membership.role == TeamRole.ADMIN
    assert AuditEntry.objects.filter(action="team_member_update").exists()


def test_admin_team_member_inline_removes_a_member_through_the_service(admin_client):
    membership = TeamMembershipFactory()
    url = _url("orgs.team", "change", membership.team.pk)
    data = form_data(admin_client.get(url).content.decode(), "team_form")
    data["memberships-0-DELETE"] = "on"
    assert admin_client.post(url, data).status_code == 302
    assert not TeamMembership.objects.filter(pk=membership.pk).exists()
    assert AuditEntry.objects.filter(action="team_member_delete").exists()


def test_admin_organization_member_inline_adds_member_through_the_service(admin_client):
    org, user = OrganizationFactory(), UserFactory()
    url = _url("orgs.organization", "change", org.pk)
    data = form_data(admin_client.get(url).content.decode(), "organization_form")
    data.update({"memberships-TOTAL_FORMS": "1", "memberships-0-user": str(user.pk),
                 "memberships-0-user_role": "org_admin"})
    assert admin_client.post(url, data).status_code == 302
    assert org.memberships.get(user=user).user_role == "org_admin"
    assert AuditEntry.objects.filter(action="organization_member_add").exists()


def test_admin_organization_member_inline_replacing_the_user_removes_then_adds(admin_client):
    membership, other = OrganizationMembershipFactory(), UserFactory()
    url = _url("orgs.organization", "change", membership.organization.pk)
    data = form_data(admin_client.get(url).content.decode(), "organization_form")
    data["memberships-0-user"] = str(other.pk)
    assert admin_client.post(url, data).status_code == 302
    assert list(membership.organization.memberships.values_list("user_id", flat=True)) == [other.pk]
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"organization_member_delete", "organization_member_add"} <= actions


def test_admin_team_with_models_outside_its_organization_shows_the_refusal(admin_client):
    org = OrganizationFactory(models=["openai/gpt-4o"])
    data = form_data(admin_client.get(_url("orgs.team", "add")).content.decode(), "team_form")
    data.update({"team_alias": "too-wide", "organization": str(org.pk), "models": "anthropic/claude-3-opus"})
    response = admin_client.post(_url("orgs.team", "add"), data)
    assert response.status_code == 200
    assert "anthropic/claude-3-opus" in str(response.context["adminform"].form.errors)
    assert not Team.objects.filter(team_alias="too-wide").exists()


def test_admin_organization_delete_is_a_soft_delete(admin_client):
    org = OrganizationFactory()
    admin_client.post(_url("orgs.organization", "delete", org.pk), {"post": "yes"})
    org.refresh_from_db()
    assert org.deleted_at is not None
    assert AuditEntry.objects.filter(action="organization_delete", object_id=str(org.pk)).exists()


def test_admin_user_password_change_lets_the_user_log_in_and_is_not_audited_in_clear(admin_client):
    user = UserFactory(user_role=PlatformRole.PROXY_ADMIN_VIEWER)
    url = _url("orgs.user", "change", user.pk)
    data = form_data(admin_client.get(url).content.decode(), "user_form")
    data.update({"new_password1": "viewer-secret-pass", "new_password2": "viewer-secret-pass"})
    assert admin_client.post(url, data).status_code == 302
    assert Client().login(request=HttpRequest(), username=user.user_id, password="viewer-secret-pass")
    assert "viewer-secret-pass" not in str(AuditEntry.objects.get(action="user_update").after)


def test_admin_access_group_add_goes_through_the_service(admin_client):
    data = form_data(admin_client.get(_url("accessgroups.accessgroup", "add")).content.decode(),
                     "accessgroup_form")
    data.update({"access_group_name": "frontier", "access_model_names": "openai/gpt-4o, anthropic/*"})
    assert admin_client.post(_url("accessgroups.accessgroup", "add"), data).status_code == 302
    group = AccessGroup.objects.get(access_group_name="frontier")
    assert group.access_model_names == ["openai/gpt-4o", "anthropic/*"]
    assert AuditEntry.objects.filter(action="access_group_create", object_id=str(group.pk)).exists()


def test_admin_access_group_name_clash_is_shown_on_the_name_field(admin_client):
    AccessGroupFactory(access_group_name="Frontier")
    data = form_data(admin_client.get(_url("accessgroups.accessgroup", "add")).content.decode(),
                     "accessgroup_form")
    data["access_group_name"] = "frontier"
    response = admin_client.post(_url("accessgroups.accessgroup", "add"), data)
    assert response.status_code == 200
    assert "access_group_name" in response.context["adminform"].form.errors


# --- the audit log is read-only ------------------------------------------------------------------------


def test_admin_audit_log_add_is_refused(admin_client):
    assert admin_client.get(_url("orgs.auditentry", "add")).status_code == 403


def test_admin_audit_log_change_post_is_refused(admin_client, world):
    entry = world["orgs.auditentry"]
    response = admin_client.post(_url("orgs.auditentry", "change", entry.pk), {"action": "forged"})
    assert response.status_code == 403
    entry.refresh_from_db()
    assert entry.action != "forged"


def test_admin_audit_log_delete_is_refused(admin_client, world):
    entry = world["orgs.auditentry"]
    response = admin_client.post(_url("orgs.auditentry", "delete", entry.pk), {"post": "yes"})
    assert response.status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_admin_audit_log_offers_no_bulk_delete(admin_client, world):
    page = admin_client.get(_url("orgs.auditentry", "changelist")).content.decode()
    assert "delete_selected" not in page


def test_admin_organizations_list_shows_deleted_ones_as_deleted(admin_client):
    org = OrganizationFactory(organization_alias="Gone Inc")
    admin_client.post(_url("orgs.organization", "delete", org.pk), {"post": "yes"})
    page = admin_client.get(_url("orgs.organization", "changelist") + "?deleted=yes").content.decode()
    assert "Gone Inc" in page
