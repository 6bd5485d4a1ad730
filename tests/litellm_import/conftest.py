"""Fixtures of the import tests: LiteLLM's real schema in a scratch PostgreSQL database, seeded as LiteLLM
writes its rows. The accessctl side is the suite's database (SQLite or PostgreSQL), so these tests run in
both passes; the source always needs the machine's PostgreSQL."""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command

from .litellm_db import LiteLLMRows, litellm_schema_template, scratch_litellm_database

GPT = "openai/gpt-4o"
GPT_MINI = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-3-5-sonnet"
ORG = "acme-research"
ML_TEAM = "ml-research"  # a free-form id, as LiteLLM's users choose them
CLAUDE_TEAM = "claude.team@acme"
CLAUDE_GROUP = "ag-claude-0001"
ALICE, BOB, CAROL, ADMIN = "alice@acme.test", "bob@acme.test", "carol", "default_user_id"
SK_ALICE = "sk-alice-ml-research-key-000000000000001"
SK_BOB = "sk-bob-claude-team-key-0000000000000002"
SK_SERVICE = "sk-ml-research-service-account-000000003"
SK_PERSONAL = "sk-alice-personal-key-00000000000000004"
SK_BLOCKED = "sk-blocked-key-000000000000000000000005"
SK_ORPHAN = "sk-orphan-key-of-a-ghost-team-00000006"  # its team does not exist: unmappable
SK_LLM_API = "sk-llm-api-only-key-0000000000000000007"  # limited to LLM routes: unmappable


@dataclass
class Seeded:
    url: str
    rows: LiteLLMRows
    org_budget: str
    alice_org_budget: str
    alice_team_budget: str
    unused_budget: str


@pytest.fixture(scope="session")
def litellm_template() -> Iterator[str]:
    """LiteLLM's migrated schema, built once per session (221 migrations, ~2 s) and copied per test."""
    with litellm_schema_template() as name:
        yield name


@pytest.fixture
def litellm_db(litellm_template: str) -> Iterator[LiteLLMRows]:
    with scratch_litellm_database(litellm_template) as url:
        rows = LiteLLMRows(url)
        try:
            yield rows
        finally:
            rows.close()


def seed(rows: LiteLLMRows) -> Seeded:
    """One organization with a budget; two teams (one on an access group) with members, roles and member
    permissions; users; memberships with budgets; keys of every kind; spend; the model table."""
    org_budget = rows.budget(max_budget=100.0, soft_budget=80.0, tpm_limit=10_000, rpm_limit=100, budget_duration="30d")
    alice_org_budget = rows.budget(max_budget=40.0)
    alice_team_budget = rows.budget(max_budget=20.0)
    unused_budget = rows.budget(max_budget=5.0)  # an end user's: nothing accessctl keeps uses it
    rows.organization(ORG, "Acme Research", budget_id=org_budget, models=[GPT, GPT_MINI, CLAUDE], spend=12.5)
    rows.user(ADMIN, role="proxy_admin", password="5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8")
    rows.user(ALICE, email=ALICE, max_budget=50.0, spend=3.0, teams=[ML_TEAM])
    rows.user(BOB, email=BOB, teams=[ML_TEAM, CLAUDE_TEAM])
    rows.user(CAROL, role="internal_user_viewer", models=[GPT_MINI])
    rows.organization_membership(ORG, ALICE, role="org_admin", spend=2.0, budget_id=alice_org_budget)
    rows.organization_membership(ORG, BOB)
    rows.access_group(CLAUDE_GROUP, "claude-models", models=[CLAUDE])
    rows.team(ML_TEAM, "ML Research", organization_id=ORG, models=[GPT, GPT_MINI], max_budget=60.0, spend=7.25,
              members_with_roles=[{"role": "admin", "user_id": ALICE, "user_email": ALICE},
                                  {"role": "user", "user_id": BOB, "user_email": BOB}],
              team_member_permissions=["/key/generate", "/key/{key_id}/regenerate", "/key/list"], admins=[ALICE])
    rows.team(CLAUDE_TEAM, "Claude", organization_id=ORG, access_group_ids=[CLAUDE_GROUP],
              members_with_roles=[{"role": "admin", "user_id": None, "user_email": BOB}])
    rows.team_membership(ML_TEAM, ALICE, spend=4.0, budget_id=alice_team_budget)
    rows.team_membership(ML_TEAM, BOB, spend=1.5)
    rows.key(SK_ALICE, user_id=ALICE, team_id=ML_TEAM, organization_id=ORG, models=[GPT], key_alias="alice-ml",
             spend=1.25, max_budget=10.0, tpm_limit=1000, rpm_limit=10)
    rows.key(SK_BOB, user_id=BOB, team_id=CLAUDE_TEAM, organization_id=ORG)
    rows.key(SK_SERVICE, team_id=ML_TEAM, organization_id=ORG, key_alias="ml-service")
    rows.key(SK_PERSONAL, user_id=ALICE, models=[GPT_MINI], key_alias="alice-personal")
    rows.key(SK_BLOCKED, user_id=BOB, team_id=ML_TEAM, blocked=True)
    rows.key(SK_ORPHAN, user_id=BOB, team_id="ghost-team")
    rows.key(SK_LLM_API, user_id=ALICE, team_id=ML_TEAM, key_type="llm_api", allowed_routes=["llm_api_routes"])
    for name in (GPT, GPT, GPT_MINI, CLAUDE):  # gpt-4o served by two deployments
        rows.proxy_model(name)
    return Seeded(rows.url, rows, org_budget, alice_org_budget, alice_team_budget, unused_budget)


@pytest.fixture(scope="session")
def seeded(litellm_template: str) -> Iterator[Seeded]:
    """The seeded source, shared: the import only reads it. A test that changes the source seeds its own
    (`seed(litellm_db)`)."""
    with scratch_litellm_database(litellm_template) as url:
        rows = LiteLLMRows(url)
        try:
            yield seed(rows)
        finally:
            rows.close()


@pytest.fixture
def import_litellm(django_capture_on_commit_callbacks) -> Callable[..., str]:
    """Run `manage.py import_litellm` as an operator would; its on-commit work (cache invalidation) runs."""

    def _run(url: str, *args: str) -> str:
        out = io.StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("import_litellm", "--source", url, "--no-progress", *args, stdout=out)
        return out.getvalue()

    return _run


@pytest.fixture
def import_json(import_litellm) -> Callable[..., dict[str, Any]]:
    """The import's JSON report, with each table's report by table name."""

    def _run(url: str, *args: str) -> dict[str, Any]:
        report = json.loads(import_litellm(url, "--json", *args))
        report["by_table"] = {t["table"]: t for t in report["tables"]}
        return report

    return _run


def database_dump() -> dict[str, list[dict[str, Any]]]:
    """Every row of every accessctl table: equal before and after means nothing was written."""
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for app in ("orgs", "keys", "accessgroups")
        for model in apps.get_app_config(app).get_models()
    }
