"""LiteLLM's unified access-group routes (`/v1/access_group`, `/v1/unified_access_group`).

They keep FastAPI's `{"detail": ...}` error shape (authentication failures excepted: LiteLLM's auth
layer answers those in the SPEC §7 shape on every route), 201 on create and 204 on delete.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions as drf
from rest_framework.request import Request
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import NotFound, api_exception_handler
from accessctl.litellm import LiteLLMView, errors
from accessgroups import selectors, services
from accessgroups.models import AccessGroup
from keys.api.litellm import referenced_organization

from .litellm_serializers import AccessGroupCreateInput, AccessGroupOut, AccessGroupUpdateInput

TAGS = ["LiteLLM: access groups"]


def detail_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Render errors as FastAPI does: `{"detail": "..."}`; a 403 as `{"detail": {"error": "..."}}`; a body
    that fails validation as `{"detail": [{"loc": ["body", field], "msg", "type"}]}` (400, not 422)."""
    response = api_exception_handler(exc, context)
    if response is None or response.status_code == 401:
        return response
    error = response.data["error"]
    if isinstance(exc, drf.ValidationError):
        location = ["body", *(error["param"] or "").split(".")] if error["param"] else ["body"]
        detail: Any = [{"loc": location, "msg": error["message"], "type": "value_error"}]
    elif response.status_code == 403:
        detail = {"error": error["message"]}
    else:
        detail = error["message"]
    response.data = {"detail": detail}
    return response


def group_out(group: AccessGroup) -> dict[str, Any]:
    return AccessGroupOut(group, context={"names": selectors.names_for([group])}).data


class AccessGroupView(LiteLLMView):
    def get_exception_handler(self):
        return detail_exception_handler

    def find_group(self, access_group_id: str) -> AccessGroup:
        group = selectors.access_group_in_context(self.tenant, access_group_id)
        if group is None:
            raise NotFound(f"Access group '{access_group_id}' not found", param="access_group_id")
        return group


class AccessGroupListView(AccessGroupView):
    @extend_schema(
        tags=TAGS,
        summary="Access groups, newest first (admins, viewers, org admins)",
        responses={200: AccessGroupOut(many=True), **errors(401, 403, detail=True)},
    )
    def get(self, request: Request) -> Response:
        self.check("access_group:read", policy.Target(is_global=True))
        groups = list(selectors.access_groups_visible(self.tenant).order_by("-created_at", "access_group_id"))
        return Response(AccessGroupOut(groups, many=True, context={"names": selectors.names_for(groups)}).data)

    @extend_schema(
        tags=TAGS,
        summary="Create an access group (global: proxy admins; an organization's: its admins)",
        request=AccessGroupCreateInput,
        responses={201: AccessGroupOut, **errors(400, 401, 403, 409, detail=True)},
    )
    def post(self, request: Request) -> Response:
        data = self.body(AccessGroupCreateInput)
        organization_id = data.pop("organization_id", None)
        organization = (
            referenced_organization(self.tenant, organization_id) if organization_id else self.tenant.organization
        )
        group = services.access_group_create(
            actor=self.acting_user,
            by=request.actor,
            organization=organization,
            **{k: v for k, v in data.items() if v is not None},
        )
        return Response(group_out(group), status=201)


class AccessGroupDetailView(AccessGroupView):
    @extend_schema(
        tags=TAGS, summary="One access group", responses={200: AccessGroupOut, **errors(401, 403, 404, detail=True)}
    )
    def get(self, request: Request, access_group_id: str) -> Response:
        group = self.find_group(access_group_id)
        self.check("access_group:read", policy.access_group_target(group))
        return Response(group_out(group))

    @extend_schema(
        tags=TAGS,
        summary="Update an access group (only the fields sent)",
        request=AccessGroupUpdateInput,
        responses={200: AccessGroupOut, **errors(400, 401, 403, 404, 409, detail=True)},
    )
    def put(self, request: Request, access_group_id: str) -> Response:
        data = self.body(AccessGroupUpdateInput)
        group = self.find_group(access_group_id)
        group = services.access_group_update(actor=self.acting_user, group=group, data=data, by=request.actor)
        return Response(group_out(group))

    @extend_schema(
        tags=TAGS,
        summary="Delete an access group; it is detached from every team and key",
        request=None,
        responses={204: None, **errors(401, 403, 404, detail=True)},
    )
    def delete(self, request: Request, access_group_id: str) -> Response:
        group = self.find_group(access_group_id)
        services.access_group_delete(actor=self.acting_user, group=group, by=request.actor)
        return Response(status=204)
