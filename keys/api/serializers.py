"""REST serializers for virtual keys (LiteLLM's field names); the raw `key` appears only on create and regenerate."""
from __future__ import annotations

from rest_framework import serializers

from accessctl.ids import IdField
from accessctl.litellm import BUDGET_INPUT_FIELDS, BudgetInput, StrictCharField, json_object, string_list
from accessctl.policy import KEY_TYPES, MAX_ALLOWED_ROUTES
from keys.api.litellm_serializers import GRACE_HELP
from orgs.api.serializers import BudgetFieldsSerializer, SpendSerializer


class KeySerializer(BudgetFieldsSerializer, SpendSerializer):
    token = serializers.CharField(help_text="SHA-256 hex of the secret: the key's id.")
    key_name = serializers.CharField(help_text="Masked secret, e.g. sk-...abcd.")
    key_alias = serializers.CharField(allow_null=True)
    user_id = serializers.CharField(source="user.user_id", allow_null=True)
    team_id = IdField(allow_null=True)
    organization_id = IdField(allow_null=True)
    models = serializers.ListField(child=serializers.CharField())
    access_group_ids = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField()
    expires = serializers.DateTimeField(allow_null=True)
    blocked = serializers.BooleanField()
    status = serializers.ChoiceField(choices=["active", "blocked", "expired"])
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField()
    last_rotated_at = serializers.DateTimeField(allow_null=True)
    auto_rotate = serializers.BooleanField()
    rotation_interval = serializers.CharField(allow_null=True)
    rotation_due_at = serializers.DateTimeField(allow_null=True)
    key_type = serializers.CharField(help_text="default, llm_api, management or read_only.")
    allowed_routes = serializers.ListField(child=serializers.CharField())


class KeySecretSerializer(KeySerializer):
    """A key with its raw secret: shown once, on create and regenerate."""

    key = serializers.CharField(
        source="raw_key", allow_null=True,
        help_text="The raw secret. It is never shown again (null in the replay of an idempotent rotation).",
    )
    token_id = serializers.CharField(source="token")


class KeyRotatedSerializer(KeySecretSerializer):
    """The answer of a rotation: the key with its new secret, and what became of the old one."""

    grace_period_until = serializers.DateTimeField(
        allow_null=True, help_text="The old secret is accepted until then; null: refused already."
    )
    idempotent_replay = serializers.BooleanField(
        help_text="True when this answers a retry with the same Idempotency-Key: nothing was rotated again."
    )
    message = serializers.CharField(required=False, help_text="Present on a replay: why `key` is null.")


class KeyFieldsSerializer(BudgetInput):
    key_alias = StrictCharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    user_id = StrictCharField(max_length=255, required=False, allow_null=True)
    team_id = IdField(required=False, allow_null=True)
    models = string_list(required=False)
    access_group_ids = serializers.ListField(child=IdField(), required=False)
    duration = StrictCharField(required=False, allow_null=True, allow_blank=True,
                               help_text='Lifetime from now, e.g. "30d"; null: never expires.')
    metadata = json_object(required=False)
    blocked = serializers.BooleanField(required=False)
    auto_rotate = serializers.BooleanField(required=False, help_text="Due for rotation every rotation_interval.")
    rotation_interval = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=16,
                                        help_text='e.g. "30d"; the owner is told in the audit log when it is due.')
    key_type = serializers.ChoiceField(
        choices=KEY_TYPES, required=False,
        help_text="default: any route; llm_api: model routes only (the check, /v1/models); management: "
        "management routes only; read_only: info and list routes only.",
    )
    allowed_routes = string_list(
        required=False, max_length=MAX_ALLOWED_ROUTES,
        help_text="Narrows further: route paths (`/api/v1/keys`, `/key/*`) or llm_api_routes, management_routes, "
        "info_routes; empty: no further limit.",
    )


class KeyCreateSerializer(KeyFieldsSerializer):
    key = StrictCharField(required=False, min_length=16, max_length=255,
                          help_text="A custom secret (sk-…, at least 16 characters); generated when absent.")


class KeyUpdateSerializer(KeyFieldsSerializer):
    spend = serializers.FloatField(required=False, min_value=0)


class KeyRegenerateSerializer(serializers.Serializer):
    new_key = StrictCharField(required=False, min_length=16, max_length=255,
                              help_text="A custom new secret (sk-…); generated when absent.")
    grace_period = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=16,
                                   help_text=GRACE_HELP)


# Fields whose change raises what a key may spend: only an admin of the key may touch them.
KEY_BUDGET_FIELDS = ("spend", *BUDGET_INPUT_FIELDS)
