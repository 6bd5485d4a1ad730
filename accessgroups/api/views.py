"""REST views (`/api/v1/`) of access groups and the catalog.

Access groups are global (platform admins manage them) or owned by one organization (its org admins
manage them, never beyond its models); another organization's group answers 404. The catalog is
read by every authenticated caller and written by platform admins.
"""
from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import Conflict, NotFound
from accessctl.rest import errors, rendered
from accessgroups import selectors, services
from accessgroups.models import AccessGroup, Agent, CatalogModel, KeyAccessGroup, MCPServer
from keys import selectors as key_selectors
from keys.api.serializers import KeySerializer
from orgs.api.views import OrgsView

from .filters import AccessGroupFilter, AgentFilter, CatalogModelFilter, MCPServerFilter
from .serializers import (
    AccessGroupCreateSerializer,
    AccessGroupSerializer,
    AccessGroupUpdateSerializer,
    AgentCreateSerializer,
    AgentSerializer,
    AgentUpdateSerializer,
    CatalogModelCreateSerializer,
    CatalogModelSerializer,
    CatalogModelUpdateSerializer,
    MCPServerCreateSerializer,
    MCPServerSerializer,
    MCPServerUpdateSerializer,
)

READ_ERRORS = errors(400, 401, 403, 404)
WRITE_ERRORS = errors(400, 401, 403, 404, 409)


class AccessGroupsView(OrgsView):
    model = AccessGroup

    def group(self, access_group_id: Any) -> AccessGroup:
        group = selectors.access_group_in_context(self.tenant, access_group_id)
        if group is None:
            raise NotFound(f"Access group '{access_group_id}' not found", param="access_group_id")
        return group


class AccessGroupListView(AccessGroupsView):
    filterset_class = AccessGroupFilter

    def visible_rows(self) -> QuerySet:
        return selectors.access_groups_visible(self.tenant)

    @extend_schema(
        tags=["access groups"], summary="Access groups: global ones and the context's organization's",
        responses={200: AccessGroupSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        self.check("access_group:read", policy.Target())
        return self.list_response(AccessGroupSerializer)

    @extend_schema(
        tags=["access groups"],
        summary="Create an access group in the context's organization (org admins) or a global one (proxy admins)",
        request=AccessGroupCreateSerializer, responses={201: AccessGroupSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = self.body(AccessGroupCreateSerializer)
        organization = self.organization_for_create(data.pop("organization_id", None))
        data["assigned_team_ids"] = [str(t) for t in data.get("assigned_team_ids", [])]
        data["description"] = data.get("description") or ""
        group = services.access_group_create(actor=self.acting_user, by=request.actor, organization=organization, **data)
        return rendered(AccessGroupSerializer, group, status=201)


class AccessGroupDetailView(AccessGroupsView):
    @extend_schema(tags=["access groups"], summary="One access group", responses={200: AccessGroupSerializer, **READ_ERRORS})
    def get(self, request: Request, access_group_id: Any) -> Response:
        group = self.group(access_group_id)
        self.check("access_group:read", policy.access_group_target(group))
        return rendered(AccessGroupSerializer, group)

    @extend_schema(
        tags=["access groups"], summary="Change an access group; assigned ids replace its assignments",
        request=AccessGroupUpdateSerializer, responses={200: AccessGroupSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, access_group_id: Any) -> Response:
        group = self.group(access_group_id)
        data = self.body(AccessGroupUpdateSerializer, partial=True)
        if "assigned_team_ids" in data:
            data["assigned_team_ids"] = [str(t) for t in data["assigned_team_ids"]]
        group = services.access_group_update(actor=self.acting_user, group=group, data=data, by=request.actor)
        return rendered(AccessGroupSerializer, group)

    @extend_schema(
        tags=["access groups"], summary="Delete an access group; it leaves every team and key",
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request: Request, access_group_id: Any) -> Response:
        group = self.group(access_group_id)
        services.access_group_delete(actor=self.acting_user, group=group, by=request.actor)
        return Response(status=204)


class GroupKeysPagination(CursorPagination):
    """`?cursor=` pages over the assignment rows in their id order: one range of the (group, id) index per
    page, as fast for the millionth key as for the first (no OFFSET, no COUNT)."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class AccessGroupKeyListView(AccessGroupsView):
    """A group's keys, a page at a time: what `assigned_key_ids` lists only for small groups. The caller
    sees the keys they may list, as on `/api/v1/keys/` (a global group's keys of other organizations are
    not theirs to read)."""

    model = KeyAccessGroup
    pagination_class = GroupKeysPagination
    access_group: AccessGroup

    def visible_rows(self) -> QuerySet:
        rows = KeyAccessGroup.objects.filter(access_group_id=self.access_group.pk).select_related(
            "key", *(f"key__{path}" for path in key_selectors.KEY_PATH)
        )
        if self.tenant.bypass and self.tenant.actor.reads_everything:
            return rows
        return rows.filter(key__in=key_selectors.keys_visible(self.tenant).values("pk"))

    @extend_schema(
        tags=["access groups"], summary="The keys assigned to an access group, a page at a time (cursor)",
        responses={200: KeySerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, access_group_id: Any) -> Response:
        self.access_group = self.group(access_group_id)
        self.check("access_group:read", policy.access_group_target(self.access_group))
        self.check("key:list")
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(KeySerializer([row.key for row in page], many=True).data)


# --- catalog ------------------------------------------------------------------------------------


class CatalogView(OrgsView):
    """One kind of catalog entry, named by its natural id (`model_name`, `server_id`, `agent_id`)."""

    kind: str = ""
    model: type[Model]
    natural: str = ""
    output: type[serializers.Serializer]
    create_input: type[serializers.Serializer]
    update_input: type[serializers.Serializer]

    def visible_rows(self) -> QuerySet:
        return self.model.objects.all()

    def entry(self, ident: str) -> Any:
        row = self.model.objects.filter(**{self.natural: ident}).first()
        if row is None:
            raise NotFound(f"{self.natural} {ident} not found.", param=self.natural)
        return row


class CatalogListView(CatalogView):
    def get(self, request: Request) -> Response:
        self.check("catalog:read")
        return self.list_response(self.output)

    def post(self, request: Request) -> Response:
        data = self.body(self.create_input)
        self.check("catalog:write")
        if self.model.objects.filter(**{self.natural: data[self.natural]}).exists():
            raise Conflict(f"{self.natural} {data[self.natural]} already exists.", param=self.natural)
        return rendered(self.output, services.catalog_upsert(actor=self.acting_user, kind=self.kind, data=data), 201)


class CatalogDetailView(CatalogView):
    def get(self, request: Request, **kwargs: str) -> Response:
        self.check("catalog:read")
        return rendered(self.output, self.entry(kwargs[self.natural]))

    def patch(self, request: Request, **kwargs: str) -> Response:
        data = self.body(self.update_input, partial=True)
        self.check("catalog:write")
        self.entry(kwargs[self.natural])  # 404 for an unknown entry: PATCH never creates
        data[self.natural] = kwargs[self.natural]
        return rendered(self.output, services.catalog_upsert(actor=self.acting_user, kind=self.kind, data=data))

    def delete(self, request: Request, **kwargs: str) -> Response:
        self.check("catalog:write")
        services.catalog_delete(actor=self.acting_user, kind=self.kind, row=self.entry(kwargs[self.natural]))
        return Response(status=204)


def _catalog_views(
    kind: str, model: type[Model], natural: str, tag_name: str, filterset: type,
    output: type[serializers.Serializer], create_input: type[serializers.Serializer],
    update_input: type[serializers.Serializer],
) -> tuple[type[CatalogListView], type[CatalogDetailView]]:
    """The list and detail views of one kind of catalog entry, each route documented."""
    attrs = dict(kind=kind, model=model, natural=natural, output=output, create_input=create_input,
                 update_input=update_input)
    tags = ["catalog"]
    list_view = extend_schema_view(
        get=extend_schema(tags=tags, summary=f"The catalog's {tag_name}", responses={200: output(many=True), **READ_ERRORS}),
        post=extend_schema(tags=tags, summary=f"Add to the catalog's {tag_name} (proxy admins)",
                           request=create_input, responses={201: output, **WRITE_ERRORS}),
    )(type(f"{model.__name__}ListView", (CatalogListView,), {**attrs, "filterset_class": filterset}))
    detail_view = extend_schema_view(
        get=extend_schema(tags=tags, summary=f"One of the catalog's {tag_name}", responses={200: output, **READ_ERRORS}),
        patch=extend_schema(tags=tags, summary=f"Change one of the catalog's {tag_name} (proxy admins)",
                            request=update_input, responses={200: output, **WRITE_ERRORS}),
        delete=extend_schema(tags=tags, summary=f"Remove one of the catalog's {tag_name} (proxy admins)",
                             responses={204: None, **READ_ERRORS}),
    )(type(f"{model.__name__}DetailView", (CatalogDetailView,), attrs))
    return list_view, detail_view


CatalogModelListView, CatalogModelDetailView = _catalog_views(
    "model", CatalogModel, "model_name", "models", CatalogModelFilter,
    CatalogModelSerializer, CatalogModelCreateSerializer, CatalogModelUpdateSerializer,
)
MCPServerListView, MCPServerDetailView = _catalog_views(
    "mcp_server", MCPServer, "server_id", "MCP servers", MCPServerFilter,
    MCPServerSerializer, MCPServerCreateSerializer, MCPServerUpdateSerializer,
)
AgentListView, AgentDetailView = _catalog_views(
    "agent", Agent, "agent_id", "agents", AgentFilter,
    AgentSerializer, AgentCreateSerializer, AgentUpdateSerializer,
)
