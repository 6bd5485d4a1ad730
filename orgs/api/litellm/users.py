"""LiteLLM's `/user/*` routes: parse, ask the policy, call the services."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import Forbidden, InvalidInput, NotFound, ServiceError
from accessctl.litellm import BUDGET_INPUT_FIELDS, errors, page_count
from keys import selectors as key_selectors
from keys import services as key_services
from keys.api.litellm import referenced_organization, referenced_team
from keys.api.litellm_serializers import KeyOut, KeySecretOut
from orgs import selectors, services
from orgs.models import User

from ..litellm_serializers import (
    TeamWithKeysOut,
)
from ..litellm_user_serializers import (
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
from .common import (
    KEY_PREFETCH,
    USER_TAGS,
    DirectoryView,
    _s,
    user_out,
)

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
