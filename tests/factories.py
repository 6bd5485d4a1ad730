"""factory_boy factories that go through the services, so test data obeys the same rules as real data."""
from __future__ import annotations

import factory

from accessctl.roles import OrgRole, PlatformRole, TeamRole
from accessgroups import services as access_services
from accessgroups.models import AccessGroup, Agent, CatalogModel, MCPServer
from keys import services as key_services
from keys.models import VirtualKey
from orgs import services as org_services
from orgs.models import Organization, OrganizationMembership, Team, TeamMembership, User


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    user_id = factory.Sequence(lambda n: f"user{n}@example.test")
    user_role = PlatformRole.INTERNAL_USER

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return org_services.user_create(actor=None, **kwargs)


class AdminFactory(UserFactory):
    user_role = PlatformRole.PROXY_ADMIN


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    organization_alias = factory.Sequence(lambda n: f"Org {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return org_services.organization_create(actor=None, **kwargs)


class OrganizationMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrganizationMembership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    user_role = OrgRole.INTERNAL_USER

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return org_services.organization_member_add(actor=None, **kwargs)


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    team_alias = factory.Sequence(lambda n: f"team-{n}")
    organization = None

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return org_services.team_create(actor=None, **kwargs)


class TeamMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TeamMembership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = TeamRole.USER

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return org_services.team_member_add(actor=None, **kwargs)


class KeyFactory(factory.django.DjangoModelFactory):
    """Creates a key; the raw secret is available as `key.raw` on the returned object (tests only)."""

    class Meta:
        model = VirtualKey

    user = factory.SubFactory(UserFactory)
    team = None

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        key, raw = key_services.key_generate(actor=None, **kwargs)
        key.raw = raw
        return key


class AccessGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccessGroup

    access_group_name = factory.Sequence(lambda n: f"group-{n}")
    access_model_names = factory.LazyFunction(lambda: ["openai/gpt-4o"])
    organization = None

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return access_services.access_group_create(actor=None, **kwargs)


class CatalogModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CatalogModel

    model_name = factory.Sequence(lambda n: f"provider/model-{n}")
    provider = "provider"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return access_services.catalog_upsert(actor=None, kind="model", data=kwargs)


class MCPServerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MCPServer

    server_id = factory.Sequence(lambda n: f"mcp-{n}")
    name = factory.Sequence(lambda n: f"MCP server {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return access_services.catalog_upsert(actor=None, kind="mcp_server", data=kwargs)


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    agent_id = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.Sequence(lambda n: f"Agent {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return access_services.catalog_upsert(actor=None, kind="agent", data=kwargs)


def delete_committed_rows() -> None:
    """Remove every row of our apps: for module-scoped fixtures that commit outside any test's transaction,
    so no later test sees their users, keys, audit entries, budgets or invalidation notes."""
    from django.apps import apps
    from django.db.models import ProtectedError

    models = [model for label in ("keys", "accessgroups", "orgs") for model in apps.get_app_config(label).get_models()]
    for _ in range(3):  # a row protected by another goes on a later pass, once that one is gone
        left = False
        for model in models:
            try:
                model.objects.all().delete()
            except ProtectedError:
                left = True
        if not left:
            return
    raise AssertionError("committed rows could not be deleted")
