"""The OpenAPI description of the gateway's routes (drf-spectacular): the views in `keys.api.gateway`
authenticate by hand, for speed, so their request, answer and error shapes are described here."""
from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from accessctl.authentication import BearerKeyAuthentication

RESOURCE_PARAMS = ("model", "mcp_server_id", "agent_id")


class GatewaySchema(AutoSchema):
    """These views authenticate by hand (no DRF authenticators, for speed); document the bearer key."""

    def get_auth(self) -> list[dict[str, list]]:
        self.registry.register_on_missing(
            ResolvedComponent(
                name="bearerKey",
                type=ResolvedComponent.SECURITY_SCHEMA,
                object=BearerKeyAuthentication,  # the same component as accessctl.schema.BearerKeyScheme
                schema={
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The master key or a virtual key (`sk-…`), as `Authorization: Bearer <key>`.",
                },
            )
        )
        return [{"bearerKey": []}]


_ERROR = inline_serializer(
    "GatewayError",
    {
        "error": inline_serializer(
            "GatewayErrorDetail",
            {
                "message": serializers.CharField(),
                "type": serializers.CharField(),
                "param": serializers.CharField(allow_null=True),
                "code": serializers.CharField(),
            },
        )
    },
)
_CHECK_REQUEST = inline_serializer(
    "AuthzCheckRequest",
    {
        "model": serializers.CharField(required=False),
        "mcp_server_id": serializers.CharField(required=False),
        "agent_id": serializers.CharField(required=False),
        "include": serializers.ListField(
            child=serializers.ChoiceField(choices=["models"]), required=False,
            help_text='["models"]: also answer the key\'s effective models.',
        ),
    },
)
_LEVEL_LIMITS = {
    "tpm_limit": serializers.IntegerField(allow_null=True),
    "rpm_limit": serializers.IntegerField(allow_null=True),
    "max_parallel_requests": serializers.IntegerField(allow_null=True),
    "max_budget": serializers.FloatField(allow_null=True),
    "soft_budget": serializers.FloatField(allow_null=True),
    "spend": serializers.FloatField(allow_null=True),
    "budget_duration": serializers.CharField(allow_null=True),
    "budget_reset_at": serializers.DateTimeField(allow_null=True),
}
_CHECK_RESPONSE = inline_serializer(
    "AuthzCheckResponse",
    {
        "allowed": serializers.BooleanField(),
        "key": inline_serializer(
            "AuthzCheckKey",
            {
                "token": serializers.CharField(allow_null=True),
                "key_alias": serializers.CharField(allow_null=True),
                "user_id": serializers.CharField(allow_null=True),
                "team_id": serializers.CharField(allow_null=True),
                "organization_id": serializers.CharField(allow_null=True),
            },
        ),
        "limits": inline_serializer(
            "AuthzCheckLimits",
            {
                **_LEVEL_LIMITS,
                "model_max_budget": serializers.DictField(child=serializers.FloatField()),
                "model_spend": serializers.DictField(child=serializers.FloatField()),
                "team": inline_serializer(
                    "AuthzCheckTeamLimits",
                    {"team_alias": serializers.CharField(allow_null=True), **_LEVEL_LIMITS},
                    allow_null=True,
                ),
                "organization": inline_serializer(
                    "AuthzCheckOrganizationLimits",
                    {"organization_alias": serializers.CharField(allow_null=True), **_LEVEL_LIMITS},
                    allow_null=True,
                ),
                "user": inline_serializer(
                    "AuthzCheckUserLimits",
                    {"user_email": serializers.CharField(allow_null=True), **_LEVEL_LIMITS},
                    allow_null=True,
                ),
            },
        ),
        "models": serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="With `include=models`: the models the key may call (catalog models and explicit names).",
        ),
    },
)
_CHECK_RESPONSES = {
    200: _CHECK_RESPONSE,
    400: OpenApiResponse(_ERROR, description="No resource named, or a malformed one (`param` names it)."),
    401: OpenApiResponse(_ERROR, description="No key, a malformed key or an unknown key."),
    403: OpenApiResponse(
        _ERROR,
        description="Denied; `type` says why: key_blocked, expired_key, user_blocked, team_blocked, "
        "organization_deleted, budget_exceeded, key_model_access_denied, team_model_access_denied, "
        "key_route_access_denied (the key's key_type or allowed_routes keeps it off model routes), …",
    ),
    503: OpenApiResponse(_ERROR, description="The database is unavailable (`no_db_connection`)."),
}
_QUERY = [OpenApiParameter(name, str, OpenApiParameter.QUERY, required=False) for name in RESOURCE_PARAMS] + [
    OpenApiParameter("include", str, OpenApiParameter.QUERY, required=False, enum=["models"],
                     description="`models`: also answer the key's effective models.")
]


_MODEL_LIST_RESPONSES = {
    200: inline_serializer(
        "ModelList",
        {
            "object": serializers.CharField(),
            "data": inline_serializer(
                "ModelListEntry",
                {
                    "id": serializers.CharField(),
                    "object": serializers.CharField(),
                    "created": serializers.IntegerField(),
                    "owned_by": serializers.CharField(),
                },
                many=True,
            ),
        },
    ),
    401: OpenApiResponse(_ERROR),
    403: OpenApiResponse(_ERROR, description="The key itself is refused (blocked, expired, …)."),
    503: OpenApiResponse(_ERROR),
}


_USAGE_REPORT_FIELDS = {
    "key": serializers.CharField(help_text="The virtual key (sk-…) or its token."),
    "model": serializers.CharField(),
    "spend": serializers.FloatField(min_value=0),
    "prompt_tokens": serializers.IntegerField(min_value=0, required=False),
    "completion_tokens": serializers.IntegerField(min_value=0, required=False),
    "idempotency_key": serializers.CharField(
        max_length=128, required=False,
        help_text="The caller's id for this report: a retry with the same one counts once.",
    ),
}
_USAGE_OUTCOME = inline_serializer(
    "UsageReported",
    {
        "key": serializers.CharField(help_text="The key's token."),
        "model": serializers.CharField(),
        "spend": serializers.FloatField(),
        "prompt_tokens": serializers.IntegerField(),
        "completion_tokens": serializers.IntegerField(),
        "total_tokens": serializers.IntegerField(),
        "idempotency_key": serializers.CharField(allow_null=True),
        "duplicate": serializers.BooleanField(help_text="A retry of a report already counted; not counted again."),
        "budget_exceeded": serializers.ListField(
            child=serializers.CharField(),
            help_text="Scopes whose budget is used up, counting the spend not yet applied.",
        ),
    },
)
