"""/scim/v2/: django-scim2's routes, with discovery lists that carry `totalResults` and 404s with a SCIM
error body (RFC 7644 §3.4.2, §3.12), which its own views omit, and request bodies bounded in size and
depth like every other JSON route (a SCIM error with status 413 or 400, never a 500)."""
from __future__ import annotations

import json

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.urls import re_path
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django_scim import constants, exceptions, views

from accessctl import jsonbody
from accessctl.errors import BODY_TOO_LARGE


def _found(doc, uuid):
    if doc is None:
        body = exceptions.NotFoundError(uuid).to_dict()
        return HttpResponse(json.dumps(body), content_type=constants.SCIM_CONTENT_TYPE, status=404)
    return HttpResponse(json.dumps(doc), content_type=constants.SCIM_CONTENT_TYPE)


def _list(resources):
    resources = sorted(resources, key=lambda o: o.get("id"))
    return {"schemas": [constants.SchemaURI.LIST_RESPONSE], "totalResults": len(resources),
            "itemsPerPage": len(resources), "startIndex": 1, "Resources": resources}


def _scim_error(error: exceptions.SCIMException) -> HttpResponse:
    return HttpResponse(json.dumps(error.to_dict()), content_type=constants.SCIM_CONTENT_TYPE, status=error.status)


class BoundedBody:
    """django-scim2 reads bodies with a bare `json.loads`: a deeply nested body raised RecursionError and a
    body over the upload limit RequestDataTooBig, both answered 500."""

    @method_decorator(csrf_exempt)  # as django-scim2's own dispatch: the IdP authenticates with a bearer token
    def dispatch(self, request, *args, **kwargs):
        try:
            request.body  # noqa: B018 (read once: over the limit raises here, before any view code)
        except RequestDataTooBig:
            return _scim_error(exceptions.SCIMException(BODY_TOO_LARGE, status=413, scim_type="invalidValue"))
        return super().dispatch(request, *args, **kwargs)

    def load_body(self, body: bytes):
        try:
            return jsonbody.loads(body.strip() or b"{}")
        except jsonbody.TooDeep as exc:
            raise exceptions.BadRequestError(str(exc), scim_type="invalidSyntax") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.BadRequestError(f"Could not decode JSON body: {exc}", scim_type="invalidSyntax") from None


class UsersView(BoundedBody, views.UsersView):
    pass


class UserSearchView(BoundedBody, views.UserSearchView):
    pass


class GroupsView(BoundedBody, views.GroupsView):
    pass


class GroupSearchView(BoundedBody, views.GroupSearchView):
    pass


class ResourceTypesView(views.ResourceTypesView):
    def get(self, request, uuid=None, *args, **kwargs):
        types = self.type_dict_by_type_id(request)
        return _found(types.get(uuid) if uuid else _list(types.values()), uuid)


class SchemasView(views.SchemasView):
    def get(self, request, uuid=None, *args, **kwargs):
        return _found(self.schemas_by_uri.get(uuid) if uuid else _list(self.schemas_by_uri.values()), uuid)


app_name = "scim"
urlpatterns = [
    re_path(r"^$", views.SCIMView.as_view(implemented=False), name="root"),
    re_path(r"^\.search$", views.SearchView.as_view(implemented=False), name="search"),
    re_path(r"^Users/\.search$", UserSearchView.as_view(), name="users-search"),
    re_path(r"^Users(?:/(?P<uuid>[^/]+))?$", UsersView.as_view(), name="users"),
    re_path(r"^Groups/\.search$", GroupSearchView.as_view(), name="groups-search"),
    re_path(r"^Groups(?:/(?P<uuid>[^/]+))?$", GroupsView.as_view(), name="groups"),
    re_path(r"^Me$", views.SCIMView.as_view(implemented=False), name="me"),
    re_path(r"^ServiceProviderConfig$", views.ServiceProviderConfigView.as_view(), name="service-provider-config"),
    re_path(r"^ResourceTypes(?:/(?P<uuid>[^/]+))?$", ResourceTypesView.as_view(), name="resource-types"),
    re_path(r"^Schemas(?:/(?P<uuid>[^/]+))?$", SchemasView.as_view(), name="schemas"),
    re_path(r"^Bulk$", views.SCIMView.as_view(implemented=False), name="bulk"),
    re_path(r"^(?P<rest>.+)$", lambda request, rest: _found(None, rest), name="not-found"),
]
