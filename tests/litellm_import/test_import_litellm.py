"""manage.py import_litellm against LiteLLM's real schema (its Prisma migrations from litellm-proxy-extras),
seeded as LiteLLM writes its rows: keys keep working, teams, members and budgets match, a re-run changes
nothing, a dry run writes nothing, and what cannot be mapped is reported and skipped."""
from __future__ import annotations

import datetime
import io
import json
import uuid

import pytest
from django.core.management import CommandError, call_command

from accessgroups.litellm_import import masked_url
from accessgroups.litellm_import.mapping import key_row_id
from accessgroups.models import AccessGroup, CatalogModel, KeyAccessGroup, TeamAccessGroup
from accessgroups.services import sync_all
from keys import crypto
from keys import services as key_services
from keys.models import VirtualKey
from orgs.models import AuditEntry, Budget, Organization, OrganizationMembership, Team, TeamMembership, User
from tests.gateway.conftest import CHECK_URL, bearer

from .conftest import (
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    CLAUDE,
    CLAUDE_GROUP,
    CLAUDE_TEAM,
    GPT,
    GPT_MINI,
    ML_TEAM,
    ORG,
    SK_ALICE,
    SK_BLOCKED,
    SK_BOB,
    SK_LLM_API,
    SK_ORPHAN,
    SK_PERSONAL,
    SK_SERVICE,
    database_dump,
    seed,
)
from .litellm_db import sha256_token

# Not postgres_only: the accessctl side is the pass's database (SQLite, then PostgreSQL); only the LiteLLM
# source needs PostgreSQL, which `make test` starts for both passes.
pytestmark = [pytest.mark.django_db, pytest.mark.litellm_source]


def check(client, secret: str, model: str):
    return client.post(CHECK_URL, {"model": model}, content_type="application/json", **bearer(secret))


# --- keys keep working -----------------------------------------------------------------------------

def test_litellm_token_is_the_hash_accessctl_stores_for_the_same_secret():
    assert crypto.hash_secret(SK_ALICE) == sha256_token(SK_ALICE)
    assert crypto.token_for(SK_ALICE) == sha256_token(SK_ALICE)


def test_import_key_passes_the_check_for_its_model(seeded, import_litellm, client):
    import_litellm(seeded.url)

    response = check(client, SK_ALICE, GPT)

    assert response.status_code == 200
    assert response.json()["key"] == {
        "token": sha256_token(SK_ALICE), "key_alias": "alice-ml", "user_id": ALICE, "team_id": ML_TEAM,
        "organization_id": ORG,
    }
    assert response.json()["limits"]["tpm_limit"] == 1000


def test_import_key_is_refused_another_model(seeded, import_litellm, client):
    import_litellm(seeded.url)

    response = check(client, SK_ALICE, CLAUDE)

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "key_model_access_denied"


def test_import_key_of_a_team_on_an_access_group_reaches_the_group_models_only(seeded, import_litellm, client):
    import_litellm(seeded.url)

    assert check(client, SK_BOB, CLAUDE).status_code == 200
    assert check(client, SK_BOB, GPT).json()["error"]["type"] == "team_model_access_denied"


def test_import_service_account_and_personal_keys_pass_the_check(seeded, import_litellm, client):
    import_litellm(seeded.url)

    assert check(client, SK_SERVICE, GPT_MINI).status_code == 200
    assert check(client, SK_PERSONAL, GPT_MINI).status_code == 200
    assert check(client, SK_PERSONAL, GPT).status_code == 403


def test_import_blocked_key_stays_blocked(seeded, import_litellm, client):
    import_litellm(seeded.url)

    assert check(client, SK_BLOCKED, GPT).json()["error"]["type"] == "key_blocked"


def test_import_key_refused_before_the_import_passes_right_after_it(seeded, import_litellm, client):
    assert check(client, SK_ALICE, GPT).status_code == 401  # unknown: remembered as missing by the cache

    import_litellm(seeded.url)

    assert check(client, SK_ALICE, GPT).status_code == 200


def test_import_keeps_key_fields(seeded, import_litellm):
    import_litellm(seeded.url)

    key = VirtualKey.objects.get(token=sha256_token(SK_ALICE))
    assert (key.key_name, key.key_alias, key.user.user_id, key.team_id, key.organization_id) == (
        "sk-...0001", "alice-ml", ALICE, ML_TEAM, ORG)
    assert (key.models, key.spend, key.max_budget, key.rpm_limit, key.blocked) == ([GPT], 1.25, 10.0, 10, False)
    assert key.created_at == datetime.datetime(2026, 5, 4, 12, tzinfo=datetime.UTC)
    assert key.id == uuid.UUID(key_row_id(sha256_token(SK_ALICE)))


# --- teams, members, budgets ------------------------------------------------------------------------

def test_import_teams_keep_ids_models_permissions_budget_and_spend(seeded, import_litellm):
    import_litellm(seeded.url)

    team = Team.objects.get(team_id=ML_TEAM)
    assert (team.team_alias, team.organization_id, team.models) == ("ML Research", ORG, [GPT, GPT_MINI])
    # LiteLLM's path-parameter spelling of regenerate is the same permission here.
    assert team.member_permissions == ["/key/generate", "/key/regenerate", "/key/list"]
    assert (team.max_budget, team.spend, team.legacy_admins) == (60.0, 7.25, [ALICE])
    assert Team.objects.get(team_id=CLAUDE_TEAM).access_group_ids == [CLAUDE_GROUP]


def test_import_team_members_keep_their_roles(seeded, import_litellm):
    import_litellm(seeded.url)

    members = {(m.team_id, m.user.user_id): m.role for m in TeamMembership.objects.select_related("user")}
    # CLAUDE_TEAM names bob by e-mail only, as LiteLLM allows.
    assert members == {(ML_TEAM, ALICE): "admin", (ML_TEAM, BOB): "user", (CLAUDE_TEAM, BOB): "admin"}


def test_import_team_member_spend_and_budget_in_the_team(seeded, import_litellm):
    import_litellm(seeded.url)

    alice = TeamMembership.objects.get(team_id=ML_TEAM, user__user_id=ALICE)
    bob = TeamMembership.objects.get(team_id=ML_TEAM, user__user_id=BOB)
    assert (alice.spend, alice.budget.max_budget, str(alice.budget_id)) == (4.0, 20.0, seeded.alice_team_budget)
    assert (bob.spend, bob.budget) == (1.5, None)


def test_import_organization_keeps_its_budget_models_and_spend(seeded, import_litellm):
    import_litellm(seeded.url)

    org = Organization.objects.select_related("budget").get(organization_id=ORG)
    assert (org.organization_alias, org.models, org.spend) == ("Acme Research", [GPT, GPT_MINI, CLAUDE], 12.5)
    budget = org.budget
    assert str(budget.budget_id) == seeded.org_budget
    assert (budget.max_budget, budget.soft_budget, budget.tpm_limit, budget.rpm_limit, budget.budget_duration) == (
        100.0, 80.0, 10_000, 100, "30d")


def test_import_organization_members_keep_roles_spend_and_budget(seeded, import_litellm):
    import_litellm(seeded.url)

    alice = OrganizationMembership.objects.get(organization_id=ORG, user__user_id=ALICE)
    bob = OrganizationMembership.objects.get(organization_id=ORG, user__user_id=BOB)
    assert (alice.user_role, alice.spend, alice.budget.max_budget) == ("org_admin", 2.0, 40.0)
    assert (bob.user_role, bob.budget) == ("internal_user", None)


def test_import_users_keep_roles_models_budgets_and_spend(seeded, import_litellm):
    import_litellm(seeded.url)

    users = {u.user_id: u for u in User.objects.all()}
    assert set(users) == {ADMIN, ALICE, BOB, CAROL}
    assert users[ADMIN].user_role == "proxy_admin"
    assert (users[ALICE].user_email, users[ALICE].max_budget, users[ALICE].spend) == (ALICE, 50.0, 3.0)
    assert (users[CAROL].user_role, users[CAROL].models) == ("internal_user_viewer", [GPT_MINI])
    # LiteLLM's password hash cannot become Django's: nobody can log in with it.
    assert not users[ADMIN].has_usable_password()


def test_import_access_groups_and_assignments_are_in_sync(seeded, import_litellm):
    import_litellm(seeded.url)

    group = AccessGroup.objects.get(access_group_id=CLAUDE_GROUP)
    assert (group.access_group_name, group.access_model_names, group.organization_id) == (
        "claude-models", [CLAUDE], None)
    assert TeamAccessGroup.objects.filter(team_id=CLAUDE_TEAM, access_group=group).exists()
    assert (group.assigned_team_count, group.assigned_key_count) == (1, 0)
    assert sync_all(repair=False) == {"teams": [], "keys": [], "groups": []}


def test_import_key_access_groups_become_assignments(litellm_db, import_litellm, client):
    seed(litellm_db)
    secret = "sk-key-on-an-access-group-0000000000008"
    litellm_db.key(secret, user_id=ALICE, access_group_ids=[CLAUDE_GROUP])

    import_litellm(litellm_db.url)

    key = VirtualKey.objects.get(token=sha256_token(secret))
    assert key.access_group_ids == [CLAUDE_GROUP]
    assert KeyAccessGroup.objects.filter(key=key, access_group_id=CLAUDE_GROUP).exists()
    assert AccessGroup.objects.get(pk=CLAUDE_GROUP).assigned_key_count == 1
    assert check(client, secret, CLAUDE).status_code == 200
    assert check(client, secret, GPT).status_code == 403


def test_import_model_table_fills_the_catalog_once_per_name(seeded, import_json):
    report = import_json(seeded.url)

    assert sorted(CatalogModel.objects.values_list("model_name", "provider", "active")) == [
        (CLAUDE, "anthropic", True), (GPT, "openai", True), (GPT_MINI, "openai", True)]
    assert report["by_table"]["LiteLLM_ProxyModelTable"]["read"] == 4


def test_import_team_info_route_shows_the_members_as_litellm_did(seeded, import_litellm, client, settings):
    settings.ACCESSCTL_MASTER_KEY = "sk-master-key-for-import-tests-01"
    import_litellm(seeded.url)

    response = client.get(f"/team/info?team_id={ML_TEAM}", **bearer("sk-master-key-for-import-tests-01"))

    assert response.status_code == 200
    members = {(m["user_id"], m["role"]) for m in response.json()["team_info"]["members_with_roles"]}
    assert members == {(ALICE, "admin"), (BOB, "user")}


# --- idempotent, dry run, audit ------------------------------------------------------------------------

def test_import_second_run_changes_nothing(seeded, import_litellm, import_json):
    import_litellm(seeded.url)
    before = database_dump()

    report = import_json(seeded.url)

    assert database_dump() == before
    assert all(t["created"] == t["updated"] == 0 for t in report["tables"])
    assert report["by_table"]["LiteLLM_VerificationToken"]["unchanged"] == 5


def test_import_dry_run_writes_nothing(seeded, import_json):
    before = database_dump()

    report = import_json(seeded.url, "--dry-run")

    assert database_dump() == before
    assert report["dry_run"] is True


def test_import_dry_run_reports_what_the_run_then_does(seeded, import_json):
    dry = import_json(seeded.url, "--dry-run")
    real = import_json(seeded.url)

    counts = ("read", "created", "updated", "unchanged", "kept", "skipped")
    assert [[t[c] for c in counts] for t in dry["tables"]] == [[t[c] for c in counts] for t in real["tables"]]


def test_import_dry_run_says_so_and_prints_the_counts(seeded, import_litellm):
    out = import_litellm(seeded.url, "--dry-run")

    assert out.startswith("Dry run: nothing was written.")
    assert "LiteLLM_VerificationToken" in out


def test_import_audits_each_table_batch_with_its_counts(seeded, import_litellm):
    import_litellm(seeded.url, "--batch-size", "2")

    entries = AuditEntry.objects.filter(action="litellm_import")
    keys = [e.after for e in entries if e.after["source_table"] == "LiteLLM_VerificationToken"]
    assert sorted((e["batch"], e["created"]) for e in keys) == [(1, 2), (2, 1), (3, 1), (4, 1)]
    assert len({e.object_id for e in entries}) == 1  # one run
    assert {e.after["source"] for e in entries} == {seeded.url}


def test_import_source_password_never_reaches_a_message():
    assert masked_url("postgres://litellm:s3cret@db:5432/litellm") == "postgres://litellm:***@db:5432/litellm"


def test_import_second_run_writes_no_audit_entry(seeded, import_litellm):
    import_litellm(seeded.url)
    count = AuditEntry.objects.count()

    import_litellm(seeded.url)

    assert AuditEntry.objects.count() == count


# --- what changed since ------------------------------------------------------------------------------

def test_import_rerun_brings_litellm_changes_over(litellm_db, import_litellm, client):
    seed(litellm_db)
    import_litellm(litellm_db.url)
    litellm_db.execute('UPDATE "LiteLLM_VerificationToken" SET models = %s, spend = 2.5 WHERE token = %s',
                       ([GPT, CLAUDE], sha256_token(SK_ALICE)))
    litellm_db.execute('UPDATE "LiteLLM_TeamTable" SET models = %s WHERE team_id = %s', ([GPT, CLAUDE], ML_TEAM))

    import_litellm(litellm_db.url)

    key = VirtualKey.objects.get(token=sha256_token(SK_ALICE))
    assert (key.models, key.spend) == ([GPT, CLAUDE], 2.5)
    assert check(client, SK_ALICE, CLAUDE).status_code == 200


def test_import_rerun_never_recreates_a_key_deleted_in_accessctl(seeded, import_litellm, import_json, client):
    import_litellm(seeded.url)
    key_services.key_delete(actor=None, key=VirtualKey.objects.get(token=sha256_token(SK_ALICE)))

    report = import_json(seeded.url)

    assert not VirtualKey.objects.filter(token=sha256_token(SK_ALICE)).exists()
    reasons = report["by_table"]["LiteLLM_VerificationToken"]["skip_reasons"]
    assert [r["reason"] for r in reasons if "deleted in accessctl" in r["reason"]]
    assert check(client, SK_ALICE, GPT).status_code == 401


def test_import_rerun_leaves_a_key_blocked_in_accessctl_blocked(seeded, import_litellm, import_json, client):
    import_litellm(seeded.url)
    key_services.key_block(actor=None, key=VirtualKey.objects.get(token=sha256_token(SK_ALICE)))

    report = import_json(seeded.url)

    assert VirtualKey.objects.get(token=sha256_token(SK_ALICE)).blocked
    assert report["by_table"]["LiteLLM_VerificationToken"]["kept"] == 1
    assert check(client, SK_ALICE, GPT).json()["error"]["type"] == "key_blocked"


def test_import_rerun_never_restores_the_secret_of_a_key_rotated_in_accessctl(seeded, import_litellm, client):
    import_litellm(seeded.url)
    key_services.key_regenerate(actor=None, key=VirtualKey.objects.get(token=sha256_token(SK_ALICE)))

    import_litellm(seeded.url)

    assert check(client, SK_ALICE, GPT).status_code == 401
    assert VirtualKey.objects.filter(user__user_id=ALICE, team_id=ML_TEAM).count() == 1


def test_import_rerun_never_re_adds_a_member_removed_in_accessctl(seeded, import_litellm):
    from orgs import services as org_services

    import_litellm(seeded.url)
    org_services.team_member_delete(actor=None, membership=TeamMembership.objects.get(team_id=ML_TEAM, user__user_id=BOB))

    import_litellm(seeded.url)

    assert not TeamMembership.objects.filter(team_id=ML_TEAM, user__user_id=BOB).exists()


def test_import_leaves_an_accessctl_team_with_the_same_id_alone(seeded, import_json):
    from orgs import services as org_services

    org_services.team_create(actor=None, team_id=ML_TEAM, team_alias="Ours")

    report = import_json(seeded.url)

    assert Team.objects.get(team_id=ML_TEAM).team_alias == "Ours"
    teams = report["by_table"]["LiteLLM_TeamTable"]
    assert teams["skipped"] == 1 and "did not create" in teams["skip_reasons"][0]["reason"]


# --- what cannot be mapped ---------------------------------------------------------------------------

def test_import_key_of_a_missing_team_is_reported_and_skipped(seeded, import_litellm):
    out = import_litellm(seeded.url)

    assert not VirtualKey.objects.filter(token=sha256_token(SK_ORPHAN)).exists()
    assert "LiteLLM_VerificationToken: 1 × its team is not in the source (or was not imported)" in out
    assert f"{sha256_token(SK_ORPHAN)[:12]}… (sk-...0006): team_id=ghost-team" in out
    assert SK_ORPHAN not in out


def test_import_route_limited_key_is_refused_not_widened(seeded, import_json):
    report = import_json(seeded.url)

    assert not VirtualKey.objects.filter(token=sha256_token(SK_LLM_API)).exists()
    reasons = [r["reason"] for r in report["by_table"]["LiteLLM_VerificationToken"]["skip_reasons"]]
    assert any(r.startswith("key_type / allowed_routes") for r in reasons)


def test_import_key_with_an_object_permission_is_refused_not_widened(litellm_db, import_json):
    seed(litellm_db)
    litellm_db.insert("LiteLLM_ObjectPermissionTable", object_permission_id="op-1", mcp_servers=["github"])
    secret = "sk-key-limited-to-one-mcp-server-0000009"
    litellm_db.key(secret, user_id=ALICE, object_permission_id="op-1")

    report = import_json(litellm_db.url)

    assert not VirtualKey.objects.filter(token=sha256_token(secret)).exists()
    skipped = report["by_table"]["LiteLLM_VerificationToken"]["skip_reasons"]
    assert any("object permission" in r["reason"] and "mcp_servers" in r["examples"][0] for r in skipped)


def test_import_unused_budget_is_reported(seeded, import_json):
    report = import_json(seeded.url)

    budgets = report["by_table"]["LiteLLM_BudgetTable"]
    assert budgets["skipped"] == 1 and budgets["skip_reasons"][0]["examples"] == [seeded.unused_budget]
    assert not Budget.objects.filter(budget_id=seeded.unused_budget).exists()


def test_import_member_of_a_missing_user_is_skipped(litellm_db, import_json):
    seed(litellm_db)
    litellm_db.execute(
        'UPDATE "LiteLLM_TeamTable" SET members_with_roles = members_with_roles || %s::jsonb WHERE team_id = %s',
        (json.dumps([{"role": "user", "user_id": "ghost@acme.test"}]), ML_TEAM),
    )

    report = import_json(litellm_db.url)

    members = report["by_table"]["LiteLLM_TeamMembership"]
    assert members["created"] == 3 and members["skipped"] == 1
    assert "ghost@acme.test" in members["skip_reasons"][0]["examples"][0]


def test_import_strict_exits_non_zero_when_rows_were_skipped(seeded):
    with pytest.raises(CommandError) as raised:
        call_command("import_litellm", "--source", seeded.url, "--no-progress", "--strict", stdout=io.StringIO())

    assert raised.value.returncode == 1
    assert "3 rows were skipped" in str(raised.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("mysql://litellm@localhost/litellm", "must be a postgres:// URL", id="not-postgres"),
        pytest.param("postgres://postgres:secret@127.0.0.1:1/litellm", "Cannot connect", id="unreachable"),
    ],
)
def test_import_bad_source_is_a_clear_error(source, message):
    with pytest.raises(CommandError) as raised:
        call_command("import_litellm", "--source", source, "--no-progress", stdout=io.StringIO())

    assert message in str(raised.value)
    assert "secret" not in str(raised.value)


def test_import_database_that_is_not_litellm_is_refused_clearly(litellm_template):
    from .litellm_db import create_database, database_url, drop_database

    name = create_database()
    try:
        with pytest.raises(CommandError) as raised:
            call_command("import_litellm", "--source", database_url(name), "--no-progress", stdout=io.StringIO())
    finally:
        drop_database(name)

    assert "is not a LiteLLM database" in str(raised.value)


def test_import_without_a_source_says_how_to_name_one(monkeypatch):
    monkeypatch.delenv("LITELLM_DATABASE_URL", raising=False)

    with pytest.raises(CommandError, match="--source"):
        call_command("import_litellm", stdout=io.StringIO())


def test_import_reads_a_prisma_url_with_its_schema_parameter(seeded, import_json):
    report = import_json(seeded.url + "?schema=public&connection_limit=5")

    assert report["by_table"]["LiteLLM_VerificationToken"]["created"] == 5


# --- ids and settings as LiteLLM's users write them --------------------------------------------------

def test_import_free_form_ids_with_any_characters_survive_a_re_run(litellm_db, import_json):
    litellm_db.user("zoë@acme.test")
    litellm_db.team("équipe/ü.1", "Équipe", members_with_roles=[{"role": "admin", "user_id": "zoë@acme.test"}])
    litellm_db.team_membership("équipe/ü.1", "zoë@acme.test", spend=1.0)
    import_json(litellm_db.url)

    report = import_json(litellm_db.url)

    assert TeamMembership.objects.get(team_id="équipe/ü.1", user__user_id="zoë@acme.test").role == "admin"
    assert report["by_table"]["LiteLLM_TeamMembership"]["unchanged"] == 1


def test_import_settings_accessctl_does_not_have_are_noted(litellm_db, import_json):
    seed(litellm_db)
    litellm_db.key("sk-key-with-model-aliases-00000000000010", user_id=ALICE, aliases={"gpt-4": GPT}, tpd_limit=5)

    report = import_json(litellm_db.url)

    notes = {n["note"] for n in report["by_table"]["LiteLLM_VerificationToken"]["notes"]}
    assert {"aliases not kept (accessctl has no such setting)", "tpd_limit not kept (accessctl has no such setting)"} <= notes
    assert VirtualKey.objects.filter(token=sha256_token("sk-key-with-model-aliases-00000000000010")).exists()


def test_import_key_alias_taken_in_its_organization_is_dropped_not_the_key(litellm_db, import_json, client):
    seed(litellm_db)
    secret = "sk-second-key-named-alice-ml-000000000011"
    litellm_db.key(secret, user_id=BOB, team_id=ML_TEAM, organization_id=ORG, key_alias="alice-ml")

    report = import_json(litellm_db.url)

    assert VirtualKey.objects.filter(key_alias="alice-ml").count() == 1
    assert check(client, secret, GPT).status_code == 200
    notes = {n["note"] for n in report["by_table"]["LiteLLM_VerificationToken"]["notes"]}
    assert "key_alias already used by another key of its tenant: imported without alias" in notes
    assert import_json(litellm_db.url)["by_table"]["LiteLLM_VerificationToken"]["unchanged"] == 6


def test_import_access_group_whose_name_differs_only_in_case_is_refused(litellm_db, import_json):
    seed(litellm_db)
    litellm_db.access_group("ag-claude-0002", "Claude-Models", models=[GPT])

    report = import_json(litellm_db.url)

    assert not AccessGroup.objects.filter(pk="ag-claude-0002").exists()
    assert report["by_table"]["LiteLLM_AccessGroupTable"]["skipped"] == 1


def test_import_model_already_in_the_catalog_is_left_as_it_is(seeded, import_json):
    CatalogModel.objects.create(model_name=GPT, provider="azure", description="ours")

    report = import_json(seeded.url)

    assert CatalogModel.objects.get(model_name=GPT).provider == "azure"
    assert report["by_table"]["LiteLLM_ProxyModelTable"]["kept"] == 1


def test_import_command_prints_a_progress_bar_on_a_terminal(seeded, monkeypatch, capsys):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)

    call_command("import_litellm", "--source", seeded.url, stdout=io.StringIO())

    assert "LiteLLM_VerificationToken" in capsys.readouterr().err
