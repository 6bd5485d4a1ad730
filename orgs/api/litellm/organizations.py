"""LiteLLM's `/organization/*` routes: parse, ask the policy, call the services."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accessctl import policy
from accessctl.errors import Conflict, NotFound
from accessctl.litellm import errors
from orgs import selectors, services
from orgs.models import OrganizationMembership, User

from ..litellm_organization_serializers import (
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
)
from ..litellm_user_serializers import (
    UserOut,
)
from .common import (
    ORG_TAGS,
    DirectoryView,
    organization_out,
)


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
