"""REST views (`/api/v1/keys/`) of virtual keys: list, create (raw key shown once), read, change, delete,
block, unblock, regenerate. A key outside the caller's context answers 404, like a missing one."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import NotFound
from accessctl.rest import errors, rendered
from keys import selectors, services
from keys.crypto import token_for
from keys.models import VirtualKey
from keys.pagination import KeysetPagination
from orgs import selectors as org_selectors
from orgs.api.views import OrgsView
from orgs.models import Organization, Team, User

from . import rotation
from .filters import KeyFilter
from .serializers import (
    KEY_BUDGET_FIELDS,
    KeyCreateSerializer,
    KeyRegenerateSerializer,
    KeyRotatedSerializer,
    KeySecretSerializer,
    KeySerializer,
    KeyUpdateSerializer,
)

TAGS = ["keys"]
READ_ERRORS = errors(400, 401, 403, 404)
WRITE_ERRORS = errors(400, 401, 403, 404, 409)
# Body fields the key service takes as they are.
PLAIN_FIELDS = (
    "key_alias", "models", "metadata", "blocked", "duration", "auto_rotate", "rotation_interval", "key_type",
    "allowed_routes", *KEY_BUDGET_FIELDS,
)



class KeysView(OrgsView):
    model = VirtualKey

    def key(self, token: str) -> VirtualKey:
        key = selectors.keys_in_context(self.tenant).filter(token=token_for(token)).first()
        if key is None:
            raise NotFound("Key not found.", param="token")
        return key

    def owner(self, owner_id: str | None, *, team: Team | None, organization: Organization | None) -> User | None:
        """The user a body names as a key's owner. A missing one answers 404 only after the policy has
        refused or allowed the caller to own a key for that id, so user ids cannot be probed."""
        if not owner_id:
            return None
        owner = org_selectors.user_by_id(owner_id)
        if owner is None:
            self.check("key:generate", policy.new_key_target(
                owner_user_id=owner_id, team=team,
                organization_id=organization.pk if organization is not None and team is None else None,
            ))
            raise NotFound(f"User {owner_id} not found.", param="user_id")
        return owner


class KeyListView(KeysView):
    filterset_class = KeyFilter
    pagination_class = KeysetPagination  # cursor over (created_at, id): index-backed at any depth

    def visible_rows(self) -> QuerySet:
        return selectors.keys_visible(self.tenant)

    @extend_schema(
        tags=TAGS, summary="Keys the caller may list in the context",
        responses={200: KeySerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        self.check("key:list")
        return self.list_response(KeySerializer)

    @extend_schema(
        tags=TAGS,
        summary="Create a key: yours, a team's, or (admins) someone else's; the raw `key` is shown once",
        request=KeyCreateSerializer, responses={201: KeySecretSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = self.body(KeyCreateSerializer)
        team = self.team(data["team_id"]) if data.get("team_id") else None
        organization = team.organization if team is not None else self.tenant.organization
        # Non-admins' keys are their own unless they say otherwise; an admin's are nobody's (LiteLLM's default).
        owner_id = data.get("user_id") if "user_id" in data or request.actor.is_proxy_admin else request.actor.user_id
        owner = self.owner(owner_id, team=team, organization=organization)
        fields = {name: data[name] for name in PLAIN_FIELDS if name in data and name != "spend"}
        key, raw = services.key_generate(
            actor=self.acting_user,
            by=request.actor,
            user=owner,
            team=team,
            organization=organization if team is None else None,
            access_group_ids=[str(g) for g in data.get("access_group_ids", [])],
            raw_key=data.get("key"),
            **fields,
        )
        key.raw_key = raw
        return rendered(KeySecretSerializer, key, status=201)


class KeyDetailView(KeysView):
    @extend_schema(tags=TAGS, summary="One key (by its token)", responses={200: KeySerializer, **READ_ERRORS})
    def get(self, request: Request, token: str) -> Response:
        key = self.key(token)
        self.check("key:info", policy.key_target(key))
        return rendered(KeySerializer, key)

    @extend_schema(
        tags=TAGS,
        summary="Change a key (budget, owner, team and access groups: admins of the key)",
        request=KeyUpdateSerializer, responses={200: KeySerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, token: str) -> Response:
        key = self.key(token)
        sent = self.body(KeyUpdateSerializer, partial=True)
        changes: dict[str, Any] = {name: sent[name] for name in PLAIN_FIELDS if name in sent}
        if "access_group_ids" in sent:
            changes["access_group_ids"] = [str(g) for g in sent["access_group_ids"]]
        if "team_id" in sent:
            team_id = str(sent["team_id"]) if sent["team_id"] else None
            if team_id != (str(key.team_id) if key.team_id else None):
                changes["team"] = self.team(team_id) if team_id else None
        if "user_id" in sent and sent["user_id"] != (key.user.user_id if key.user_id else None):
            team = changes.get("team", key.team)
            organization = team.organization if team is not None else key.organization
            changes["user"] = self.owner(sent["user_id"], team=team, organization=organization)
        key = services.key_update(actor=self.acting_user, key=key, data=changes, by=request.actor)
        return rendered(KeySerializer, self.key(key.token))

    @extend_schema(tags=TAGS, summary="Delete a key", responses={204: None, **READ_ERRORS})
    def delete(self, request: Request, token: str) -> Response:
        key = self.key(token)
        services.key_delete(actor=self.acting_user, key=key, by=request.actor)
        return Response(status=204)


class KeyBlockView(KeysView):
    blocked = True

    @extend_schema(tags=TAGS, summary="Block a key: refused from the next request on",
                   request=None, responses={200: KeySerializer, **READ_ERRORS})
    def post(self, request: Request, token: str) -> Response:
        key = self.key(token)
        service = services.key_block if self.blocked else services.key_unblock
        return rendered(KeySerializer, self.key(service(actor=self.acting_user, key=key, by=request.actor).token))


class KeyUnblockView(KeyBlockView):
    blocked = False

    @extend_schema(tags=TAGS, summary="Unblock a key", request=None, responses={200: KeySerializer, **READ_ERRORS})
    def post(self, request: Request, token: str) -> Response:
        return super().post(request, token)


class KeyRegenerateView(KeysView):
    @extend_schema(
        tags=TAGS,
        summary="Give a key a new secret (shown once); the old one is refused at once, or after `grace_period`",
        description="Of concurrent rotations from one secret exactly one wins; the others get 409 "
        "`key_already_rotated`. A retry with the same `Idempotency-Key` header replays the first outcome "
        "without rotating again: `key` is null (a secret is never shown twice), `idempotent_replay` is true.",
        parameters=[rotation.IDEMPOTENCY_PARAMETER],
        request=KeyRegenerateSerializer, responses={200: KeyRotatedSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, token: str) -> Response:
        idem = rotation.idempotency_key(request)
        key = rotation.key_to_rotate(self.tenant, token, idem)
        data = self.body(KeyRegenerateSerializer) if request.data else {}
        result = services.key_regenerate(
            actor=self.acting_user,
            key=key,
            new_raw_key=data.get("new_key"),
            grace_period=data.get("grace_period"),
            expected_token=token_for(token),
            idempotency_key=idem,
            by=request.actor,
        )
        key = self.key(result.key.token)
        key.raw_key = result.raw
        for name, value in rotation.rotation_fields(result).items():
            setattr(key, name, value)
        return rotation.mark_replay(rendered(KeyRotatedSerializer, key), result)
