"""REST views (`/api/v1/`) of organizations, teams, users, their members and the audit log.

Thin: parse with a serializer, find the row through a tenant-scoped selector (a foreign row is the
same 404 as a missing one), ask the policy, call a service, render.
"""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import InvalidInput, NotFound, ServiceError
from accessctl.rest import RestView, errors, rendered
from orgs import selectors, services
from orgs.models import AuditEntry, Organization, OrganizationMembership, Team, TeamMembership, User

from .filters import (
    AuditEntryFilter,
    OrganizationFilter,
    OrganizationMemberFilter,
    TeamFilter,
    TeamMemberFilter,
    UserFilter,
)
from .serializers import (
    AuditEntrySerializer,
    OrganizationCreateSerializer,
    OrganizationMemberAddSerializer,
    OrganizationMemberSerializer,
    OrganizationMemberUpdateSerializer,
    OrganizationSerializer,
    OrganizationUpdateSerializer,
    TeamCreateSerializer,
    TeamMemberAddSerializer,
    TeamMemberSerializer,
    TeamMemberUpdateSerializer,
    TeamSerializer,
    TeamUpdateSerializer,
    UserCreateSerializer,
    UserSerializer,
    UserUpdateSerializer,
)

READ_ERRORS = errors(400, 401, 403, 404)
WRITE_ERRORS = errors(400, 401, 403, 404, 409)


def _s(value: Any) -> str | None:
    return str(value) if value is not None else None


class OrgsView(RestView):
    """Lookups shared by the views below: each answers 404 for a row outside the context."""

    def organization(self, organization_id: Any) -> Organization:
        organization = selectors.organization_in_context(self.tenant, organization_id)
        if organization is None:
            raise NotFound(f"Organization {organization_id} not found.", param="organization_id")
        return organization

    def team(self, team_id: Any) -> Team:
        team = selectors.team_in_context(self.tenant, team_id)
        if team is None:
            raise NotFound(f"Team {team_id} not found.", param="team_id")
        return team

    def user(self, user_id: str) -> User:
        user = selectors.user_in_context(self.tenant, user_id=user_id)
        if user is None:
            raise NotFound(f"User {user_id} not found.", param="user_id")
        return user

    def any_user(self, user_id: str, param: str = "user_id") -> User:
        """A user named in a body for a write the policy already allowed (adding a member)."""
        user = selectors.user_by_id(user_id)
        if user is None:
            raise NotFound(f"User {user_id} not found.", param=param)
        return user

    def organization_for_create(self, organization_id: Any) -> Organization | None:
        """Where a new row goes: the context's organization (a different `organization_id` → 400), else
        the one named (404 if the caller cannot see it), else none (a global row)."""
        if self.tenant.organization is not None:
            if organization_id is not None and str(organization_id) != self.tenant.organization_id:
                raise InvalidInput(
                    "organization_id must be the organization of the request's context.", param="organization_id"
                )
            return self.tenant.organization
        if organization_id is None:
            return None
        return self.organization(organization_id)

    def grant_models(self, models: list[str] | None, ceilings: dict[str, list]) -> None:
        if not models:
            return
        verdict = policy.can_grant_models(self.request.actor, models, ceilings)
        if not verdict:
            raise ServiceError(verdict.message, type=verdict.type, status=verdict.status, param="models")


# --- organizations ------------------------------------------------------------------------------


class OrganizationListView(OrgsView):
    model = Organization
    filterset_class = OrganizationFilter

    def visible_rows(self) -> QuerySet:
        return selectors.organizations_visible(self.tenant)

    @extend_schema(
        tags=["organizations"], summary="Organizations visible in the context",
        responses={200: OrganizationSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        self.check("organization:list")
        return self.list_response(OrganizationSerializer)

    @extend_schema(
        tags=["organizations"], summary="Create an organization (proxy admins)",
        request=OrganizationCreateSerializer, responses={201: OrganizationSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = self.body(OrganizationCreateSerializer)
        self.check("organization:create", policy.Target())
        organization = services.organization_create(actor=self.acting_user, **data)
        return rendered(OrganizationSerializer, organization, status=201)


class OrganizationDetailView(OrgsView):
    model = Organization

    @extend_schema(tags=["organizations"], summary="One organization", responses={200: OrganizationSerializer, **READ_ERRORS})
    def get(self, request: Request, organization_id: Any) -> Response:
        organization = self.organization(organization_id)
        self.check("organization:info", policy.organization_target(organization))
        return rendered(OrganizationSerializer, organization)

    @extend_schema(
        tags=["organizations"], summary="Change an organization (models and budget: proxy admins)",
        request=OrganizationUpdateSerializer, responses={200: OrganizationSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, organization_id: Any) -> Response:
        organization = self.organization(organization_id)
        data = self.body(OrganizationUpdateSerializer, partial=True)
        organization = services.organization_update(
            actor=self.acting_user, organization=organization, data=data, by=request.actor
        )
        return rendered(OrganizationSerializer, organization)

    @extend_schema(
        tags=["organizations"],
        summary="Soft-delete an organization: its keys and context stop working at once; rows stay",
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request: Request, organization_id: Any) -> Response:
        organization = self.organization(organization_id)
        services.organization_delete(actor=self.acting_user, organization=organization, by=request.actor)
        return Response(status=204)


class OrganizationMemberListView(OrgsView):
    model = OrganizationMembership
    filterset_class = OrganizationMemberFilter

    def visible_rows(self) -> QuerySet:
        organization = self.organization(self.kwargs["organization_id"])
        self.check("organization:info", policy.organization_target(organization))
        return selectors.organization_members(organization)

    @extend_schema(
        tags=["organizations"], summary="Members of an organization",
        responses={200: OrganizationMemberSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, organization_id: Any) -> Response:
        return self.list_response(OrganizationMemberSerializer)

    @extend_schema(
        tags=["organizations"], summary="Add a member (409 if already one)",
        request=OrganizationMemberAddSerializer, responses={201: OrganizationMemberSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, organization_id: Any) -> Response:
        organization = self.organization(organization_id)
        data = self.body(OrganizationMemberAddSerializer)
        self.check("organization:member_manage", policy.organization_target(organization))
        user = self.any_user(data["user_id"])
        membership = services.organization_member_add(
            actor=self.acting_user,
            by=request.actor,
            organization=organization,
            user=user,
            user_role=data["user_role"],
            max_budget_in_organization=data.get("max_budget_in_organization"),
        )
        return rendered(OrganizationMemberSerializer, membership, status=201)


class OrganizationMemberDetailView(OrgsView):
    model = OrganizationMembership

    def membership(self, organization: Organization, user_id: str) -> OrganizationMembership:
        membership = selectors.organization_members(organization).filter(user__user_id=user_id).first()
        if membership is None:
            raise NotFound(f"User {user_id} is not a member of this organization.", param="user_id")
        return membership

    @extend_schema(tags=["organizations"], summary="One member", responses={200: OrganizationMemberSerializer, **READ_ERRORS})
    def get(self, request: Request, organization_id: Any, user_id: str) -> Response:
        organization = self.organization(organization_id)
        self.check("organization:info", policy.organization_target(organization))
        return rendered(OrganizationMemberSerializer, self.membership(organization, user_id))

    @extend_schema(
        tags=["organizations"], summary="Change a member's role or budget",
        request=OrganizationMemberUpdateSerializer, responses={200: OrganizationMemberSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, organization_id: Any, user_id: str) -> Response:
        organization = self.organization(organization_id)
        data = self.body(OrganizationMemberUpdateSerializer, partial=True)
        self.check("organization:member_manage", policy.organization_target(organization))
        membership = self.membership(organization, user_id)
        membership = services.organization_member_update(
            actor=self.acting_user,
            by=request.actor,
            membership=membership,
            user_role=data.get("user_role"),
            max_budget_in_organization=data.get("max_budget_in_organization"),
        )
        return rendered(OrganizationMemberSerializer, membership)

    @extend_schema(
        tags=["organizations"], summary="Remove a member: their rights in the organization end at once",
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request: Request, organization_id: Any, user_id: str) -> Response:
        organization = self.organization(organization_id)
        self.check("organization:member_manage", policy.organization_target(organization))
        services.organization_member_delete(actor=self.acting_user, membership=self.membership(organization, user_id))
        return Response(status=204)


# --- teams --------------------------------------------------------------------------------------


def _team_data(data: dict[str, Any]) -> dict[str, Any]:
    """The service's names for the REST fields."""
    data = dict(data)
    if "team_member_permissions" in data:
        data["member_permissions"] = data.pop("team_member_permissions")
    if "access_group_ids" in data:
        data["access_group_ids"] = [str(g) for g in data["access_group_ids"]]
    return data


def _with_members(team: Team) -> Team:
    return selectors.teams_with_members(Team.objects.filter(pk=team.pk)).get()


class TeamListView(OrgsView):
    model = Team
    filterset_class = TeamFilter

    def visible_rows(self) -> QuerySet:
        return selectors.teams_visible(self.tenant)

    @extend_schema(tags=["teams"], summary="Teams visible in the context", responses={200: TeamSerializer(many=True), **READ_ERRORS})
    def get(self, request: Request) -> Response:
        self.check("team:list", policy.Target(owner_user_id=request.actor.user_id))
        return self.list_response(TeamSerializer)

    @extend_schema(
        tags=["teams"], summary="Create a team in the context's organization (org admins) or a global one (proxy admins)",
        request=TeamCreateSerializer, responses={201: TeamSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _team_data(self.body(TeamCreateSerializer))
        organization = self.organization_for_create(data.pop("organization_id", None))
        self.check("team:create", policy.Target(organization_id=_s(organization and organization.pk),
                                                 is_global=organization is None))
        if organization is not None:
            self.grant_models(data.get("models"), {"organization": list(organization.models or [])})
        members = [
            (self.any_user(m["user_id"], param="members_with_roles"), m["role"])
            for m in data.pop("members_with_roles", [])
        ]
        team = services.team_create(actor=self.acting_user, organization=organization, members=members, **data)
        return rendered(TeamSerializer, _with_members(team), status=201)


class TeamDetailView(OrgsView):
    model = Team

    @extend_schema(tags=["teams"], summary="One team", responses={200: TeamSerializer, **READ_ERRORS})
    def get(self, request: Request, team_id: Any) -> Response:
        team = self.team(team_id)
        self.check("team:info", policy.team_target(team))
        return rendered(TeamSerializer, _with_members(team))

    @extend_schema(
        tags=["teams"],
        summary="Change a team (models, budget, blocked and access groups: org admins and proxy admins)",
        request=TeamUpdateSerializer, responses={200: TeamSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, team_id: Any) -> Response:
        team = self.team(team_id)
        sent = self.body(TeamUpdateSerializer, partial=True)
        team = services.team_update(actor=self.acting_user, team=team, data=_team_data(sent), by=request.actor)
        return rendered(TeamSerializer, _with_members(team))

    @extend_schema(
        tags=["teams"], summary="Delete a team with its keys and memberships", responses={204: None, **READ_ERRORS}
    )
    def delete(self, request: Request, team_id: Any) -> Response:
        team = self.team(team_id)
        services.team_delete(actor=self.acting_user, team=team, by=request.actor)
        return Response(status=204)


class TeamMemberListView(OrgsView):
    model = TeamMembership
    filterset_class = TeamMemberFilter

    def visible_rows(self) -> QuerySet:
        team = self.team(self.kwargs["team_id"])
        self.check("team:info", policy.team_target(team))
        return selectors.team_members(team)

    @extend_schema(tags=["teams"], summary="Members of a team", responses={200: TeamMemberSerializer(many=True), **READ_ERRORS})
    def get(self, request: Request, team_id: Any) -> Response:
        return self.list_response(TeamMemberSerializer)

    @extend_schema(
        tags=["teams"], summary="Add a member (400 `team_member_already_in_team` if already one)",
        request=TeamMemberAddSerializer, responses={201: TeamMemberSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, team_id: Any) -> Response:
        team = self.team(team_id)
        data = self.body(TeamMemberAddSerializer)
        self.check("team:member_manage", policy.team_target(team))
        user = self.any_user(data["user_id"])
        membership = services.team_member_add(
            actor=self.acting_user, by=request.actor, team=team, user=user, role=data["role"],
            max_budget_in_team=data.get("max_budget_in_team"),
        )
        return rendered(TeamMemberSerializer, membership, status=201)


class TeamMemberDetailView(OrgsView):
    model = TeamMembership

    def membership(self, team: Team, user_id: str) -> TeamMembership:
        membership = selectors.team_members(team).filter(user__user_id=user_id).first()
        if membership is None:
            raise NotFound(f"User {user_id} is not a member of this team.", param="user_id")
        return membership

    @extend_schema(tags=["teams"], summary="One member", responses={200: TeamMemberSerializer, **READ_ERRORS})
    def get(self, request: Request, team_id: Any, user_id: str) -> Response:
        team = self.team(team_id)
        self.check("team:info", policy.team_target(team))
        return rendered(TeamMemberSerializer, self.membership(team, user_id))

    @extend_schema(
        tags=["teams"], summary="Change a member's role or budget",
        request=TeamMemberUpdateSerializer, responses={200: TeamMemberSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, team_id: Any, user_id: str) -> Response:
        team = self.team(team_id)
        data = self.body(TeamMemberUpdateSerializer, partial=True)
        self.check("team:member_manage", policy.team_target(team))
        membership = self.membership(team, user_id)
        membership = services.team_member_update(
            actor=self.acting_user, by=request.actor, membership=membership, role=data.get("role"),
            max_budget_in_team=data.get("max_budget_in_team"),
        )
        return rendered(TeamMemberSerializer, membership)

    @extend_schema(
        tags=["teams"], summary="Remove a member and their keys in the team", responses={204: None, **READ_ERRORS}
    )
    def delete(self, request: Request, team_id: Any, user_id: str) -> Response:
        team = self.team(team_id)
        self.check("team:member_manage", policy.team_target(team))
        services.team_member_delete(actor=self.acting_user, membership=self.membership(team, user_id))
        return Response(status=204)


# --- users --------------------------------------------------------------------------------------


def _with_memberships(user: User) -> User:
    return selectors.with_memberships(User.objects.filter(pk=user.pk)).get()


class UserListView(OrgsView):
    model = User
    filterset_class = UserFilter

    def visible_rows(self) -> QuerySet:
        return selectors.users_visible(self.tenant)

    @extend_schema(
        tags=["users"], summary="Users visible in the context (admins and org admins)",
        responses={200: UserSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        self.check("user:list")
        return self.list_response(UserSerializer)

    @extend_schema(
        tags=["users"],
        summary="Create a user; inside an organization context they also become its member",
        request=UserCreateSerializer, responses={201: UserSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = self.body(UserCreateSerializer)
        organization = self.organization_for_create(data.pop("organization_id", None))
        user = services.user_create(
            actor=self.acting_user,
            by=request.actor,
            organizations=[organization] if organization is not None else [],
            organization_role=data.pop("organization_role"),
            **data,
        )
        return rendered(UserSerializer, _with_memberships(user), status=201)


class UserDetailView(OrgsView):
    model = User

    @extend_schema(tags=["users"], summary="One user", responses={200: UserSerializer, **READ_ERRORS})
    def get(self, request: Request, user_id: str) -> Response:
        user = self.user(user_id)
        self.check("user:info", policy.user_target(user))
        return rendered(UserSerializer, user)

    @extend_schema(
        tags=["users"],
        summary="Change a user (role, system and active flags: proxy admins; budget and models: their org admins)",
        request=UserUpdateSerializer, responses={200: UserSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, user_id: str) -> Response:
        user = self.user(user_id)
        data = self.body(UserUpdateSerializer, partial=True)
        user = services.user_update(actor=self.acting_user, user=user, data=data, by=request.actor)
        return rendered(UserSerializer, _with_memberships(user))

    @extend_schema(tags=["users"], summary="Delete a user with their keys and memberships", responses={204: None, **READ_ERRORS})
    def delete(self, request: Request, user_id: str) -> Response:
        user = self.user(user_id)
        services.user_delete(actor=self.acting_user, user=user, by=request.actor)
        return Response(status=204)


# --- audit log ----------------------------------------------------------------------------------


class AuditLogView(OrgsView):
    model = AuditEntry
    filterset_class = AuditEntryFilter

    def visible_rows(self) -> QuerySet:
        return selectors.audit_entries_visible(self.tenant)

    @extend_schema(
        tags=["audit"], summary="Audit entries: admins all, org admins their organization's",
        responses={200: AuditEntrySerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        self.check("audit:read", policy.Target(organization_id=self.tenant.organization_id))
        return self.list_response(AuditEntrySerializer)
