"""django-scim2's configuration hooks (settings SCIM_SERVICE_PROVIDER): the bearer-token check, request
locations, the schemas we serve, the filter columns and id validation. Kept apart from the adapters
(orgs/scim.py), which django-scim2 imports only after these."""
from __future__ import annotations

import copy
import hmac
import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_scim import constants, exceptions
from django_scim.filters import FilterQuery
from django_scim.schemas import ALL as LIBRARY_SCHEMAS

from .models import ScimGroup, User

# --- authentication ------------------------------------------------------------------------------------


class ScimBearerAuth:
    """django-scim2's AUTH_CHECK_MIDDLEWARE: the IdP's bearer token, compared in constant time."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = getattr(settings, "ACCESSCTL_SCIM_TOKEN", "")
        if not token:
            return HttpResponse(status=404)
        scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            body = exceptions.SCIMException("A valid bearer token is required.", status=401).to_dict()
            response = HttpResponse(json.dumps(body), status=401, content_type=constants.SCIM_CONTENT_TYPE)
            response["WWW-Authenticate"] = 'Bearer realm="scim"'
            return response
        return self.get_response(request, *args, **kwargs)


def base_location(request: HttpRequest | None = None) -> str:
    return f"{request.scheme}://{request.get_host()}" if request is not None else ""


# --- schemas: only what is stored ------------------------------------------------------------------


def _trimmed(schema_id: str, keep: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(next(s for s in LIBRARY_SCHEMAS if s["id"] == schema_id))
    attributes = []
    for attribute in schema["attributes"]:
        if attribute["name"] in keep:
            sub = keep[attribute["name"]]
            if sub is not None:
                attribute["subAttributes"] = [a for a in attribute.get("subAttributes", []) if a["name"] in sub]
            attributes.append(attribute)
    schema["attributes"] = attributes
    schema["schemas"] = ["urn:ietf:params:scim:schemas:core:2.0:Schema"]
    return schema


def schemas() -> list[dict[str, Any]]:
    return [
        _trimmed(constants.SchemaURI.USER, {
            "userName": None, "name": {"formatted"}, "displayName": None, "active": None,
            "emails": {"value", "primary"}, "groups": None,
        }),
        _required(_trimmed(constants.SchemaURI.GROUP, {"displayName": None, "members": None}), "displayName"),
    ]


def _required(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A group is stored under its name (a team's or an organization's): it cannot be left out."""
    for attribute in schema["attributes"]:
        if attribute["name"] == name:
            attribute["required"] = True
    return schema


# --- filters (raw SQL over our columns) ------------------------------------------------------------


class UserFilter(FilterQuery):
    model_getter = staticmethod(lambda: User)
    attr_map = {
        ("userName", None, None): "user_id",
        ("displayName", None, None): "user_alias",
        ("emails", "value", None): "user_email",
        ("emails", None, None): "user_email",
        ("active", None, None): "is_active",
        ("externalId", None, None): "scim_external_id",
    }


class GroupFilter(FilterQuery):
    model_getter = staticmethod(lambda: ScimGroup)
    attr_map = {
        ("displayName", None, None): "display_name",
        ("externalId", None, None): "scim_external_id",
    }


def extra_filter_kwargs_getter(model):
    """django-scim2 asks this before each lookup by id: a malformed id is a 404, never a 500."""

    def extra_filter_kwargs(request, uuid=None, *args, **kwargs) -> dict[str, Any]:
        if uuid is not None:
            try:
                model._meta.pk.to_python(uuid)
            except Exception as exc:  # noqa: BLE001 - a malformed id names nothing
                raise exceptions.NotFoundError(uuid) from exc
        return {}

    return extra_filter_kwargs

