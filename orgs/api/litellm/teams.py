"""LiteLLM's `/team/*` routes: parse, ask the policy, call the services."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import InvalidInput, NotFound
from accessctl.litellm import errors, page_count
from accessctl.roles import DEFAULT_TEAM_MEMBER_PERMISSIONS, TEAM_MEMBER_PERMISSIONS, team_member_permissions
from keys.api.litellm import referenced_organization
from keys.api.litellm_serializers import KeyOut
from orgs import selectors, services
from orgs.models import Team, TeamMembership, User

from ..litellm_serializers import (
    TeamDeleteOut,
    TeamIdQuery,
    TeamIdsInput,
    TeamInfoOut,
    TeamListQuery,
    TeamListV2Query,
    TeamMemberAddInput,
    TeamMemberAddOut,
    TeamMemberRefInput,
    TeamMembershipOut,
    TeamMemberUpdateInput,
    TeamMemberUpdateOut,
    TeamNewInput,
    TeamOut,
    TeamPermissionsOut,
    TeamPermissionsUpdateInput,
    TeamUpdateInput,
    TeamUpdateOut,
    TeamWithKeysOut,
)
from ..litellm_user_serializers import (
    TeamListV2Out,
    UserOut,
)
from .common import (
    KEY_PREFETCH,
    TEAM_TAGS,
    DirectoryView,
    _s,
    team_out,
)


def team_data(data: dict[str, Any]) -> dict[str, Any]:
    """A team body in the services' vocabulary."""
    out = {
        k: v for k, v in data.items()
        if k not in ("team_id", "organization_id", "members_with_roles", "access_group_ids", "admins", "members")
    }
    if "team_member_permissions" in out:
        out["member_permissions"] = out.pop("team_member_permissions")
        if out["member_permissions"] is None:
            out["member_permissions"] = list(DEFAULT_TEAM_MEMBER_PERMISSIONS)
    if "blocked" in out:
        out["blocked"] = bool(out["blocked"])
    return out


class TeamNewView(DirectoryView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="Create a team (the caller becomes its admin)",
        request=TeamNewInput,
        responses={200: TeamOut, **errors(400, 401, 404)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(TeamNewInput)
        if data.get("organization_id"):
            organization = referenced_organization(self.tenant, data["organization_id"])
        else:
            organization = self.tenant.organization
        self.check("team:create", policy.Target(organization_id=_s(organization.pk) if organization else None))
        entries = list(data.get("members_with_roles") or [])
        with transaction.atomic():
            members: dict[int, tuple[User, str]] = {}
            for entry in entries:
                user, _ = self.member_user(entry, organization=organization)
                members[user.pk] = (user, entry["role"])
            creator = self.acting_user
            if creator is not None and creator.pk not in members:
                # LiteLLM adds the caller (the master key's default_user_id too) as a team admin.
                members[creator.pk] = (creator, "admin")
            team = services.team_create(
                actor=self.acting_user,
                by=request.actor,
                organization=organization,
                team_id=data.get("team_id") or None,
                access_group_ids=data.get("access_group_ids"),
                members=list(members.values()),
                legacy_admins=data.get("admins") or [],
                legacy_members=data.get("members") or [],
                **team_data(data),
            )
        return Response(team_out(team))


class TeamUpdateView(DirectoryView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="Update a team (the fields sent replace stored values)",
        request=TeamUpdateInput,
        responses={200: TeamUpdateOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(TeamUpdateInput)
        team = self.find_team(data["team_id"])
        changes = team_data(data)
        if "access_group_ids" in data:
            changes["access_group_ids"] = data["access_group_ids"] or []
        if "organization_id" in data:
            # Sent at all, the organization is a limit the team's admins may not touch (LiteLLM); a new one
            # is also creating the team there (the service asks both).
            moved = (data["organization_id"] or None) != _s(team.organization_id)
            changes["organization"] = (
                referenced_organization(self.tenant, data["organization_id"]) if moved and data["organization_id"]
                else None if moved else team.organization
            )
        team = services.team_update(actor=self.acting_user, team=team, data=changes, by=request.actor)
        return Response({"team_id": str(team.team_id), "data": team_out(team)})


class TeamDeleteView(DirectoryView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="Delete teams with their keys and memberships (all or none)",
        request=TeamIdsInput,
        responses={200: TeamDeleteOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        team_ids = self.body(TeamIdsInput)["team_ids"]
        found = selectors.teams_by_ids_in_context(self.tenant, team_ids)
        teams = []
        for team_id in team_ids:
            team = found.get(str(selectors.as_id(team_id)))
            if team is None:
                raise NotFound(f"Team not found, passed team_id={team_id}", param="team_ids")
            teams.append(team)
        with transaction.atomic():  # all or none: a refusal rolls back the teams deleted before it
            for team in {t.pk: t for t in teams}.values():
                services.team_delete(actor=self.acting_user, team=team, by=request.actor)
        return Response({"deleted_teams": list(team_ids)})


class TeamInfoView(DirectoryView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="A team with its keys and memberships",
        parameters=[TeamIdQuery],
        responses={200: TeamInfoOut, **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        team_id = self.query(TeamIdQuery)["team_id"]
        team = selectors.team_in_context(self.tenant, team_id)
        if team is None:
            raise NotFound(f"Team not found, passed team id: {team_id}.", param="team_id")
        self.check("team:info", policy.team_target(team))
        team = selectors.teams_with_members(Team.objects.filter(pk=team.pk)).prefetch_related(KEY_PREFETCH).get()
        return Response(
            {
                "team_id": str(team.team_id),
                "team_info": TeamOut(team).data,
                "keys": KeyOut(team.keys.all(), many=True).data,
                "team_memberships": TeamMembershipOut(team.memberships.all(), many=True).data,
            }
        )


class TeamListView(DirectoryView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="Teams (admins: all; others: their own, and their organizations' if org admin)",
        parameters=[TeamListQuery],
        responses={200: TeamWithKeysOut(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        qs = self.listed(self.query(TeamListQuery))
        teams = selectors.teams_with_members(qs.order_by("team_alias", "team_id")).prefetch_related(KEY_PREFETCH)
        return Response(TeamWithKeysOut(teams, many=True).data)

    def listed(self, query: dict[str, Any]):
        """The teams the caller may list, narrowed by `user_id` and `organization_id` (LiteLLM's rules)."""
        actor = self.request.actor
        qs = selectors.teams_in_context(self.tenant)
        user_id = query.get("user_id")
        if actor.is_service_account:
            self.check("team:list")
            qs = qs.filter(pk=actor.key_team_id)  # a team's service-account key sees its own team only
        elif actor.reads_everything:
            self.check("team:list")
            if user_id:
                qs = selectors.teams_of_user(qs, user_id)
        else:
            who = user_id or actor.user_id
            user = selectors.user_in_context(self.tenant, user_id=who)
            self.check("team:list", policy.user_target(user) if user else policy.Target(owner_user_id=who))
            if user_id:
                qs = selectors.teams_of_user(qs, who)
            else:
                mine = Q(pk__in=Team.objects.filter(memberships__user__user_id=who).values("pk"))
                qs = qs.filter(mine | Q(organization__in=list(actor.admin_org_ids)))
        org_filter = query.get("organization_id")
        if org_filter == "default_organization":
            qs = qs.filter(organization__isnull=True)
        elif org_filter:
            qs = qs.filter(organization=selectors.as_id(org_filter)) if selectors.as_id(org_filter) else qs.none()
        return qs


class TeamListV2View(TeamListView):
    @extend_schema(
        tags=TEAM_TAGS,
        operation_id="team_list_v2",
        summary="Teams, paginated and filtered (LiteLLM's /v2/team/list)",
        parameters=[TeamListV2Query],
        responses={200: TeamListV2Out, **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = self.query(TeamListV2Query)
        qs = self.listed(query)
        if query.get("team_id"):
            qs = qs.filter(pk=query["team_id"])
        if query.get("team_alias"):
            qs = qs.filter(team_alias__icontains=query["team_alias"])
        sort_by = query.get("sort_by") or "team_alias"
        order = f"-{sort_by}" if query["sort_order"] == "desc" else sort_by
        size, page = query["page_size"], query["page"]
        total = qs.count()
        rows = selectors.teams_with_members(qs.order_by(order, "team_id")[(page - 1) * size : page * size])
        return Response(
            {
                "teams": TeamWithKeysOut(rows.prefetch_related(KEY_PREFETCH), many=True).data,
                "total": total,
                "page": page,
                "page_size": size,
                "total_pages": page_count(total, size),
            }
        )


class TeamAvailableView(DirectoryView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="Teams offered to every user to join (ACCESSCTL_AVAILABLE_TEAMS) that the caller is not in",
        responses={200: TeamOut(many=True), **errors(401)},
    )
    def get(self, request: Request) -> Response:
        actor = request.actor
        offered = [t for t in settings.ACCESSCTL_AVAILABLE_TEAMS if t]
        qs = Team.objects.filter(pk__in=offered)
        if self.tenant.organization is not None:
            qs = qs.filter(organization=self.tenant.organization)
        if actor.user_id:
            qs = qs.exclude(memberships__user__user_id=actor.user_id)
        elif actor.key_team_id:
            qs = qs.exclude(pk=actor.key_team_id)
        teams = selectors.teams_with_members(qs.order_by("team_alias", "team_id"))
        return Response(TeamOut(teams, many=True).data)


class TeamMemberAddView(DirectoryView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="Add members (missing users are created)",
        request=TeamMemberAddInput,
        responses={200: TeamMemberAddOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(TeamMemberAddInput)
        team = self.find_team(data["team_id"])
        self.check("team:member_manage", policy.team_target(team))
        added: list[TeamMembership] = []
        with transaction.atomic():
            pending = []
            for entry in data["member"]:
                user, _ = self.member_user(entry, organization=team.organization)
                pending.append((user, entry["role"]))
            present = set(TeamMembership.objects.filter(team=team).values_list("user_id", flat=True))
            fresh = [(u, r) for u, r in pending if u.pk not in present]
            if len(pending) > 1 and not fresh:
                raise InvalidInput("All users are already in team.", param="member", type="team_member_already_in_team")
            for user, role in fresh if len(pending) > 1 else pending:
                added.append(
                    services.team_member_add(
                        actor=self.acting_user,
                        by=request.actor,
                        team=team,
                        user=user,
                        role=role,
                        max_budget_in_team=data.get("max_budget_in_team"),
                    )
                )
        memberships = TeamMembership.objects.select_related("user", "budget").filter(pk__in=[m.pk for m in added])
        users = selectors.with_memberships(User.objects.filter(pk__in=[m.user_id for m in added]))
        return Response(
            {
                **team_out(team),
                "updated_users": UserOut(users, many=True).data,
                "updated_team_memberships": TeamMembershipOut(memberships, many=True).data,
            }
        )


class TeamMemberView(DirectoryView):
    """A membership named by team and user, for `/team/member_delete` and `/team/member_update`."""

    def membership(self, data: dict[str, Any]) -> TeamMembership:
        team = self.find_team(data["team_id"])
        self.check("team:member_manage", policy.team_target(team))
        user = selectors.user_by_id(data["user_id"]) if data.get("user_id") else None
        if user is None and not data.get("user_id"):
            matches = selectors.users_by_email(data["user_email"])
            user = matches[0] if len(matches) == 1 else None
        membership = selectors.team_membership(team, user) if user is not None else None
        if membership is None:
            raise InvalidInput("User not found in team", param="user_id" if data.get("user_id") else "user_email")
        return membership


class TeamMemberDeleteView(TeamMemberView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="Remove a member (and their keys in the team)",
        request=TeamMemberRefInput,
        responses={200: TeamOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        membership = self.membership(self.body(TeamMemberRefInput))
        team = membership.team
        services.team_member_delete(actor=self.acting_user, membership=membership)
        return Response(team_out(team))


class TeamMemberUpdateView(TeamMemberView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="Change a member's role or budget in the team",
        request=TeamMemberUpdateInput,
        responses={200: TeamMemberUpdateOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(TeamMemberUpdateInput)
        membership = services.team_member_update(
            actor=self.acting_user,
            by=request.actor,
            membership=self.membership(data),
            role=data.get("role"),
            max_budget_in_team=data.get("max_budget_in_team"),
        )
        return Response(
            {
                "team_id": str(membership.team_id),
                "user_id": membership.user.user_id,
                "user_email": membership.user.user_email,
                "role": membership.role,
                "max_budget_in_team": membership.budget.max_budget if membership.budget else None,
            }
        )


class TeamPermissionsListView(DirectoryView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="What members with role `user` may do on the team's keys",
        parameters=[TeamIdQuery],
        responses={200: TeamPermissionsOut, **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        team = self.find_team(self.query(TeamIdQuery)["team_id"])
        self.check("team:permissions_read", policy.team_target(team))
        stored = team.member_permissions
        return Response(
            {
                "team_id": str(team.team_id),
                "team_member_permissions": list(stored) if stored is not None else sorted(team_member_permissions(None)),
                "all_available_permissions": list(TEAM_MEMBER_PERMISSIONS),
            }
        )


class TeamPermissionsUpdateView(DirectoryView):
    @extend_schema(
        tags=TEAM_TAGS,
        summary="Overwrite what members with role `user` may do on the team's keys",
        request=TeamPermissionsUpdateInput,
        responses={200: TeamOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(TeamPermissionsUpdateInput)
        team = self.find_team(data["team_id"])
        self.check("team:permissions_update", policy.team_target(team))
        team = services.team_permissions_update(
            actor=self.acting_user, team=team, permissions=data["team_member_permissions"]
        )
        return Response(team_out(team))
