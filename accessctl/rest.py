"""Plumbing of the REST API (`/api/v1/`): pagination, the base view, input parsing and the error schemas."""
from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, QuerySet
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import OpenApiResponse
from rest_framework import generics, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from accessctl.errors import InvalidInput
from accessctl.ids import is_valid_id
from accessctl.litellm import errors as _errors
from accessctl.tenancy import TenantAPIView


class Pagination(PageNumberPagination):
    """`{"count", "next", "previous", "results"}`; `?page=` and `?page_size=` (at most 500)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The documented error responses of a route, all in the SPEC §7 shape."""
    return _errors(*statuses)


class IdFormField(forms.CharField):
    """An id of SPEC §1 (printable, at most 128 characters); anything else is a 400 naming the filter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("strip", False)
        super().__init__(*args, **kwargs)

    def clean(self, value: Any) -> Any:
        value = super().clean(value)
        if value in (None, ""):
            return value
        items = value if isinstance(value, list) else [value]
        if not all(is_valid_id(v) for v in items):
            raise DjangoValidationError("Enter a valid id: printable, at most 128 characters.", code="invalid")
        return value


class IdFilter(filters.CharFilter):
    """`?field=id` with SPEC §1's string ids."""

    field_class = IdFormField


class IdInFilter(filters.BaseInFilter, IdFilter):
    """`?field=a,b,c` with SPEC §1's string ids; a value that cannot be an id is a 400 naming the filter."""


class CharInFilter(filters.BaseInFilter, filters.CharFilter):
    """`?field=a,b,c` with strings."""


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 instant, turned into UTC: offsets the database cannot store (`+22:39`) and instants
    that fall off the calendar in UTC are a 400, never a database error."""

    def to_python(self, value: Any) -> datetime.datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(datetime.UTC)
        except (OverflowError, ValueError) as exc:
            raise DjangoValidationError("Enter a date and time between years 1 and 9999.", code="invalid") from exc


class UTCDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class RestView(TenantAPIView, generics.GenericAPIView):
    """Base of every `/api/v1/` view: tenant resolved before the handler, lists paginated and filtered.

    Subclasses read through selectors that filter by `request.tenant` inside the query (a foreign row
    is as absent as a missing one) and write through services, after `self.check(action, target)`.
    """

    pagination_class = Pagination
    filter_backends = [filters.DjangoFilterBackend]
    model: type[Model] | None = None  # for the schema, where no tenant exists

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no tenant
            return self.model.objects.none()
        return self.visible_rows()

    def visible_rows(self) -> QuerySet:
        raise NotImplementedError

    def list_response(self, serializer_class: type[serializers.Serializer], **context: Any) -> Response:
        """One page of the visible rows, filtered by the query string."""
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True, context=context).data)

    def body(self, serializer_class: type[serializers.Serializer], *, partial: bool = False) -> dict[str, Any]:
        """The JSON body, validated (a body that is not an object → 400); only the fields sent."""
        data = self.request.data
        if not isinstance(data, dict):
            raise InvalidInput("The request body must be a JSON object.", param="body")
        serializer = serializer_class(data=data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


def rendered(serializer_class: type[serializers.Serializer], instance: Any, status: int = 200, **extra: Any) -> Response:
    return Response({**serializer_class(instance).data, **extra}, status=status)
