"""OpenAPI extensions: how our authentication classes appear in `/api/schema/` (drf-spectacular)."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
