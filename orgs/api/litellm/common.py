"""What the team, user and organization routes share: answer shapes and the lookups of DirectoryView."""
from __future__ import annotations

from typing import Any

from django.db.models import Prefetch

from accessctl import policy
from accessctl.errors import InvalidInput, NotFound, ServiceError
from accessctl.litellm import LiteLLMView
from keys.models import VirtualKey
from orgs import selectors, services
from orgs.models import Organization, Team, User

from ..litellm_organization_serializers import (
    OrganizationOut,
)
from ..litellm_serializers import (
    TeamOut,
)
from ..litellm_user_serializers import (
    UserOut,
)

TEAM_TAGS = ["LiteLLM: teams"]
USER_TAGS = ["LiteLLM: users"]
ORG_TAGS = ["LiteLLM: organizations"]

KEY_PREFETCH = Prefetch("keys", queryset=VirtualKey.objects.select_related("user").order_by("-created_at", "id"))


def _s(value: Any) -> str | None:
    return str(value) if value is not None else None


def team_out(team: Team) -> dict[str, Any]:
    """A team row, reloaded with its memberships (two queries)."""
    return TeamOut(selectors.teams_with_members(Team.objects.filter(pk=team.pk)).get()).data


def organization_out(organization: Organization) -> dict[str, Any]:
    row = selectors.organizations_with_detail(Organization.objects.select_related("budget").filter(pk=organization.pk))
    return OrganizationOut(row.get()).data


def user_out(user: User) -> dict[str, Any]:
    return UserOut(selectors.with_memberships(User.objects.filter(pk=user.pk)).get()).data


class DirectoryView(LiteLLMView):
    """Helpers shared by the team, user and organization routes."""

    def find_team(self, team_id: str) -> Team:
        team = selectors.team_in_context(self.tenant, team_id)
        if team is None:
            raise NotFound(f"Team not found, passed team_id={team_id}", param="team_id")
        return team

    def find_organization(self, organization_id: str, message: str = "Organization not found") -> Organization:
        organization = selectors.organization_in_context(self.tenant, organization_id)
        if organization is None:
            raise NotFound(message, param="organization_id")
        return organization

    def find_user(self, *, user_id: str | None, user_email: str | None = None) -> User:
        user = selectors.user_in_context(self.tenant, user_id=user_id, user_email=user_email)
        if user is None:
            raise NotFound(f"User {user_id or user_email} not found", param="user_id" if user_id else "user_email")
        return user

    def member_user(self, item: dict[str, Any], *, organization: Organization | None) -> tuple[User, bool]:
        """The user a member entry names (by id, else email); a missing one is created, inside
        `organization` if given, as LiteLLM's member adds do. Returns (user, created)."""
        user_id, email = item.get("user_id"), item.get("user_email")
        if user_id:
            user = selectors.user_by_id(user_id)
            if user is not None and email and (user.user_email or "").lower() != email.lower():
                raise InvalidInput("user_email does not match the user with this user_id.", param="user_email")
        else:
            matches = selectors.users_by_email(email)
            if len(matches) > 1:
                raise InvalidInput("Several users have this email; pass user_id.", param="user_email")
            user = matches[0] if matches else None
        if user is not None:
            return user, False
        user = services.user_create(actor=self.acting_user, user_id=user_id, user_email=email)
        if organization is not None:
            services.organization_member_add(
                actor=self.acting_user, organization=organization, user=user, user_role="internal_user"
            )
        return user, True

    def ask_models(self, models: list[str], ceilings: dict[str, list]) -> None:
        verdict = policy.can_grant_models(self.request.actor, models, ceilings)
        if not verdict:
            raise ServiceError(verdict.message, type=verdict.type, status=verdict.status, param="models")
