"""LiteLLM-compatible `/team/*`, `/user/*` and `/organization/*` routes: parse, ask the policy, call the services."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch, Q
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from accessctl.litellm import BUDGET_INPUT_FIELDS, LiteLLMView, errors, page_count
from keys import selectors as key_selectors
from keys import services as key_services
from keys.api.litellm import referenced_organization, referenced_team
from keys.api.litellm_serializers import KeyOut, KeySecretOut
from keys.models import VirtualKey
from orgs import selectors, services
from orgs.models import Organization, OrganizationMembership, Team, TeamMembership, User
from orgs.roles import DEFAULT_TEAM_MEMBER_PERMISSIONS, TEAM_MEMBER_PERMISSIONS, team_member_permissions

from .litellm_serializers import (
    OrganizationIdsInput,
    OrganizationInfoQuery,
    OrganizationListQuery,
    OrganizationMemberAddInput,
    OrganizationMemberAddOut,
    OrganizationMemberRefInput,
    OrganizationMembershipOut,
    OrganizationMemberUpdateInput,
    OrganizationNewInput,
    OrganizationOut,
    OrganizationUpdateInput,
    TeamDeleteOut,
    TeamIdQuery,
    TeamIdsInput,
    TeamInfoOut,
    TeamListQuery,
    TeamListV2Out,
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
    UserDeleteOut,
    UserIdsInput,
    UserInfoOut,
    UserInfoQuery,
    UserListOut,
    UserListQuery,
    UserNewInput,
    UserNewOut,
    UserOut,
    UserUpdateInput,
    UserUpdateOut,
    UserWithKeyCountOut,
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


# --- teams ------------------------------------------------------------------------------------


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


# --- users ------------------------------------------------------------------------------------

USER_SERVICE_FIELDS = ("user_email", "user_alias", "user_role", "models", "metadata", "spend", *BUDGET_INPUT_FIELDS)


class UserNewView(DirectoryView):
    @extend_schema(
        tags=USER_TAGS,
        summary="Create a user, their memberships and (unless auto_create_key is false) their first key",
        request=UserNewInput,
        responses={200: UserNewOut, **errors(400, 401, 403, 409)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(UserNewInput)
        org_ids = [*([data["organization_id"]] if data.get("organization_id") else []), *(data.get("organizations") or [])]
        organizations = {o.pk: o for o in (referenced_organization(self.tenant, oid) for oid in org_ids)}
        if not organizations and self.tenant.organization is not None:
            organizations[self.tenant.organization.pk] = self.tenant.organization
        team_entries = list(data.get("teams") or [])
        if data.get("team_id"):
            team_entries.insert(0, {"team_id": data["team_id"], "user_role": "user"})
        teams = [(referenced_team(self.tenant, entry["team_id"]), entry) for entry in team_entries]
        key_team = teams[0][0] if data.get("team_id") else None
        first_org = next(iter(organizations.values()), None)
        key_org = key_team.organization if key_team is not None else first_org
        with transaction.atomic():
            user = services.user_create(
                actor=self.acting_user,
                by=request.actor,
                user_id=data.get("user_id") or None,
                organizations=list(organizations.values()),
                teams=[(team, entry.get("user_role") or "user", entry.get("max_budget_in_team")) for team, entry in teams],
                **{f: data[f] for f in USER_SERVICE_FIELDS if f in data and data[f] is not None},
            )
            key_fields: dict[str, Any] = {"key": None, "token": None, "key_name": None, "expires": None}
            if data.get("auto_create_key", True):
                key, raw = key_services.key_generate(
                    actor=self.acting_user,
                    by=request.actor,
                    user=user,
                    team=key_team,
                    organization=key_org,
                    key_alias=data.get("key_alias"),
                    models=data.get("models"),
                    duration=data.get("duration"),
                )
                secret = KeySecretOut(key, context={"raw": raw}).data
                key_fields = {name: secret[name] for name in ("key", "token", "key_name", "expires")}
        out = user_out(user)
        return Response(
            {**out, **key_fields, "key_alias": data.get("key_alias"), "team_id": _s(key_team.pk) if key_team else None}
        )


class UserInfoView(DirectoryView):
    def readable_user(self) -> User:
        """The user `?user_id=` names (the caller by default), if the caller may read them. Another
        user's info is refused before existence is looked at (SPEC §3)."""
        request = self.request
        user_id = self.query(UserInfoQuery).get("user_id") or request.actor.user_id
        if not user_id:
            raise InvalidInput("Pass user_id: a team service-account key has no user.", param="user_id")
        actor = request.actor
        user = selectors.user_in_context(self.tenant, user_id=user_id, user_email=None)
        if user is None and user_id != actor.user_id and not actor.reads_everything:
            # Another user's info is refused before existence is looked at (SPEC §3): 403 whether or
            # not the id exists, so user ids cannot be probed.
            raise Forbidden(
                f"key not allowed to access this user's info. user_id={user_id}, key's user_id={actor.user_id}",
                param="user_id",
            )
        if user is None:
            raise NotFound(f"User {user_id} not found", param="user_id")
        self.check("user:info", policy.user_target(user))
        return user

    @extend_schema(
        tags=USER_TAGS,
        summary="A user with their keys and teams",
        parameters=[UserInfoQuery],
        responses={200: UserInfoOut, **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        user = self.readable_user()
        keys = key_selectors.keys_in_context(self.tenant).filter(user=user).order_by("-created_at", "id")
        teams = selectors.teams_with_members(
            selectors.teams_in_context(self.tenant).filter(pk__in=user.team_memberships.values("team_id"))
        ).prefetch_related(KEY_PREFETCH)
        return Response(
            {
                "user_id": user.user_id,
                "user_info": UserOut(user).data,
                "keys": KeyOut(keys, many=True).data,
                "teams": TeamWithKeysOut(teams.order_by("team_alias", "team_id"), many=True).data,
            }
        )


class UserInfoV2View(UserInfoView):
    @extend_schema(
        tags=USER_TAGS,
        operation_id="user_info_v2",
        summary="A user row only (LiteLLM's lightweight /v2/user/info)",
        parameters=[UserInfoQuery],
        responses={200: UserOut, **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        return Response(user_out(self.readable_user()))


class UserUpdateView(DirectoryView):
    @extend_schema(
        tags=USER_TAGS,
        summary="Update a user (an admin's update of a missing user_id creates it)",
        request=UserUpdateInput,
        responses={200: UserUpdateOut, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(UserUpdateInput)
        user = selectors.user_in_context(self.tenant, user_id=data.get("user_id"), user_email=data.get("user_email"))
        if user is None:
            user = self.upsert(data)
            return Response({"user_id": user.user_id, "data": user_out(user)})
        changes = {f: data[f] for f in (*USER_SERVICE_FIELDS, "password") if f in data}
        if changes.get("user_role") is None:
            changes.pop("user_role", None)
        user = services.user_update(actor=self.acting_user, user=user, data=changes, by=request.actor)
        return Response({"user_id": user.user_id, "data": user_out(user)})

    def upsert(self, data: dict[str, Any]) -> User:
        """LiteLLM's `/user/update` creates a missing user for admins; to anyone else it is just missing."""
        if not data.get("user_id"):
            raise NotFound(f"User {data.get('user_email')} not found", param="user_email")
        organization = self.tenant.organization
        verdict = policy.can(
            self.request.actor,
            "user:create",
            policy.Target(organization_id=_s(organization.pk) if organization else None,
                          new_platform_role=data.get("user_role")),
        )
        if not verdict:
            if verdict.status == 403 and data.get("user_role"):
                raise ServiceError(verdict.message, type=verdict.type, status=verdict.status, param="user_role")
            raise NotFound(f"User {data['user_id']} not found", param="user_id")
        fields = {f: data[f] for f in USER_SERVICE_FIELDS if f in data and data[f] is not None}
        return services.user_create(
            actor=self.acting_user, by=self.request.actor, user_id=data["user_id"], password=data.get("password"),
            organizations=[organization] if organization is not None else [], **fields,
        )


class UserDeleteView(DirectoryView):
    @extend_schema(
        tags=USER_TAGS,
        summary="Delete users with their keys and memberships (all or none)",
        request=UserIdsInput,
        responses={200: UserDeleteOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        user_ids = self.body(UserIdsInput)["user_ids"]
        users = [self.find_user(user_id=user_id) for user_id in dict.fromkeys(user_ids)]
        with transaction.atomic():  # all or none: a refusal rolls back the users deleted before it
            for user in users:
                services.user_delete(actor=self.acting_user, user=user, by=request.actor)
        return Response({"deleted_users": list(dict.fromkeys(user_ids))})


class UserListView(DirectoryView):
    @extend_schema(
        tags=USER_TAGS,
        summary="Users, paginated (admins: all; org admins: their organizations' members)",
        parameters=[UserListQuery],
        responses={200: UserListOut, **errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        query = self.query(UserListQuery)
        self.check("user:list")
        actor = request.actor
        wanted = query.get("organization_ids")
        if actor.reads_everything:
            org_ids = [selectors.as_id(o) for o in wanted] if wanted is not None else None
        else:
            # An org admin lists the members of the organizations they administer.
            admin_orgs = actor.admin_org_ids
            org_ids = [o for o in (wanted or admin_orgs) if o in admin_orgs]
        qs = selectors.user_list(self.tenant, organization_ids=org_ids, filters=query)
        size, page = query["page_size"], query["page"]
        total = qs.count()
        rows = qs[(page - 1) * size : page * size]
        return Response(
            {
                "users": UserWithKeyCountOut(rows, many=True).data,
                "total": total,
                "page": page,
                "page_size": size,
                "total_pages": page_count(total, size),
            }
        )


# --- organizations ----------------------------------------------------------------------------


class OrganizationNewView(DirectoryView):
    @extend_schema(
        tags=ORG_TAGS,
        summary="Create an organization with its budget row (proxy admins)",
        request=OrganizationNewInput,
        responses={200: OrganizationOut, **errors(400, 401, 409)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(OrganizationNewInput)
        self.check("organization:create")
        organization = services.organization_create(
            actor=self.acting_user,
            organization_alias=data.pop("organization_alias"),
            organization_id=data.pop("organization_id", None) or None,
            **{k: v for k, v in data.items() if v is not None},
        )
        return Response(organization_out(organization))


class OrganizationUpdateView(DirectoryView):
    http_method_names = ["patch", "options"]

    @extend_schema(
        tags=ORG_TAGS,
        summary="Update an organization (budget fields land on its budget row)",
        request=OrganizationUpdateInput,
        responses={200: OrganizationOut, **errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request) -> Response:
        data = self.body(OrganizationUpdateInput)
        organization = self.find_organization(data.pop("organization_id"))
        organization = services.organization_update(
            actor=self.acting_user, organization=organization, data=data, by=request.actor
        )
        return Response(organization_out(organization))


class OrganizationDeleteView(DirectoryView):
    http_method_names = ["delete", "options"]

    @extend_schema(
        tags=ORG_TAGS,
        summary="Soft-delete organizations (proxy admins): their keys stop at once",
        request=OrganizationIdsInput,
        responses={200: OrganizationOut(many=True), **errors(400, 401, 404)},
    )
    def delete(self, request: Request) -> Response:
        org_ids = list(dict.fromkeys(self.body(OrganizationIdsInput)["organization_ids"]))
        organizations = [self.find_organization(o, message=f"Organization={o} not found") for o in org_ids]
        with transaction.atomic():  # all or none: a refusal rolls back the organizations deleted before it
            for organization in organizations:
                services.organization_delete(actor=self.acting_user, organization=organization, by=request.actor)
        return Response([organization_out(o) for o in organizations])


class OrganizationInfoView(DirectoryView):
    @extend_schema(
        tags=ORG_TAGS,
        summary="An organization with its budget, members and teams",
        parameters=[OrganizationInfoQuery],
        responses={200: OrganizationOut, **errors(400, 401, 404)},
    )
    def get(self, request: Request) -> Response:
        organization = self.find_organization(self.query(OrganizationInfoQuery)["organization_id"])
        self.check("organization:info", policy.organization_target(organization))
        return Response(organization_out(organization))


class OrganizationListView(DirectoryView):
    @extend_schema(
        tags=ORG_TAGS,
        summary="Organizations (admins: all; others: those they belong to)",
        parameters=[OrganizationListQuery],
        responses={200: OrganizationOut(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = self.query(OrganizationListQuery)
        self.check("organization:list")
        qs = selectors.organizations_in_context(self.tenant)
        if query.get("org_id"):
            uid = selectors.as_id(query["org_id"])
            qs = qs.filter(pk=uid) if uid else qs.none()
        if query.get("org_alias"):
            qs = qs.filter(organization_alias__icontains=query["org_alias"])
        rows = selectors.organizations_with_detail(qs.order_by("organization_alias", "organization_id"))
        return Response(OrganizationOut(rows, many=True).data)


class OrganizationMemberAddView(DirectoryView):
    @extend_schema(
        tags=ORG_TAGS,
        summary="Add members (missing users are created)",
        request=OrganizationMemberAddInput,
        responses={200: OrganizationMemberAddOut, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(OrganizationMemberAddInput)
        organization = self.find_organization(data["organization_id"])
        self.check("organization:member_manage", policy.organization_target(organization))
        added: list[OrganizationMembership] = []
        with transaction.atomic():
            pending = []
            for entry in data["member"]:
                user, created = self.member_user(entry, organization=None)
                pending.append((user, entry["role"]))
            present = set(
                OrganizationMembership.objects.filter(organization=organization).values_list("user_id", flat=True)
            )
            fresh = [(u, r) for u, r in pending if u.pk not in present]
            if not fresh:
                raise Conflict("All users are already members of this organization.", param="member")
            for user, role in fresh:
                added.append(
                    services.organization_member_add(
                        actor=self.acting_user,
                        by=request.actor,
                        organization=organization,
                        user=user,
                        user_role=role,
                        max_budget_in_organization=data.get("max_budget_in_organization"),
                    )
                )
        memberships = OrganizationMembership.objects.select_related("user", "budget").filter(
            pk__in=[m.pk for m in added]
        )
        users = selectors.with_memberships(User.objects.filter(pk__in=[m.user_id for m in added]))
        return Response(
            {
                "organization_id": str(organization.pk),
                "updated_users": UserOut(users, many=True).data,
                "updated_organization_memberships": OrganizationMembershipOut(memberships, many=True).data,
            }
        )


class OrganizationMemberView(DirectoryView):
    """A membership named by organization and user, for `member_update` and `member_delete`."""

    def membership(self, data: dict[str, Any]) -> OrganizationMembership:
        organization = self.find_organization(data["organization_id"])
        self.check("organization:member_manage", policy.organization_target(organization))
        user = selectors.user_by_id(data["user_id"]) if data.get("user_id") else None
        if user is None and not data.get("user_id"):
            matches = selectors.users_by_email(data["user_email"])
            user = matches[0] if len(matches) == 1 else None
        membership = selectors.organization_membership(organization, user) if user is not None else None
        if membership is None:
            raise NotFound(
                "User is not a member of this organization.", param="user_id" if data.get("user_id") else "user_email"
            )
        return membership


class OrganizationMemberUpdateView(OrganizationMemberView):
    http_method_names = ["patch", "options"]

    @extend_schema(
        tags=ORG_TAGS,
        summary="Change a member's role or budget in the organization",
        request=OrganizationMemberUpdateInput,
        responses={200: OrganizationMembershipOut, **errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request) -> Response:
        data = self.body(OrganizationMemberUpdateInput)
        membership = services.organization_member_update(
            actor=self.acting_user,
            by=request.actor,
            membership=self.membership(data),
            user_role=data.get("role"),
            max_budget_in_organization=data.get("max_budget_in_organization"),
        )
        return Response(OrganizationMembershipOut(membership).data)


class OrganizationMemberDeleteView(OrganizationMemberView):
    http_method_names = ["delete", "options"]

    @extend_schema(
        tags=ORG_TAGS,
        summary="Remove a member: their rights in the organization end at once",
        request=OrganizationMemberRefInput,
        responses={200: OrganizationMembershipOut, **errors(400, 401, 403, 404)},
    )
    def delete(self, request: Request) -> Response:
        membership = self.membership(self.body(OrganizationMemberRefInput))
        row = OrganizationMembershipOut(membership).data
        services.organization_member_delete(actor=self.acting_user, membership=membership)
        return Response(row)
