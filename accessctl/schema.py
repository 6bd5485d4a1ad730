"""OpenAPI extensions: how authentication and the tenant header appear in `/api/schema/` (drf-spectacular)."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accessctl.authentication.BearerKeyAuthentication"
    name = "bearerKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The master key or a virtual key (`sk-…`), as `Authorization: Bearer <key>`.",
        }


class BrowserSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accessctl.authentication.BrowserSessionAuthentication"
    name = "browserSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid", "description": "The admin login's session."}


class TenantAutoSchema(AutoSchema):
    """Every tenant-aware route documents the `X-Organization-Id` header (SPEC §3)."""

    def get_override_parameters(self) -> list:
        return [*super().get_override_parameters(), ORGANIZATION_HEADER]


ORGANIZATION_HEADER = OpenApiParameter(
    "X-Organization-Id",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "The organization to work in (personal keys, the master key, browser sessions). Ignored for a key bound "
        "to an organization. Not an id (printable, at most 128 characters) → 400; not a member → 403; unknown or soft-deleted → 404."
    ),
)
