"""What a key may reach (SPEC §5), as one table: data built through the services, the snapshot loaded by
`keys.cache.load_snapshot`, the answer from `keys.authz.authorize`; and `allowed_names` (the `/v1/models`
listing) agrees with `authorize` for every row."""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

import pytest
from django.utils import timezone

from accessgroups.models import AccessGroup, Agent, CatalogModel, MCPServer
from keys import services as key_services
from keys.authz import RESOURCES, KeySnapshot, allowed_names, authorize
from keys.cache import load_snapshot
from keys.models import VirtualKey
from orgs import services as org_services
from orgs.models import Organization, Team
from tests.factories import (
    AccessGroupFactory,
    AgentFactory,
    CatalogModelFactory,
    KeyFactory,
    MCPServerFactory,
    OrganizationFactory,
    TeamFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

GPT4O = "openai/gpt-4o"
MINI = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-3-5-sonnet"
GEMINI = "google/gemini-1.5-pro"
MISTRAL = "mistral/mistral-large"
LLAMA = "meta-llama/llama-3-70b"
RETIRED = "openai/gpt-3.5-turbo"  # in the catalog, inactive
OFF_CATALOG = "acme/private-model"
GITHUB, FILES = "github", "filesystem"
RESEARCH, TRIAGE = "research-agent", "triage-agent"

KEY_MODEL, TEAM_MODEL, ORG_MODEL, USER_MODEL = (
    "key_model_access_denied",
    "team_model_access_denied",
    "org_model_access_denied",
    "user_model_access_denied",
)
PARAM = {"models": "model", "mcp_servers": "mcp_server_id", "agents": "agent_id"}


@pytest.fixture(autouse=True)
def catalog() -> None:
    for name in (GPT4O, MINI, CLAUDE, GEMINI, MISTRAL, LLAMA):
        CatalogModelFactory(model_name=name, provider=name.split("/")[0])
    CatalogModelFactory(model_name=RETIRED, provider="openai", active=False)
    for server in (GITHUB, FILES):
        MCPServerFactory(server_id=server)
    for agent in (RESEARCH, TRIAGE):
        AgentFactory(agent_id=agent)


# --- builders -------------------------------------------------------------------------------------------


def group(models=(), mcp=(), agents=(), name: str | None = None) -> AccessGroup:
    extra = {"access_group_name": name} if name else {}
    return AccessGroupFactory(
        access_model_names=list(models), access_mcp_server_ids=list(mcp), access_agent_ids=list(agents), **extra
    )


def org(models=(), **budget) -> Organization:
    return OrganizationFactory(models=list(models), **budget)


def team(models=(), groups=(), organization: Organization | None = None, **extra) -> Team:
    return TeamFactory(
        models=list(models), access_group_ids=[g.pk for g in groups], organization=organization, **extra
    )


def key(models=(), groups=(), team_: Team | None = None, **extra) -> VirtualKey:
    extra.setdefault("user", UserFactory())
    return KeyFactory(models=list(models), access_group_ids=[g.pk for g in groups], team=team_, **extra)


def narrowed_org_team(team_models, org_models_after) -> Team:
    """A team created inside its organization's models, after which the organization narrowed its models."""
    organization = org()
    result = team(models=team_models, organization=organization)
    org_services.organization_update(actor=None, organization=organization, data={"models": list(org_models_after)})
    return result


def expired_key() -> VirtualKey:
    k = key()
    return key_services.key_update(
        actor=None, key=k, data={"expires": timezone.now() - datetime.timedelta(minutes=1)}
    )


def deleted_org_key() -> VirtualKey:
    organization = org()
    k = key(team_=team(organization=organization))
    org_services.organization_delete(actor=None, organization=organization)
    return k


def inactive_user_key() -> VirtualKey:
    user = UserFactory()
    k = key(user=user)
    org_services.user_update(actor=None, user=user, data={"is_active": False})
    return k


def org_over_budget_key() -> VirtualKey:
    organization = org(max_budget=10.0)
    org_services.organization_update(actor=None, organization=organization, data={"spend": 10.0})
    return key(team_=team(organization=organization))


Case = tuple[Callable[[], VirtualKey], dict[str, str], str | None]


def case(build: Callable[[], VirtualKey], expected: str | None, case_id: str, **ask: str):
    return pytest.param(build, ask, expected, id=case_id)


CASES = [
    # 1. The key's own models.
    case(lambda: key(models=[GPT4O]), None, "key-models-listed-allowed", model=GPT4O),
    case(lambda: key(models=[GPT4O]), KEY_MODEL, "key-models-unlisted-denied", model=CLAUDE),
    case(lambda: key(models=[group([CLAUDE]).access_group_name]), None, "key-models-group-name-expands",
         model=CLAUDE),
    case(lambda: key(models=[group([CLAUDE], name="Frontier").access_group_name.upper()]), None,
         "key-models-group-name-any-case", model=CLAUDE),
    case(lambda: key(models=[group([CLAUDE]).access_group_name]), KEY_MODEL, "key-models-group-name-only-its-models",
         model=GPT4O),
    case(lambda: key(models=[GPT4O], groups=[group([CLAUDE])]), KEY_MODEL, "key-models-win-over-key-groups",
         model=CLAUDE),
    # 2. The key's access groups.
    case(lambda: key(groups=[group([MINI]), group([GEMINI])]), None, "key-groups-union-allowed", model=GEMINI),
    case(lambda: key(groups=[group([MINI]), group([GEMINI])]), KEY_MODEL, "key-groups-outside-denied",
         model=CLAUDE),
    case(lambda: key(groups=[group([GPT4O])], team_=team(models=[GPT4O, CLAUDE])), KEY_MODEL,
         "key-groups-not-widened-to-team-23850", model=CLAUDE),
    case(lambda: key(groups=[group([GPT4O])], team_=team(models=[GPT4O, CLAUDE])), None,
         "key-groups-inside-team-23850", model=GPT4O),
    # 3. Team fallback: team models, else team groups, else the organization's models.
    case(lambda: key(team_=team(models=[GPT4O])), None, "team-models-fallback-allowed", model=GPT4O),
    case(lambda: key(team_=team(models=[GPT4O])), TEAM_MODEL, "team-models-fallback-denied", model=CLAUDE),
    case(lambda: key(team_=team(models=[group([CLAUDE]).access_group_name])), None, "team-models-group-name-expands",
         model=CLAUDE),
    case(lambda: key(team_=team(groups=[group([CLAUDE])])), None, "team-groups-fallback-allowed", model=CLAUDE),
    case(lambda: key(team_=team(groups=[group([CLAUDE])])), TEAM_MODEL, "team-groups-fallback-denied",
         model=GPT4O),
    case(lambda: key(team_=team(models=[GPT4O], groups=[group([CLAUDE])])), TEAM_MODEL,
         "team-models-win-over-team-groups", model=CLAUDE),
    case(lambda: key(team_=team(organization=org([GEMINI]))), None, "org-models-fallback-allowed", model=GEMINI),
    case(lambda: key(team_=team(organization=org([GEMINI]))), ORG_MODEL, "org-models-fallback-denied",
         model=GPT4O),
    case(lambda: key(team_=team()), None, "nothing-restricts-everything-allowed", model=OFF_CATALOG),
    # 4. A personal key: the owner's models, else everything.
    case(lambda: key(user=UserFactory(models=[MISTRAL])), None, "personal-key-owner-models-allowed",
         model=MISTRAL),
    case(lambda: key(user=UserFactory(models=[MISTRAL])), KEY_MODEL, "personal-key-owner-models-denied",
         model=GPT4O),
    case(lambda: key(user=UserFactory(models=[MISTRAL]), models=[GPT4O]), USER_MODEL,
         "personal-key-never-exceeds-owner", model=GPT4O),
    case(lambda: key(), None, "personal-key-unrestricted-owner-everything", model=OFF_CATALOG),
    # Intersections: a key never exceeds its team, a team never exceeds its organization.
    case(lambda: key(models=[GPT4O, CLAUDE], team_=team(models=[GPT4O])), TEAM_MODEL, "key-models-exceed-team",
         model=CLAUDE),
    case(lambda: key(groups=[group([CLAUDE])], team_=team(models=[GPT4O])), TEAM_MODEL, "key-groups-exceed-team",
         model=CLAUDE),
    case(lambda: key(models=[CLAUDE], team_=team(organization=org([GPT4O]))), ORG_MODEL, "key-models-exceed-org",
         model=CLAUDE),
    case(lambda: key(team_=narrowed_org_team([GPT4O, CLAUDE], [GPT4O])), ORG_MODEL, "team-models-exceed-org",
         model=CLAUDE),
    case(lambda: key(team_=narrowed_org_team([GPT4O, CLAUDE], [GPT4O])), None, "team-models-inside-org",
         model=GPT4O),
    case(lambda: key(models=[CLAUDE], organization=org([GPT4O])), ORG_MODEL, "personal-key-in-org-exceeds-org",
         model=CLAUDE),
    # all-proxy-models: no restriction at this level.
    case(lambda: key(models=["all-proxy-models"]), None, "key-all-proxy-models-anything", model=OFF_CATALOG),
    case(lambda: key(models=["all-proxy-models"], team_=team(models=[GPT4O])), TEAM_MODEL,
         "key-all-proxy-models-still-within-team", model=CLAUDE),
    case(lambda: key(team_=team(models=["all-proxy-models"])), None, "team-all-proxy-models-anything",
         model=CLAUDE),
    case(lambda: key(team_=narrowed_org_team(["all-proxy-models"], [GPT4O])), ORG_MODEL,
         "team-all-proxy-models-still-within-org", model=CLAUDE),
    case(lambda: key(team_=team(organization=org(["all-proxy-models"]))), None, "org-all-proxy-models-anything",
         model=LLAMA),
    # all-team-models: whatever the team has.
    case(lambda: key(models=["all-team-models"], team_=team(models=[GPT4O])), None, "key-all-team-models-allowed",
         model=GPT4O),
    case(lambda: key(models=["all-team-models"], team_=team(models=[GPT4O])), TEAM_MODEL,
         "key-all-team-models-denied", model=CLAUDE),
    case(lambda: key(models=["all-team-models"], team_=team(groups=[group([CLAUDE])])), None,
         "key-all-team-models-team-groups", model=CLAUDE),
    case(lambda: key(models=["all-team-models"]), None, "key-all-team-models-without-team-unrestricted",
         model=OFF_CATALOG),
    # Wildcards.
    case(lambda: key(models=["openai/*"]), None, "key-wildcard-matches", model=GPT4O),
    case(lambda: key(models=["openai/*"]), KEY_MODEL, "key-wildcard-other-provider-denied", model=CLAUDE),
    case(lambda: key(team_=team(models=["anthropic/*"])), None, "team-wildcard-matches", model=CLAUDE),
    case(lambda: key(team_=team(models=["anthropic/*"])), TEAM_MODEL, "team-wildcard-other-provider-denied",
         model=GPT4O),
    case(lambda: key(groups=[group(["google/*"])]), None, "group-wildcard-matches", model=GEMINI),
    case(lambda: key(team_=team(organization=org(["meta-llama/*"]))), ORG_MODEL, "org-wildcard-other-denied",
         model=MISTRAL),
    # no-default-models: no direct access; only access groups (or, for users, teams) grant.
    case(lambda: key(models=["no-default-models"], groups=[group([GPT4O])]), None,
         "key-no-default-models-groups-allowed", model=GPT4O),
    case(lambda: key(models=["no-default-models"], groups=[group([GPT4O])]), KEY_MODEL,
         "key-no-default-models-outside-groups-denied", model=CLAUDE),
    case(lambda: key(models=["no-default-models"], team_=team(models=[GPT4O])), KEY_MODEL,
         "key-no-default-models-no-team-fallback", model=GPT4O),
    case(lambda: key(user=UserFactory(models=["no-default-models"])), USER_MODEL,
         "user-no-default-models-personal-key-denied", model=GPT4O),
    case(lambda: key(user=UserFactory(models=["no-default-models"]), team_=team(models=[GPT4O])), None,
         "user-no-default-models-team-key-allowed", model=GPT4O),
    # MCP servers and agents follow the same rule.
    case(lambda: key(), None, "mcp-unrestricted-everything", mcp_server_id=GITHUB),
    case(lambda: key(groups=[group(mcp=[GITHUB])]), None, "mcp-key-group-allowed", mcp_server_id=GITHUB),
    case(lambda: key(groups=[group(mcp=[GITHUB])]), "key_mcp_server_access_denied", "mcp-key-group-denied",
         mcp_server_id=FILES),
    case(lambda: key(groups=[group(models=[GPT4O])]), "key_mcp_server_access_denied",
         "mcp-key-group-without-servers-denied", mcp_server_id=GITHUB),
    case(lambda: key(models=[group(mcp=[GITHUB]).access_group_name]), None, "mcp-key-models-names-group",
         mcp_server_id=GITHUB),
    case(lambda: key(team_=team(groups=[group(mcp=[GITHUB])])), "team_mcp_server_access_denied",
         "mcp-team-group-denied", mcp_server_id=FILES),
    case(lambda: key(groups=[group(agents=[RESEARCH])]), None, "agent-key-group-allowed", agent_id=RESEARCH),
    case(lambda: key(groups=[group(agents=[RESEARCH])]), "key_agent_access_denied", "agent-key-group-denied",
         agent_id=TRIAGE),
    case(lambda: key(team_=team(groups=[group(agents=[RESEARCH])])), "team_agent_access_denied",
         "agent-team-group-denied", agent_id=TRIAGE),
    case(lambda: key(), None, "agent-unrestricted-everything", agent_id=TRIAGE),
    # The key, its team, organization and user must be usable.
    case(lambda: key(blocked=True), "key_blocked", "key-blocked", model=GPT4O),
    case(lambda: key(blocked=True, models=[GPT4O]), "key_blocked", "key-blocked-before-model-check", model=CLAUDE),
    case(expired_key, "expired_key", "key-expired", model=GPT4O),
    case(lambda: key(team_=team(blocked=True)), "team_blocked", "team-blocked", model=GPT4O),
    case(deleted_org_key, "organization_deleted", "organization-deleted", model=GPT4O),
    case(inactive_user_key, "user_blocked", "user-inactive", model=GPT4O),
    # No budget on the path may be spent.
    case(lambda: key(max_budget=1.0, spend=0.5), None, "key-budget-left", model=GPT4O),
    case(lambda: key(max_budget=1.0, spend=1.0), "budget_exceeded", "key-budget-spent", model=GPT4O),
    case(lambda: key(team_=team(max_budget=5.0, spend=5.0)), "budget_exceeded", "team-budget-spent", model=GPT4O),
    case(org_over_budget_key, "budget_exceeded", "org-budget-spent", model=GPT4O),
    case(lambda: key(user=UserFactory(max_budget=2.0, spend=2.5)), "budget_exceeded", "user-budget-spent",
         model=GPT4O),
    case(lambda: key(model_max_budget={GPT4O: 1.0}, model_spend={GPT4O: 1.0}), "budget_exceeded",
         "model-max-budget-spent", model=GPT4O),
    case(lambda: key(model_max_budget={GPT4O: 1.0}, model_spend={GPT4O: 1.0}), None,
         "model-max-budget-other-model-allowed", model=CLAUDE),
]


def _snapshot(build: Callable[[], VirtualKey]) -> KeySnapshot:
    snapshot = load_snapshot(build().token)
    assert snapshot is not None
    return snapshot


@pytest.mark.parametrize(("build", "ask", "expected"), CASES)
def test_authorize_follows_spec_rule(build, ask, expected):
    decision = authorize(_snapshot(build), now=timezone.now(), **ask)
    assert (decision.allowed, decision.type) == (expected is None, expected)


def test_authorize_key_with_access_group_and_no_models_is_limited_to_the_group_not_the_team_23850():
    """LiteLLM #23850: a key with no models and an access group must not fall back to its team's models."""
    snapshot = _snapshot(lambda: key(groups=[group([GPT4O])], team_=team(models=[GPT4O, CLAUDE])))
    assert authorize(snapshot, now=timezone.now(), model=GPT4O).allowed
    assert authorize(snapshot, now=timezone.now(), model=CLAUDE).type == KEY_MODEL
    assert allowed_names(snapshot, "models", _active_catalog()["models"]) == [GPT4O]


def _active_catalog() -> dict[str, list[str]]:
    return {
        "models": list(CatalogModel.objects.filter(active=True).values_list("model_name", flat=True)),
        "mcp_servers": list(MCPServer.objects.filter(active=True).values_list("server_id", flat=True)),
        "agents": list(Agent.objects.filter(active=True).values_list("agent_id", flat=True)),
    }


def _usable(snapshot: KeySnapshot) -> KeySnapshot:
    """The same key as if it were usable and within budget: what the listing answers for."""
    return dataclasses.replace(
        snapshot, blocked=False, expires=None, user_active=True, team_blocked=False, organization_deleted=False,
        budgets=(),
    )


@pytest.mark.parametrize(("build", "ask", "expected"), CASES)
def test_allowed_names_lists_only_what_authorize_allows(build, ask, expected):
    snapshot, now, catalog = _usable(_snapshot(build)), timezone.now(), _active_catalog()
    refused = {
        (resource, name)
        for resource in RESOURCES
        for name in allowed_names(snapshot, resource, catalog[resource])
        if not authorize(snapshot, now=now, **{PARAM[resource]: name}).allowed
    }
    assert refused == set()


@pytest.mark.parametrize(("build", "ask", "expected"), CASES)
def test_allowed_names_lists_every_catalog_entry_authorize_allows(build, ask, expected):
    snapshot, now, catalog = _usable(_snapshot(build)), timezone.now(), _active_catalog()
    missing = {
        (resource, name)
        for resource in RESOURCES
        for name in catalog[resource]
        if authorize(snapshot, now=now, **{PARAM[resource]: name}).allowed
        and name not in allowed_names(snapshot, resource, catalog[resource])
    }
    assert missing == set()


def test_allowed_names_never_lists_inactive_catalog_entries():
    snapshot = _snapshot(lambda: key(models=["openai/*"]))
    assert allowed_names(snapshot, "models", _active_catalog()["models"]) == [GPT4O, MINI]


def test_allowed_names_lists_explicit_names_outside_the_catalog_as_they_are():
    snapshot = _snapshot(lambda: key(models=[OFF_CATALOG, GPT4O]))
    assert allowed_names(snapshot, "models", _active_catalog()["models"]) == [OFF_CATALOG, GPT4O]


def test_allowed_names_for_no_default_models_without_groups_is_empty():
    snapshot = _snapshot(lambda: key(models=["no-default-models"]))
    assert allowed_names(snapshot, "models", _active_catalog()["models"]) == []
