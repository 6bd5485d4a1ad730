"""manage.py load_demo: a small, realistic, idempotent demo tenant set, written through the services."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accessctl.roles import OrgRole, PlatformRole, TeamRole
from accessgroups import services as access_services
from accessgroups.models import AccessGroup, Agent, CatalogModel, MCPServer, TeamAccessGroup
from keys import services as key_services
from keys.models import VirtualKey
from orgs import services as org_services
from orgs.models import Organization, OrganizationMembership, Team, TeamMembership, User

# Fixed ids (uuid5 of a name in this namespace) make a second run find what the first one created.
DEMO_NAMESPACE = uuid.UUID("6f1c1a52-3f0e-4c55-9d7e-0b7c1e2f4a10")
ADMIN_USER_ID = "admin"
ADMIN_PASSWORD = "admin-demo-password"  # a demo login, printed on purpose; never use it outside a demo


def demo_id(name: str) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, name))


CATALOG = (
    ("openai/gpt-4o", "openai", "OpenAI's flagship multimodal model."),
    ("openai/gpt-4o-mini", "openai", "Small, fast and cheap GPT-4o."),
    ("openai/o3-mini", "openai", "Reasoning model, small."),
    ("anthropic/claude-3-5-sonnet-20241022", "anthropic", "Claude 3.5 Sonnet."),
    ("anthropic/claude-3-5-haiku-20241022", "anthropic", "Claude 3.5 Haiku, fast."),
    ("anthropic/claude-3-opus-20240229", "anthropic", "Claude 3 Opus."),
    ("google/gemini-1.5-pro", "google", "Gemini 1.5 Pro, long context."),
    ("google/gemini-1.5-flash", "google", "Gemini 1.5 Flash, fast."),
    ("mistral/mistral-large-latest", "mistral", "Mistral Large."),
    ("mistral/codestral-latest", "mistral", "Codestral, for code."),
    ("meta-llama/Llama-3.3-70B-Instruct", "meta-llama", "Llama 3.3 70B Instruct, open weights."),
    ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama", "Llama 3.1 8B Instruct, open weights."),
)
MCP_SERVERS = (
    ("github", "GitHub", "Issues, pull requests and code search."),
    ("filesystem", "Filesystem", "Read-only access to a shared documents folder."),
)
AGENTS = (
    ("research-agent", "Research assistant", "Searches, reads and summarises sources."),
    ("support-triage", "Support triage", "Labels and routes incoming support tickets."),
)

ORGANIZATIONS = {
    "acme": {"organization_alias": "Acme Research", "models": ["openai/*", "anthropic/*", "google/*"],
             "max_budget": 5000.0, "budget_duration": "1mo"},
    "globex": {"organization_alias": "Globex Labs", "models": ["mistral/*", "meta-llama/*", "openai/gpt-4o-mini"],
               "max_budget": 1500.0, "budget_duration": "1mo"},
}
USERS = (
    # user_id, platform role, alias, extra fields
    (ADMIN_USER_ID, PlatformRole.PROXY_ADMIN, "Demo admin", {}),
    ("auditor@demo.test", PlatformRole.PROXY_ADMIN_VIEWER, "Audit viewer", {}),
    ("gateway@demo.test", PlatformRole.INTERNAL_USER, "Gateway service account", {"is_system": True}),
    ("alice@acme.test", PlatformRole.INTERNAL_USER, "Alice (Acme org admin)", {}),
    ("bob@acme.test", PlatformRole.INTERNAL_USER, "Bob", {}),
    ("carol@acme.test", PlatformRole.INTERNAL_USER, "Carol", {"max_budget": 200.0}),
    ("erin@globex.test", PlatformRole.INTERNAL_USER, "Erin (Globex org admin)", {}),
    ("frank@globex.test", PlatformRole.INTERNAL_USER, "Frank", {}),
    ("grace@globex.test", PlatformRole.INTERNAL_USER, "Grace", {}),
    ("heidi@demo.test", PlatformRole.INTERNAL_USER, "Heidi (no organization)", {"models": ["openai/gpt-4o-mini"]}),
)
ORG_MEMBERS = (
    ("acme", "alice@acme.test", OrgRole.ORG_ADMIN),
    ("acme", "bob@acme.test", OrgRole.INTERNAL_USER),
    ("acme", "carol@acme.test", OrgRole.INTERNAL_USER),
    ("globex", "erin@globex.test", OrgRole.ORG_ADMIN),
    ("globex", "frank@globex.test", OrgRole.INTERNAL_USER),
    ("globex", "grace@globex.test", OrgRole.INTERNAL_USER),
)
ACCESS_GROUPS = {
    "frontier-models": {
        "organization": None,
        "description": "The strongest hosted models, with GitHub and the research agent.",
        "access_model_names": ["openai/gpt-4o", "anthropic/claude-3-5-sonnet-20241022", "google/gemini-1.5-pro"],
        "access_mcp_server_ids": ["github"],
        "access_agent_ids": ["research-agent"],
    },
    "budget-models": {
        "organization": None,
        "description": "Fast, inexpensive models for high-volume work.",
        "access_model_names": ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022", "google/gemini-1.5-flash"],
        "access_mcp_server_ids": ["filesystem"],
        "access_agent_ids": ["support-triage"],
    },
    "open-weights": {
        "organization": "globex",
        "description": "Globex's open-weight models.",
        "access_model_names": ["mistral/*", "meta-llama/*"],
        "access_mcp_server_ids": [],
        "access_agent_ids": [],
    },
}
TEAMS = {
    "ml-platform": {"organization": "acme", "models": ["openai/gpt-4o", "openai/o3-mini",
                                                       "anthropic/claude-3-5-sonnet-20241022",
                                                       "google/gemini-1.5-pro"],
                    "groups": ["frontier-models"], "max_budget": 2000.0,
                    "members": [("alice@acme.test", TeamRole.ADMIN), ("bob@acme.test", TeamRole.USER)]},
    "support-bots": {"organization": "acme", "models": [], "groups": ["budget-models"], "max_budget": 500.0,
                     "member_permissions": ["/key/info", "/key/health", "/key/list", "/key/generate"],
                     "members": [("carol@acme.test", TeamRole.ADMIN), ("bob@acme.test", TeamRole.USER)]},
    "data-science": {"organization": "globex", "models": ["mistral/*", "meta-llama/*"], "groups": [],
                     "members": [("erin@globex.test", TeamRole.ADMIN), ("frank@globex.test", TeamRole.USER)]},
    "growth": {"organization": "globex", "models": [], "groups": ["open-weights"], "max_budget": 300.0,
               "members": [("grace@globex.test", TeamRole.ADMIN), ("frank@globex.test", TeamRole.USER)]},
}
KEYS = (
    # alias, owner (user_id or None for a team service-account key), team, extra key_generate arguments
    ("demo-alice-ml", "alice@acme.test", "ml-platform", {}),
    ("demo-bob-ml", "bob@acme.test", "ml-platform", {"models": ["no-default-models"], "groups": ["frontier-models"]}),
    ("demo-ml-ci", None, "ml-platform", {"models": ["openai/gpt-4o"], "tpm_limit": 100_000, "rpm_limit": 600}),
    ("demo-ml-batch", "alice@acme.test", "ml-platform", {"max_budget": 50.0, "spend": 12.5, "duration": "30d"}),
    ("demo-carol-support", "carol@acme.test", "support-bots", {}),
    ("demo-bob-support", "bob@acme.test", "support-bots", {"blocked": True}),
    ("demo-support-bot", None, "support-bots", {"groups": ["budget-models"], "budget_duration": "1d",
                                                "max_budget": 5.0}),
    ("demo-erin-ds", "erin@globex.test", "data-science", {}),
    ("demo-frank-ds", "frank@globex.test", "data-science", {"models": ["mistral/mistral-large-latest"]}),
    ("demo-ds-pipeline", None, "data-science", {"models": ["meta-llama/*"], "rpm_limit": 120}),
    ("demo-grace-growth", "grace@globex.test", "growth", {}),
    ("demo-frank-growth", "frank@globex.test", "growth", {"duration": "7d"}),
    ("demo-growth-experiments", None, "growth", {"model_max_budget": {"mistral/mistral-large-latest": 20.0}}),
    ("demo-admin-personal", ADMIN_USER_ID, None, {}),
    ("demo-heidi-personal", "heidi@demo.test", None, {}),
    ("demo-alice-personal", "alice@acme.test", None, {"organization": "acme", "models": ["openai/gpt-4o-mini"]}),
    ("demo-carol-personal", "carol@acme.test", None, {"organization": "acme"}),
    ("demo-erin-personal", "erin@globex.test", None, {"organization": "globex"}),
    ("demo-grace-personal", "grace@globex.test", None, {"organization": "globex", "max_budget": 10.0}),
    ("demo-bob-personal", "bob@acme.test", None, {"organization": "acme", "duration": "90d"}),
)


@dataclass
class Tally:
    created: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.created[kind] = self.created.get(kind, 0) + 1


class Command(BaseCommand):
    help = "Load the demo data (2 organizations, 4 teams, 10 users, 20 keys, 3 access groups, a catalog). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", default="http://localhost:8000", help="Where the server answers, for the login instructions."
        )

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        tally = Tally()
        with transaction.atomic():
            admin = self._admin(tally)
            self._catalog(admin, tally)
            orgs = self._organizations(admin, tally)
            users = self._users(admin, tally)
            self._org_members(admin, orgs, users, tally)
            groups = self._access_groups(admin, orgs, tally)
            teams = self._teams(admin, orgs, users, groups, tally)
            self._keys(admin, orgs, users, teams, groups, tally)
        self._report(tally, url.rstrip("/"))

    # --- each kind of row, created only when missing -----------------------------------------------------

    def _admin(self, tally: Tally) -> User:
        admin = User.objects.filter(user_id=ADMIN_USER_ID).first()
        if admin is None:
            admin = org_services.user_create(
                actor=None, user_id=ADMIN_USER_ID, password=ADMIN_PASSWORD, user_role=PlatformRole.PROXY_ADMIN,
                user_alias="Demo admin",
            )
            tally.add("users")
        return admin

    def _catalog(self, admin: User, tally: Tally) -> None:
        rows = (
            ("model", CatalogModel, "model_name", [{"model_name": n, "provider": p, "description": d}
                                                   for n, p, d in CATALOG]),
            ("mcp_server", MCPServer, "server_id", [{"server_id": i, "name": n, "description": d}
                                                    for i, n, d in MCP_SERVERS]),
            ("agent", Agent, "agent_id", [{"agent_id": i, "name": n, "description": d} for i, n, d in AGENTS]),
        )
        for kind, model, natural, entries in rows:
            existing = set(model.objects.values_list(natural, flat=True))
            for entry in entries:
                if entry[natural] not in existing:
                    access_services.catalog_upsert(actor=admin, kind=kind, data={**entry, "active": True})
                    tally.add(model._meta.verbose_name_plural)

    def _organizations(self, admin: User, tally: Tally) -> dict[str, Organization]:
        orgs: dict[str, Organization] = {}
        for slug, data in ORGANIZATIONS.items():
            org = Organization.objects.filter(pk=demo_id(f"org:{slug}")).first()
            if org is None:
                org = org_services.organization_create(actor=admin, organization_id=demo_id(f"org:{slug}"), **data)
                tally.add("organizations")
            orgs[slug] = org
        return orgs

    def _users(self, admin: User, tally: Tally) -> dict[str, User]:
        users = {ADMIN_USER_ID: admin}
        for user_id, role, alias, extra in USERS:
            if user_id == ADMIN_USER_ID:
                continue
            user = User.objects.filter(user_id=user_id).first()
            if user is None:
                user = org_services.user_create(actor=admin, user_id=user_id, user_role=role, user_alias=alias, **extra)
                tally.add("users")
            users[user_id] = user
        return users

    def _org_members(self, admin: User, orgs: dict, users: dict, tally: Tally) -> None:
        for slug, user_id, role in ORG_MEMBERS:
            if not OrganizationMembership.objects.filter(organization=orgs[slug], user=users[user_id]).exists():
                org_services.organization_member_add(
                    actor=admin, organization=orgs[slug], user=users[user_id], user_role=role
                )
                tally.add("organization members")

    def _access_groups(self, admin: User, orgs: dict, tally: Tally) -> dict[str, AccessGroup]:
        groups: dict[str, AccessGroup] = {}
        for name, data in ACCESS_GROUPS.items():
            group = AccessGroup.objects.filter(pk=demo_id(f"group:{name}")).first()
            if group is None:
                owner = orgs[data["organization"]] if data["organization"] else None
                group = access_services.access_group_create(
                    actor=admin, access_group_id=demo_id(f"group:{name}"), access_group_name=name, organization=owner,
                    **{k: v for k, v in data.items() if k != "organization"},
                )
                tally.add("access groups")
            groups[name] = group
        return groups

    def _teams(self, admin: User, orgs: dict, users: dict, groups: dict, tally: Tally) -> dict[str, Team]:
        teams: dict[str, Team] = {}
        for alias, spec in TEAMS.items():
            team = Team.objects.filter(pk=demo_id(f"team:{alias}")).first()
            if team is None:
                extra = {k: spec[k] for k in ("max_budget", "member_permissions") if k in spec}
                team = org_services.team_create(
                    actor=admin, team_id=demo_id(f"team:{alias}"), team_alias=alias,
                    organization=orgs[spec["organization"]], models=spec["models"], **extra,
                )
                tally.add("teams")
            for user_id, role in spec["members"]:
                if not TeamMembership.objects.filter(team=team, user=users[user_id]).exists():
                    org_services.team_member_add(actor=admin, team=team, user=users[user_id], role=role)
                    tally.add("team members")
            wanted = [groups[g] for g in spec["groups"]]
            missing = [g for g in wanted if not TeamAccessGroup.objects.filter(team=team, access_group=g).exists()]
            for group in missing:
                access_services.access_group_assign(actor=admin, group=group, teams=[team])
                tally.add("team access-group assignments")
            teams[alias] = team
        return teams

    def _keys(self, admin: User, orgs: dict, users: dict, teams: dict, groups: dict, tally: Tally) -> None:
        existing = set(VirtualKey.objects.filter(key_alias__startswith="demo-").values_list("key_alias", flat=True))
        for alias, owner, team, extra in KEYS:
            if alias in existing:
                continue
            arguments = dict(extra)
            group_names = arguments.pop("groups", [])
            if "organization" in arguments:
                arguments["organization"] = orgs[arguments["organization"]]
            # The secrets are not printed (SPEC §9: never in logs); make a key in the admin to see one.
            key_services.key_generate(
                actor=admin,
                key_alias=alias,
                user=users[owner] if owner else None,
                team=teams[team] if team else None,
                access_group_ids=[groups[g].pk for g in group_names],
                **arguments,
            )
            tally.add("keys")

    # --- what the operator needs to know -----------------------------------------------------------------

    def _report(self, tally: Tally, url: str) -> None:
        counts = {
            "organizations": Organization.objects.filter(pk__in=[demo_id(f"org:{s}") for s in ORGANIZATIONS]).count(),
            "teams": Team.objects.filter(pk__in=[demo_id(f"team:{t}") for t in TEAMS]).count(),
            "users": User.objects.filter(user_id__in=[u[0] for u in USERS]).count(),
            "keys": VirtualKey.objects.filter(key_alias__in=[k[0] for k in KEYS]).count(),
            "access groups": AccessGroup.objects.filter(pk__in=[demo_id(f"group:{g}") for g in ACCESS_GROUPS]).count(),
            "catalog models": CatalogModel.objects.filter(model_name__in=[c[0] for c in CATALOG]).count(),
            "MCP servers": MCPServer.objects.filter(server_id__in=[m[0] for m in MCP_SERVERS]).count(),
            "agents": Agent.objects.filter(agent_id__in=[a[0] for a in AGENTS]).count(),
        }
        self.stdout.write("Demo data: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + ".")
        if tally.created:
            self.stdout.write("Created now: " + ", ".join(f"{n} {kind}" for kind, n in tally.created.items()) + ".")
        else:
            self.stdout.write("Nothing to create: the demo data was already there.")
        self.stdout.write(
            "Demo keys' secrets are never printed; to try the gateway, add a key in the admin "
            "(Keys → Virtual keys → Add) and copy the secret from the page that follows."
        )
        self.stdout.write(self.style.SUCCESS(
            f"Admin: {url}/admin/  —  log in with user_id '{ADMIN_USER_ID}' and password '{ADMIN_PASSWORD}'"
            " (unless you changed it)."
        ))
