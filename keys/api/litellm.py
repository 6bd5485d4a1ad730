"""LiteLLM-compatible `/key/*` routes: parse, ask the policy, call the key services, render."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import Forbidden, InvalidInput, NotFound
from accessctl.litellm import BUDGET_INPUT_FIELDS, LiteLLMView, errors, page_count
from accessctl.tenancy import TenantContext
from keys import selectors, services
from keys.crypto import mask, token_for
from keys.models import VirtualKey
from keys.pagination import page_slice
from orgs import selectors as org_selectors
from orgs.models import Organization, Team

from . import rotation
from .litellm_serializers import (
    KeyDeleteInput,
    KeyDeleteOut,
    KeyGenerateInput,
    KeyHealthOut,
    KeyInfoOut,
    KeyInfoQuery,
    KeyInfoRowOut,
    KeyListOut,
    KeyListQuery,
    KeyOut,
    KeyRefInput,
    KeyRegenerateInput,
    KeySecretOut,
    KeyUpdateInput,
    KeyUpdateOut,
)

TAGS = ["LiteLLM: keys"]
IDEMPOTENCY_PARAMETER = rotation.IDEMPOTENCY_PARAMETER
# Fields whose change raises what a key may spend: only an admin of the key may touch them.
BUDGET_CHANGE_FIELDS = (*BUDGET_INPUT_FIELDS, "spend")
SERVICE_FIELDS = (
    "key_alias", "models", "metadata", "blocked", "auto_rotate", "rotation_interval", "key_type", "allowed_routes",
    *BUDGET_CHANGE_FIELDS,
)


def shown(value: str) -> str:
    """How a key the caller passed may appear in a message: masked if it is a secret."""
    return mask(value) if value.startswith("sk-") else value


def echoed(passed: str, key: VirtualKey) -> str:
    """How a key the caller passed is answered back: a secret as the key's token (its hash), never raw."""
    return key.token if passed.startswith("sk-") else passed


def referenced_team(tenant: TenantContext, team_id: str) -> Team:
    """A team named in a body; missing and foreign teams answer the same 400 (LiteLLM's)."""
    team = org_selectors.team_in_context(tenant, team_id)
    if team is None:
        raise InvalidInput(
            f"Team not found for team_id={team_id}. Non-admin users cannot create keys for non-existent teams.",
            param="team_id",
        )
    return team


def referenced_organization(tenant: TenantContext, organization_id: str) -> Organization:
    organization = org_selectors.organization_in_context(tenant, organization_id)
    if organization is None:
        raise InvalidInput(f"Organization not found for organization_id={organization_id}.", param="organization_id")
    return organization



class KeyView(LiteLLMView):
    """Helpers shared by the key routes."""

    def find_key(
        self, value: str, *, message: str = "Key not found.", refusal: str = "You are not allowed to manage this key."
    ) -> VirtualKey:
        """The key the caller passed. On LiteLLM's routes a key that exists but lies outside the caller's
        reach is refused (403, as LiteLLM's clients expect); only an unknown key is 404 (SPEC §3). A key is
        named by its secret or its SHA-256, so answering 403 reveals nothing a caller could guess."""
        key = selectors.key_in_context(self.tenant, value)
        if key is None:
            if selectors.key_exists(value):
                raise Forbidden(refusal, param="key")
            raise NotFound(message, param="key")
        return key

    def update_data(self, key: VirtualKey, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Translate a `/key/update` (or `/key/regenerate`) body into the key service's data, and the id of
        an owner to create; the service authorizes every field (`policy.FIELD_ACTIONS`)."""
        current_owner = key.user.user_id if key.user_id else None
        changes: dict[str, Any] = {f: data[f] for f in SERVICE_FIELDS if f in data}
        new_user_id = None
        if "blocked" in data:
            changes["blocked"] = bool(data["blocked"])  # an explicit null unblocks, so it is checked like false
        if "access_group_ids" in data:
            changes["access_group_ids"] = data["access_group_ids"] or []
        if "organization_id" in data and (data["organization_id"] or None) not in (None, _s(key.organization_id)):
            raise InvalidInput("A key's organization follows its team; it cannot be changed.", param="organization_id")
        if "user_id" in data and (data["user_id"] or None) != current_owner:
            owner = org_selectors.user_by_id(data["user_id"]) if data["user_id"] else None
            if data["user_id"] and owner is None:
                new_user_id = data["user_id"]
            else:
                changes["user"] = owner
        if "team_id" in data and (data["team_id"] or None) != _s(key.team_id):
            changes["team"] = referenced_team(self.tenant, data["team_id"]) if data["team_id"] else None
        if "duration" in data:
            changes["duration"] = data["duration"]
        return changes, new_user_id


def _s(value: Any) -> str | None:
    if isinstance(value, Organization):
        return str(value.pk)
    return str(value) if value is not None else None


def key_out(key: VirtualKey) -> dict[str, Any]:
    return KeyOut(key).data


def secret_out(key: VirtualKey, raw: str, **extra: Any) -> dict[str, Any]:
    return {**KeySecretOut(key, context={"raw": raw}).data, **extra}


class KeyGenerateView(KeyView):
    @extend_schema(
        tags=TAGS,
        summary="Create a virtual key",
        request=KeyGenerateInput,
        responses={200: KeySecretOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(KeyGenerateInput)
        actor = request.actor
        team = referenced_team(self.tenant, data["team_id"]) if data.get("team_id") else None
        if team is not None:
            organization = team.organization
        elif data.get("organization_id"):
            organization = referenced_organization(self.tenant, data["organization_id"])
        else:
            organization = self.tenant.organization
        owner_id = data.get("user_id") or None
        if owner_id is None and not actor.is_master and not (team is not None and actor.is_proxy_admin):
            # LiteLLM: a key belongs to its creator unless an admin mints a team service-account key. The
            # master key's keys belong to nobody: they never inherit its identity (SPEC §2).
            owner_id = actor.user_id
        owner = org_selectors.user_by_id(owner_id) if owner_id else None
        budget = {f: data[f] for f in BUDGET_CHANGE_FIELDS if data.get(f) is not None}
        key, raw = services.key_generate(
            actor=self.acting_user,
            by=actor,
            user=owner,
            new_user_id=owner_id if owner_id and owner is None else None,
            team=team,
            organization=organization,
            key_alias=data.get("key_alias"),
            models=data.get("models"),
            access_group_ids=data.get("access_group_ids"),
            duration=data.get("duration"),
            metadata=data.get("metadata"),
            blocked=bool(data.get("blocked")),
            raw_key=data.get("key"),
            auto_rotate=bool(data.get("auto_rotate")),
            rotation_interval=data.get("rotation_interval"),
            key_type=data.get("key_type"),
            allowed_routes=data.get("allowed_routes"),
            **budget,
        )
        return Response(secret_out(key, raw, duration=data.get("duration")))


class KeyUpdateView(KeyView):
    @extend_schema(
        tags=TAGS,
        summary="Update a key (only the fields sent; an explicit null clears)",
        request=KeyUpdateInput,
        responses={200: KeyUpdateOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(KeyUpdateInput)
        passed = data.pop("key", None)
        if passed:
            key = self.find_key(passed)
        else:
            passed = data.pop("key_alias")
            key = selectors.key_by_alias_in_context(self.tenant, passed)
            if key is None:
                raise NotFound("Key not found.", param="key_alias")
        changes, new_user_id = self.update_data(key, data)
        key = services.key_update(actor=self.acting_user, key=key, data=changes, by=request.actor,
                                  new_user_id=new_user_id)
        row = key_out(selectors.key_in_context(self.tenant, key.token) or key)
        written = {name: row[name] for name in data if name in row}
        if "metadata" in data:
            written["metadata"] = data["metadata"]  # clients expect it echoed as sent
        if "duration" in data:
            written["duration"], written["expires"] = data["duration"], row["expires"]
        return Response({"key": echoed(passed, key), **written})


class KeyDeleteView(KeyView):
    @extend_schema(
        tags=TAGS,
        summary="Delete keys (all or none)",
        request=KeyDeleteInput,
        responses={200: KeyDeleteOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(KeyDeleteInput)
        by_alias = not data.get("keys")
        values = data.get("key_aliases") if by_alias else data["keys"]
        found = selectors.keys_by_values(self.tenant, values, aliases=by_alias)
        param = "key_aliases" if by_alias else "keys"
        missing = [v for v in values if v not in found]
        if not by_alias and missing and selectors.keys_exist(missing):
            # Someone else's key (SPEC §3: 403 on LiteLLM's routes); nothing is deleted.
            raise Forbidden("You are not authorized to delete this key", param="keys")
        if not found:
            raise NotFound("No keys found", param=param)
        if missing:
            raise NotFound(f"Keys not found: {', '.join(shown(v) for v in missing)}", param="key_aliases" if by_alias else "keys")
        # All or none: the first refusal rolls back the keys deleted before it.
        with transaction.atomic():
            for key in {k.pk: k for k in found.values()}.values():
                services.key_delete(actor=self.acting_user, key=key, by=request.actor)
        return Response({"deleted_keys": [echoed(value, found[value]) for value in values]})


class KeyRegenerateView(KeyView):
    @extend_schema(
        tags=TAGS,
        summary="Give a key a new secret (the old one stops at once, or after `grace_period`)",
        description="Of concurrent rotations from one secret exactly one wins; the others get 409 "
        "`key_already_rotated`. A retry with the same `Idempotency-Key` header replays the first outcome "
        "without rotating again: `key` is null (a secret is never shown twice), `idempotent_replay` is true.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=KeyRegenerateInput,
        responses={200: KeySecretOut, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request: Request, key: str | None = None) -> Response:
        data = self.body(KeyRegenerateInput)
        passed = key or data.pop("key", None)
        data.pop("key", None)
        if not passed:
            raise InvalidInput("No key passed in.", param="key")
        idem = rotation.idempotency_key(request)
        row = rotation.key_to_rotate(self.tenant, passed, idem, message=f"Key {shown(passed)} not found.")
        new_key = data.pop("new_key", None)
        grace_period = data.pop("grace_period", None)
        data.pop("new_master_key", None)
        changes, new_user_id = self.update_data(row, data)
        if new_user_id is not None:
            raise InvalidInput(f"User {new_user_id} not found.", param="user_id")
        result = services.key_regenerate(
            actor=self.acting_user,
            key=row,
            new_raw_key=new_key,
            data=changes or None,
            grace_period=grace_period,
            expected_token=token_for(passed),
            idempotency_key=idem,
            by=request.actor,
        )
        row = selectors.key_in_context(self.tenant, result.key.token) or result.key
        body = secret_out(row, result.raw, **rotation.rotation_fields(result))
        return rotation.mark_replay(Response(body), result)


class KeyInfoView(KeyView):
    @extend_schema(
        tags=TAGS,
        summary="One key's row and status",
        parameters=[KeyInfoQuery],
        responses={200: KeyInfoOut, **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        passed = self.query(KeyInfoQuery).get("key")
        if not passed:
            own = getattr(request.auth, "key", None)
            if own is None:
                raise InvalidInput("Pass `key`: the master key is not a virtual key.", param="key")
            passed = own.token
        # Not found (or outside the tenant) is answered before permission, as LiteLLM does.
        key = self.find_key(
            passed,
            message="Key not found in database",
            refusal=f"You are not allowed to access this key's info. Your role={request.actor.platform_role}",
        )
        self.check("key:info", policy.key_target(key))
        return Response({"key": echoed(passed, key), "info": KeyInfoRowOut(key).data})


class KeyListView(KeyView):
    @extend_schema(
        tags=TAGS,
        summary="Keys visible to the caller, paginated",
        parameters=[KeyListQuery],
        responses={200: KeyListOut, **errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        query = self.query(KeyListQuery)
        self.check("key:list")
        qs = selectors.key_list(self.tenant, visible=self.visible(query["include_team_keys"]), filters=query)
        size, page = query["size"], query["page"]
        # An index seek from the previous page's boundary and a bounded or estimated total: no OFFSET scan,
        # no COUNT(*) over the whole table (keys/pagination.py).
        window = page_slice(qs, page=page, size=size)
        total, rows = window.total, window.rows
        # One serializer for the page (its fields are built once, not once per key).
        keys = KeyOut(rows, many=True).data if query["return_full_object"] else [k.token for k in rows]
        return Response(
            {"keys": keys, "total_count": total, "current_page": page, "total_pages": page_count(total, size)}
        )

    def visible(self, include_team_keys: bool) -> Q | None:
        """Which of the context's keys the caller may list (None: all of them), as the policy says:
        their own, their organizations' if org admin, and with `include_team_keys` (always, for a
        service-account key) the keys of teams where they may call `/key/list`."""
        actor = self.request.actor
        if actor.reads_everything:
            return None
        condition = Q(pk__in=[])
        if actor.user_id:
            condition |= Q(user__user_id=actor.user_id)
        if actor.is_service_account and actor.key_token:
            condition |= Q(token=actor.key_token)  # a key without a user lists itself (SPEC §2)
        org_ids = [o for o in actor.org_roles if policy.can(actor, "key:list", policy.Target(organization_id=o))]
        if org_ids:
            condition |= Q(organization__in=org_ids)
        team_ids = set(actor.team_roles) | ({actor.key_team_id} if actor.key_team_id else set())
        if team_ids and (include_team_keys or actor.is_service_account):
            teams = Team.objects.filter(pk__in=team_ids).only("team_id", "organization_id", "member_permissions")
            listable = [t.pk for t in teams if policy.can(actor, "key:list", policy.team_target(t))]
            condition |= Q(team__in=listable)
        return condition


class KeyBlockView(KeyView):
    blocked = True

    @extend_schema(
        tags=TAGS,
        summary="Block a key: refused from the next request on",
        request=KeyRefInput,
        responses={200: KeyOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        key = self.find_key(self.body(KeyRefInput)["key"])
        service = services.key_block if self.blocked else services.key_unblock
        key = service(actor=self.acting_user, key=key, by=request.actor)
        return Response(key_out(selectors.key_in_context(self.tenant, key.token) or key))


class KeyUnblockView(KeyBlockView):
    blocked = False

    @extend_schema(
        tags=TAGS,
        summary="Unblock a key",
        request=KeyRefInput,
        responses={200: KeyOut, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class KeyHealthView(KeyView):
    @extend_schema(
        tags=TAGS, summary="Health of the calling key", request=None, responses={200: KeyHealthOut, **errors(401)}
    )
    def post(self, request: Request) -> Response:
        own = getattr(request.auth, "key", None)
        self.check("key:health", policy.key_target(own) if own is not None else None)
        return Response({"key": "healthy", "logging_callbacks": None})


class KeyRegeneratePathView(KeyRegenerateView):
    """`/key/{key}/regenerate`: the key in the path."""

    @extend_schema(
        tags=TAGS,
        operation_id="key_regenerate_by_path",
        summary="Give a key (named in the path) a new secret",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=KeyRegenerateInput,
        responses={200: KeySecretOut, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request: Request, key: str | None = None) -> Response:
        return super().post(request, key=key)
