"""Plumbing shared by the LiteLLM-compatible views: strict input fields, the error schemas, the base view."""
from __future__ import annotations

import math
from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from accessctl.errors import InvalidInput
from accessctl.schema import TenantAutoSchema
from accessctl.tenancy import TenantAPIView

# --- input fields -----------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A string, and only a string: `123` is a wrong type (400 naming the field), never coerced."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A finite number; booleans are refused, and `""` means null (as LiteLLM reads `max_budget`)."""

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data == "" and self.allow_null:
            return True, None
        return super().validate_empty_values(data)

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool):
            self.fail("invalid")
        try:
            value = super().to_internal_value(data)
        except OverflowError:  # an integer too large for a float
            self.fail("invalid")
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class StrictIntegerField(serializers.IntegerField):
    """A whole number; booleans and fractions are refused."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or isinstance(data, float) and not data.is_integer():
            self.fail("invalid")
        return super().to_internal_value(data)


# Column bounds: a bigger number is bad input (400), not a database overflow (500).
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
PAGE_MAX = 1_000_000


def string_list(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(child=StrictCharField(allow_blank=False), **kwargs)


def json_object(**kwargs: Any) -> serializers.DictField:
    return serializers.DictField(**kwargs)


class BudgetInput(serializers.Serializer):
    """The budget fields every LiteLLM object accepts."""

    max_budget = StrictFloatField(required=False, allow_null=True, min_value=0)
    soft_budget = StrictFloatField(required=False, allow_null=True, min_value=0)
    tpm_limit = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=BIGINT_MAX)
    rpm_limit = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=BIGINT_MAX)
    max_parallel_requests = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=INT_MAX)
    model_max_budget = json_object(required=False, allow_null=True)
    budget_duration = StrictCharField(required=False, allow_null=True, allow_blank=True)


BUDGET_INPUT_FIELDS = tuple(BudgetInput().fields)


# --- error shapes (for the schema) ------------------------------------------------------------


class ErrorBodySerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(help_text="The HTTP status, as a string.")


class ErrorSerializer(serializers.Serializer):
    """The SPEC §7 error shape."""

    error = ErrorBodySerializer()


class DetailErrorSerializer(serializers.Serializer):
    """LiteLLM's FastAPI shape, kept by the `/v1/access_group` routes."""

    detail = serializers.JSONField()


def errors(*statuses: int, detail: bool = False) -> dict[int, OpenApiResponse]:
    """Documented error responses for `extend_schema(responses=...)`."""
    text = {
        400: "Bad input; `param` names the field.",
        401: "Authentication failed, or a team member lacks the permission (`team_member_permission_error`).",
        403: "Not allowed.",
        404: "Not found (or outside your tenant).",
        409: "Conflicts with an existing row.",
    }
    serializer = DetailErrorSerializer if detail else ErrorSerializer
    return {status: OpenApiResponse(serializer, description=text[status]) for status in statuses}


# --- the base view ----------------------------------------------------------------------------


class LiteLLMAutoSchema(TenantAutoSchema):
    """Also documents the JSON body of a DELETE: LiteLLM's `/organization/delete` and `member_delete` take one."""

    def _get_request_body(self, direction: str = "request") -> dict | None:
        if self.method != "DELETE":
            return super()._get_request_body(direction)
        self.method = "POST"  # drf-spectacular documents bodies of unsafe methods other than DELETE only
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"


class LiteLLMView(TenantAPIView):
    """Base of the LiteLLM-compatible routes: parse with a serializer, ask the policy, call a service."""

    schema = LiteLLMAutoSchema()

    def body(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        """The JSON body, validated; a body that is not an object → 400."""
        data = self.request.data
        if not isinstance(data, dict):
            raise InvalidInput("The request body must be a JSON object.", param="body")
        return _validated(serializer_class, data)

    def query(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        return _validated(serializer_class, self.request.query_params)


def _validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def page_count(total: int, size: int) -> int:
    return max(1, math.ceil(total / size)) if size else 1
