"""Who may read a bulk job; key aliases unique per tenant (so "already exists" reveals nothing about
another organization); user ids a global namespace whose conflict answer names nothing but the id;
admin login throttling, password rules on every path that sets one, and a CSV export spreadsheets
cannot run."""
from __future__ import annotations

import csv
import io

import pytest
from django.contrib.admin import helpers
from django.test import Client
from django.urls import reverse

from accessctl.common import csv_cell
from accessctl.roles import OrgRole, PlatformRole
from accessgroups.models import BulkJob
from keys.models import VirtualKey
from orgs.models import User
from tests.factories import (
    AdminFactory,
    KeyFactory,
    OrganizationFactory,
    OrganizationMembershipFactory,
    TeamFactory,
    UserFactory,
)
from tests.foundation.html_forms import form_data
from tests.hygiene.conftest import client_for, database_dump, refusal

pytestmark = pytest.mark.django_db


# --- bulk jobs -----------------------------------------------------------------------------------


def _org_admin(org, user_id=None) -> User:
    user = UserFactory(**({"user_id": user_id} if user_id else {}))
    OrganizationMembershipFactory(organization=org, user=user, user_role=OrgRole.ORG_ADMIN)
    return user


@pytest.fixture
def job(world) -> BulkJob:
    """A bulk job one org admin started in the world's organization."""
    TeamFactory(organization=world.org)
    starter = KeyFactory(user=world.org_admin)
    response = client_for(starter.raw).post(
        f"/api/v1/access-groups/{world.group.pk}/bulk-assign/", {"all": True, "target": "teams"}, format="json"
    )
    assert response.status_code == 202, response.content
    return BulkJob.objects.get(pk=response.json()["job_id"])


def _read_job(raw: str, job: BulkJob) -> int:
    return client_for(raw).get(f"/api/v1/bulk-jobs/{job.pk}/").status_code


def test_bulk_job_is_read_by_its_requester(world, job):
    assert _read_job(KeyFactory(user=world.org_admin).raw, job) == 200


def test_bulk_job_is_read_by_another_admin_of_its_organization(world, job):
    assert _read_job(KeyFactory(user=_org_admin(world.org)).raw, job) == 200


@pytest.mark.parametrize(
    "reader",
    [
        pytest.param(lambda w: w.member, id="org-member"),
        pytest.param(lambda w: w.viewer, id="unrelated-viewer"),
        pytest.param(lambda w: _org_admin(OrganizationFactory()), id="other-org-admin"),
    ],
)
def test_bulk_job_is_not_found_for_anyone_else_in_or_out_of_the_org(world, job, reader):
    assert _read_job(KeyFactory(user=reader(world)).raw, job) == 404


def test_bulk_job_of_the_org_by_a_team_key_of_the_org_is_not_found(world, job):
    # The member's team key resolves to the organization's context: still not theirs to read.
    assert _read_job(world.key.raw, job) == 404


# --- key aliases ---------------------------------------------------------------------------------


def _generate(raw: str, **body):
    return client_for(raw).post("/key/generate", body, format="json")


def test_same_key_alias_in_two_organizations_is_allowed(world):
    other = OrganizationFactory()
    other_admin = _org_admin(other)
    KeyFactory(organization=other, user=other_admin, key_alias="prod")

    response = _generate(KeyFactory(user=world.org_admin).raw, key_alias="prod", organization_id=str(world.org.pk))

    assert response.status_code == 200, response.content
    assert VirtualKey.objects.filter(key_alias="prod").count() == 2


def test_key_alias_taken_in_another_org_answers_like_a_free_alias(world):
    """An org admin learns nothing about another organization's aliases."""
    KeyFactory(organization=OrganizationFactory(), key_alias="theirs")
    raw = KeyFactory(user=world.org_admin).raw

    taken_elsewhere = _generate(raw, key_alias="theirs", organization_id=str(world.org.pk))
    free = _generate(raw, key_alias="nobodys", organization_id=str(world.org.pk))

    assert taken_elsewhere.status_code == free.status_code == 200


def test_key_alias_taken_in_the_same_org_is_a_400_naming_key_alias(world):
    raw = KeyFactory(user=world.org_admin).raw
    before = database_dump()

    response = _generate(raw, key_alias="hygiene-key", organization_id=str(world.org.pk))

    assert refusal(response) == (400, "key_alias")
    assert database_dump() == before


def test_personal_key_aliases_are_unique_per_owner(world):
    KeyFactory(user=world.member, key_alias="laptop")
    KeyFactory(user=world.viewer, key_alias="laptop")  # another owner: fine

    response = _generate(KeyFactory(user=world.member).raw, key_alias="laptop")

    assert refusal(response) == (400, "key_alias")


def test_moving_a_key_into_an_org_where_its_alias_is_taken_is_a_400(master, world):
    KeyFactory(user=world.member, key_alias="hygiene-key")  # personal: no clash yet
    moving = VirtualKey.objects.get(user=world.member, organization__isnull=True, key_alias="hygiene-key")
    team = TeamFactory(organization=world.org)

    response = client_for(master).post("/key/update", {"key": moving.token, "team_id": str(team.pk)}, format="json")

    assert refusal(response) == (400, "key_alias")
    moving.refresh_from_db()
    assert moving.team_id is None


def test_alias_shared_by_keys_of_two_orgs_is_ambiguous_for_the_master_until_an_org_is_chosen(master, world):
    other = OrganizationFactory()
    KeyFactory(organization=other, user=_org_admin(other), key_alias="hygiene-key")

    ambiguous = client_for(master).post("/key/update", {"key_alias": "hygiene-key", "max_budget": 5}, format="json")
    chosen = client_for(master, org=world.org).post(
        "/key/update", {"key_alias": "hygiene-key", "max_budget": 5}, format="json"
    )

    assert refusal(ambiguous) == (400, "key_alias")
    assert chosen.status_code == 200, chosen.content
    assert VirtualKey.objects.get(pk=world.key.pk).max_budget == 5


def test_alias_lookup_of_an_org_admin_sees_only_their_org(world):
    other = OrganizationFactory()
    KeyFactory(organization=other, user=_org_admin(other), key_alias="hygiene-key")

    response = client_for(KeyFactory(user=world.org_admin).raw).post(
        "/key/delete", {"key_aliases": ["hygiene-key"]}, format="json"
    )

    assert response.status_code == 200, response.content
    assert VirtualKey.objects.filter(key_alias="hygiene-key").count() == 1


# --- user ids: one global namespace --------------------------------------------------------------


def test_user_id_conflict_answers_the_same_wherever_the_user_lives(world):
    """user_id names a person across tenants, so it stays globally unique: a conflict is 409 naming only
    the field and the id the caller sent, the same for a user of their own org and of another."""
    foreign = UserFactory(user_id="someone@elsewhere.test")
    OrganizationMembershipFactory(organization=OrganizationFactory(), user=foreign)
    raw = KeyFactory(user=world.org_admin).raw

    def create(user_id: str):
        return client_for(raw).post("/user/new", {"user_id": user_id, "organization_id": str(world.org.pk),
                                                  "auto_create_key": False}, format="json")

    own, elsewhere = create(world.member.user_id), create(foreign.user_id)

    assert refusal(own) == refusal(elsewhere) == (409, "user_id")
    assert own.json()["error"]["message"].replace(world.member.user_id, "<id>") == (
        elsewhere.json()["error"]["message"].replace(foreign.user_id, "<id>")
    )


# --- admin login throttling (django-axes) ----------------------------------------------------------

PASSWORD = "correct-horse-battery-staple"


def _login(client: Client, user_id: str, password: str, address: str = "10.0.0.1"):
    return client.post(reverse("admin:login"), {"username": user_id, "password": password, "next": "/admin/"},
                       REMOTE_ADDR=address)


def test_admin_login_after_25_wrong_passwords_refuses_the_right_one():
    admin = UserFactory(user_id="root@example.test", password=PASSWORD, user_role=PlatformRole.PROXY_ADMIN)
    client = Client()
    statuses = [_login(client, admin.user_id, f"wrong-{i}").status_code for i in range(25)]

    response = _login(client, admin.user_id, PASSWORD)

    assert statuses[:4] == [200] * 4 and statuses[-1] == 429
    assert response.status_code == 429
    assert client.get(reverse("admin:index")).status_code == 302  # not logged in


def test_admin_login_lockout_is_per_user_and_address_so_others_are_not_locked_out():
    admin = UserFactory(user_id="root@example.test", password=PASSWORD, user_role=PlatformRole.PROXY_ADMIN)
    for i in range(10):
        _login(Client(), admin.user_id, f"wrong-{i}", address="10.6.6.6")

    response = _login(Client(), admin.user_id, PASSWORD, address="10.0.0.2")

    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_admin_login_below_the_limit_then_right_password_logs_in():
    admin = UserFactory(user_id="root@example.test", password=PASSWORD, user_role=PlatformRole.PROXY_ADMIN)
    client = Client()
    for i in range(3):
        _login(client, admin.user_id, f"wrong-{i}")

    assert _login(client, admin.user_id, PASSWORD).status_code == 302


# --- password rules on every path that sets a password ---------------------------------------------

WEAK = [
    pytest.param("password", id="common"),
    pytest.param("12345678901", id="numeric"),
    pytest.param("short", id="too-short"),
    pytest.param("hygiene-member@example.test", id="like-the-user-id"),
]


def _password_unchanged(user: User) -> bool:
    user.refresh_from_db()
    return not user.has_usable_password()


@pytest.mark.parametrize("password", WEAK)
def test_weak_password_on_litellm_user_update_is_a_400_naming_password(master, world, password):
    response = client_for(master).post("/user/update", {"user_id": world.member.user_id, "password": password},
                                       format="json")

    assert refusal(response) == (400, "password")
    assert _password_unchanged(world.member)


@pytest.mark.parametrize("password", WEAK)
def test_weak_password_on_rest_user_update_is_a_400_naming_password(master, world, password):
    response = client_for(master).patch(f"/api/v1/users/{world.member.user_id}/", {"password": password},
                                        format="json")

    assert refusal(response) == (400, "password")
    assert _password_unchanged(world.member)


def test_weak_password_on_rest_user_create_is_a_400_and_creates_nobody(master, world):
    response = client_for(master).post("/api/v1/users/", {"user_id": "new@example.test", "password": "password"},
                                       format="json")

    assert refusal(response) == (400, "password")
    assert not User.objects.filter(user_id="new@example.test").exists()


def test_strong_password_on_litellm_user_update_is_accepted(master, world):
    response = client_for(master).post("/user/update", {"user_id": world.member.user_id, "password": PASSWORD},
                                       format="json")

    assert response.status_code == 200
    world.member.refresh_from_db()
    assert world.member.check_password(PASSWORD)


def test_weak_password_in_the_admin_user_form_is_refused(world):
    client = Client()
    client.force_login(AdminFactory())
    url = reverse("admin:orgs_user_change", args=[world.member.pk])
    data = form_data(client.get(url).content.decode(), "user_form")
    data.update({"new_password1": "password", "new_password2": "password"})

    response = client.post(url, data)

    assert response.status_code == 200 and "too common" in response.content.decode()
    assert _password_unchanged(world.member)


def test_changepassword_command_refuses_a_weak_password(world, monkeypatch):
    from django.core.management import CommandError, call_command

    answers = iter(["password", "password"] * 3)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(CommandError):
        call_command("changepassword", world.member.user_id, stdout=io.StringIO(), stderr=io.StringIO())
    assert _password_unchanged(world.member)


# --- CSV export ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias",
    ['=HYPERLINK("http://evil.test","click")', "+1+2", "-2+3", "@SUM(A1)"],
)
def test_csv_export_writes_formula_like_cells_as_text(world, alias):
    key = KeyFactory(user=world.member, key_alias=alias)
    client = Client()
    client.force_login(AdminFactory())

    response = client.post(reverse("admin:keys_virtualkey_changelist"), {
        "action": "export_csv", "index": "0", helpers.ACTION_CHECKBOX_NAME: [str(key.pk)]})

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["key_alias"] for row in rows] == ["'" + alias]


@pytest.mark.parametrize(
    ("value", "written"),
    [("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("sk-...abcd", "sk-...abcd"), (-1.5, -1.5), ("", "")],
)
def test_csv_cell_escapes_every_formula_start_and_nothing_else(value, written):
    assert csv_cell(value) == written


def test_csv_export_keeps_plain_cells_and_numbers(world):
    client = Client()
    client.force_login(AdminFactory())

    response = client.post(reverse("admin:keys_virtualkey_changelist"), {
        "action": "export_csv", "index": "0", helpers.ACTION_CHECKBOX_NAME: [str(world.key.pk)]})

    row = next(csv.DictReader(io.StringIO(response.content.decode())))
    assert row["key_alias"] == "hygiene-key" and row["spend"] == "0.0" and row["key_name"].startswith("sk-...")



# --- the admin's JSON fields ---------------------------------------------------------------------


@pytest.mark.parametrize("depth", [pytest.param(3000, id="3000-deep"), pytest.param(40, id="just-too-deep")])
def test_admin_key_form_with_deeply_nested_metadata_shows_a_form_error(world, depth):
    client = Client()
    client.force_login(AdminFactory())
    url = reverse("admin:keys_virtualkey_change", args=[world.key.pk])
    data = form_data(client.get(url).content.decode(), "virtualkey_form")
    data["metadata"] = "[" * depth + "]" * depth

    response = client.post(url, data)

    assert response.status_code == 200 and "Nested deeper than 32 levels." in response.content.decode()
    world.key.refresh_from_db()
    assert world.key.metadata == {}
