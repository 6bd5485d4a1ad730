"""The tenant context, resolved once per request before any view runs (SPEC §3).

1. A virtual key bound to an organization (directly or through its team): that organization; the
   `X-Organization-Id` header is ignored, so a key cannot be pointed at another tenant.
2. Otherwise the `X-Organization-Id` header: malformed → 400; caller neither an active member nor a
   platform admin → 403, checked *before* existence so ids cannot be probed; unknown or soft-deleted → 404.
3. Otherwise personal scope for a non-admin, "all" mode for platform admins.

System users and platform admins in "all" mode bypass the read filter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.views import APIView

from accessctl import policy
from accessctl.authentication import BearerKeyAuthentication, BrowserSessionAuthentication, KeyCredentials
from accessctl.errors import Forbidden, InvalidInput, NotFound, ServiceError, Unauthorized
from accessctl.ids import as_id
from accessctl.schema import TenantAutoSchema
from orgs.models import Organization, OrganizationMembership, User

ORG_HEADER = "HTTP_X_ORGANIZATION_ID"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

ALL = "all"
ORGANIZATION = "organization"
PERSONAL = "personal"


@dataclass(frozen=True)
class TenantContext:
    actor: policy.Actor
    mode: str  # "all", "organization" or "personal"
    organization: Organization | None = None

    @property
    def organization_id(self) -> str | None:
        return str(self.organization.pk) if self.organization is not None else None

    @property
    def bypass(self) -> bool:
        """May see every tenant's rows (platform admins in "all" mode, system users)."""
        return self.actor.is_system or (self.mode == ALL and self.actor.reads_everything)

    def scope(self, queryset: QuerySet, *, org_field: str, owner_field: str | None = None,
              team_field: str | None = None, token_field: str | None = None) -> QuerySet:
        """Filter a queryset to this context, inside the query (a foreign row is simply absent).

        - "all" mode / system users: unfiltered.
        - organization mode: rows of that organization only.
        - personal scope: rows owned by the caller or in their teams or organizations.
        """
        if self.bypass:
            return queryset
        if self.mode == ORGANIZATION:
            return queryset.filter(**{org_field: self.organization.pk})
        actor = self.actor
        condition = Q(pk__in=[])
        if owner_field and actor.user_id:
            condition |= Q(**{owner_field: actor.user_id})
        if team_field and actor.team_roles:
            condition |= Q(**{f"{team_field}__in": list(actor.team_roles)})
        if team_field and actor.key_team_id:
            condition |= Q(**{team_field: actor.key_team_id})
        if token_field and actor.is_service_account and actor.key_token:
            condition |= Q(**{token_field: actor.key_token})  # a key without a user sees itself
        if actor.org_roles:
            condition |= Q(**{f"{org_field}__in": list(actor.org_roles)})
        return queryset.filter(condition)


def parse_org_header(value: str) -> str:
    """The organization id a header names (SPEC §1's string ids); not one → 400. Surrounding blanks are
    HTTP's, not the id's."""
    org_id = as_id(value.strip()) if isinstance(value, str) else None
    if org_id is None:
        raise InvalidInput(
            "Invalid X-Organization-Id: must be an organization id (printable, at most 128 characters).",
            param="X-Organization-Id",
        )
    return org_id


def _was_member(user: Any, org_id: str) -> bool:
    """A member of a soft-deleted organization is told it is gone (404), not that they never belonged."""
    return user is not None and OrganizationMembership.objects.filter(
        user=user, organization_id=org_id, organization__deleted_at__isnull=False
    ).exists()


def resolve(request: Any) -> TenantContext:
    """Resolve the context of an authenticated DRF request."""
    credentials: KeyCredentials | None = request.auth if isinstance(request.auth, KeyCredentials) else None
    key = credentials.key if credentials is not None else None
    is_master = bool(credentials and credentials.is_master)
    user = request.user if getattr(request.user, "pk", None) is not None else None
    actor = policy.actor_for(user, key=key, is_master=is_master)

    if key is not None:
        org = key.organization or (key.team.organization if key.team_id else None)
        if org is not None:
            if org.deleted_at is not None:
                raise Unauthorized("Authentication Error, the key's organization is deleted.")
            return TenantContext(actor, ORGANIZATION, org)

    header = request.META.get(ORG_HEADER)
    if header:
        org_id = parse_org_header(header)
        if not actor.reads_everything and actor.org_role(str(org_id)) is None and not _was_member(user, org_id):
            raise Forbidden(f"Not a member of organization {org_id}", param="X-Organization-Id")
        org = Organization.objects.filter(pk=org_id, deleted_at__isnull=True).select_related("budget").first()
        if org is None:
            raise NotFound(f"Organization {org_id} not found", param="X-Organization-Id")
        return TenantContext(actor, ORGANIZATION, org)

    if actor.reads_everything:
        return TenantContext(actor, ALL)
    return TenantContext(actor, PERSONAL)


class TenantAPIView(APIView):
    """Base of every API view: authenticates, then resolves `request.tenant` and `request.actor`
    before the handler runs."""

    authentication_classes = [BearerKeyAuthentication, BrowserSessionAuthentication]
    permission_classes = [IsAuthenticated]
    schema = TenantAutoSchema()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        credentials = request.auth
        if isinstance(credentials, KeyCredentials) and credentials.key is not None:
            # A key acts with its user's rights narrowed by its key_type / allowed_routes (SPEC §2):
            # refused before any membership is loaded or anything is read.
            key = credentials.key
            policy.raise_refusal(
                policy.may_call_route(key.key_type, key.allowed_routes, request.path_info, request.method)
            )
        request.tenant = resolve(request)
        request.actor = request.tenant.actor
        if request.method in _BODY_METHODS:
            # Parse now: a body too large, too deep or not JSON is refused before any lookup or write.
            request.data  # noqa: B018

    def dispatch(self, request, *args, **kwargs):
        """A write request runs in one transaction, and a refused one (any 4xx/5xx answer) is rolled back
        whole: no user, membership or row created on the way to a refusal survives it (SPEC §2)."""
        if request.method in SAFE_METHODS:
            return super().dispatch(request, *args, **kwargs)
        with transaction.atomic():
            response = super().dispatch(request, *args, **kwargs)
            if response.status_code >= 400:
                transaction.set_rollback(True)
            return response

    def permission_denied(self, request, message=None, code=None):
        if not request.successful_authenticator and not getattr(request, "user", None):
            raise Unauthorized("Authentication Error, No api key passed in.")
        super().permission_denied(request, message=message, code=code)

    @property
    def tenant(self) -> TenantContext:
        return self.request.tenant

    @property
    def acting_user(self) -> User | None:
        """Who is recorded as the author of a write (None for a service-account key)."""
        user = self.request.user
        return user if isinstance(user, User) else None

    def check(self, action: str, target: policy.Target | None = None) -> None:
        """Ask the policy; raise its refusal with the exact status and type."""
        verdict = policy.can(self.request.actor, action, target)
        if not verdict:
            raise ServiceError(verdict.message, type=verdict.type, status=verdict.status)
