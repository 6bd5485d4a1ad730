"""Input and output serializers of the LiteLLM-compatible `/key/*` routes (field names as LiteLLM's)."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accessctl.litellm import (
    PAGE_MAX,
    BudgetInput,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    json_object,
    string_list,
)
from accessctl.policy import KEY_TYPES, MAX_ALLOWED_ROUTES
from keys.services import MAX_GRACE_PERIOD_TEXT

KEY_STATUSES = ("active", "expired", "blocked", "revoked", "deleted")
KEY_SORT_FIELDS = ("created_at", "updated_at", "expires", "key_alias", "spend", "max_budget")

GRACE_HELP = (
    f'How long the old secret keeps working, e.g. "24h" (at most {MAX_GRACE_PERIOD_TEXT}); '
    "empty: it is refused at once."
)

# --- input ------------------------------------------------------------------------------------


class KeyFieldsInput(BudgetInput):
    """The fields a key is created or updated with."""

    key_alias = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=255)
    duration = StrictCharField(required=False, allow_null=True, allow_blank=True)
    models = string_list(required=False, allow_null=True)
    user_id = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=255)
    team_id = StrictCharField(required=False, allow_null=True, allow_blank=True)
    organization_id = StrictCharField(required=False, allow_null=True, allow_blank=True)
    metadata = json_object(required=False, allow_null=True)
    blocked = serializers.BooleanField(required=False, allow_null=True)
    spend = StrictFloatField(required=False, allow_null=True, min_value=0)
    access_group_ids = string_list(required=False, allow_null=True)
    key_type = serializers.ChoiceField(
        choices=KEY_TYPES, required=False, allow_null=True,
        help_text="default: any route; llm_api: model routes only; management: management routes only; "
        "read_only: info and list routes only.",
    )
    allowed_routes = string_list(
        required=False, allow_null=True, max_length=MAX_ALLOWED_ROUTES,
        help_text="Narrows further: route paths (`/key/info`, `/team/*`) or llm_api_routes, management_routes, "
        "info_routes.",
    )
    auto_rotate = serializers.BooleanField(required=False, allow_null=True)
    rotation_interval = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=16)


class KeyGenerateInput(KeyFieldsInput):
    key = StrictCharField(required=False, allow_null=True, help_text="A custom secret: `sk-…`, ≥16 characters.")


class KeyUpdateInput(KeyFieldsInput):
    key = StrictCharField(required=False, allow_null=True, help_text="The key to update: raw `sk-…` or its hash.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("key") and not attrs.get("key_alias"):
            raise serializers.ValidationError({"key": "Pass `key` (raw or hash) or `key_alias`."})
        return attrs


class KeyRegenerateInput(KeyFieldsInput):
    key = StrictCharField(required=False, allow_null=True, help_text="The key to regenerate: raw or hash.")
    new_key = StrictCharField(required=False, allow_null=True, help_text="A custom new secret (`sk-…`).")
    grace_period = StrictCharField(
        required=False, allow_null=True, allow_blank=True, max_length=16, help_text=GRACE_HELP
    )
    new_master_key = StrictCharField(required=False, allow_null=True)

    def validate_new_master_key(self, value: str | None) -> str | None:
        if value:
            raise serializers.ValidationError("The master key is set in the environment (ACCESSCTL_MASTER_KEY).")
        return value


class KeyDeleteInput(serializers.Serializer):
    keys = string_list(required=False, allow_null=True, max_length=1000)
    key_aliases = string_list(required=False, allow_null=True, max_length=1000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("keys") and not attrs.get("key_aliases"):
            raise serializers.ValidationError({"keys": "Pass `keys` or `key_aliases`."})
        return attrs


class KeyRefInput(serializers.Serializer):
    key = StrictCharField(help_text="Raw `sk-…` or its hash.")


class KeyInfoQuery(serializers.Serializer):
    key = StrictCharField(required=False, help_text="Raw `sk-…` or its hash; default: the calling key.")


class KeyListQuery(serializers.Serializer):
    page = StrictIntegerField(required=False, default=1, min_value=1, max_value=PAGE_MAX)
    size = StrictIntegerField(required=False, default=10, min_value=1, max_value=100)
    user_id = StrictCharField(required=False)
    team_id = StrictCharField(required=False)
    organization_id = StrictCharField(required=False)
    key_hash = StrictCharField(required=False)
    key_alias = StrictCharField(required=False)
    status = serializers.ChoiceField(choices=KEY_STATUSES, required=False)
    return_full_object = serializers.BooleanField(required=False, default=False)
    include_team_keys = serializers.BooleanField(required=False, default=False)
    sort_by = serializers.ChoiceField(choices=KEY_SORT_FIELDS, required=False, default="created_at")
    sort_order = serializers.ChoiceField(choices=("asc", "desc"), required=False, default="desc")


# --- output -----------------------------------------------------------------------------------


class KeyOut(serializers.Serializer):
    """A key row as LiteLLM shows it; the secret is never part of it, only `key_name` (`sk-...abcd`)."""

    token = serializers.CharField(help_text="SHA-256 hex of the secret: the key's id.")
    key_name = serializers.CharField()
    key_alias = serializers.CharField(allow_null=True)
    user_id = serializers.CharField(source="user.user_id", allow_null=True)
    team_id = serializers.CharField(allow_null=True)
    organization_id = serializers.CharField(allow_null=True)
    models = serializers.ListField(child=serializers.CharField())
    access_group_ids = serializers.ListField(child=serializers.CharField())
    max_budget = serializers.FloatField(allow_null=True)
    soft_budget = serializers.FloatField(allow_null=True)
    tpm_limit = serializers.IntegerField(allow_null=True)
    rpm_limit = serializers.IntegerField(allow_null=True)
    max_parallel_requests = serializers.IntegerField(allow_null=True)
    model_max_budget = serializers.DictField()
    budget_duration = serializers.CharField(allow_null=True)
    budget_reset_at = serializers.DateTimeField(allow_null=True)
    spend = serializers.FloatField()
    model_spend = serializers.DictField()
    metadata = serializers.DictField()
    expires = serializers.DateTimeField(allow_null=True)
    blocked = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_by = serializers.CharField()
    last_rotation_at = serializers.DateTimeField(source="last_rotated_at", allow_null=True)
    auto_rotate = serializers.BooleanField()
    rotation_interval = serializers.CharField(allow_null=True)
    key_type = serializers.CharField(help_text="default, llm_api, management or read_only.")
    allowed_routes = serializers.ListField(child=serializers.CharField())
    key_rotation_at = serializers.DateTimeField(
        source="rotation_due_at", allow_null=True, help_text="When an auto-rotating key is next due for rotation."
    )


class KeyInfoRowOut(KeyOut):
    """`/key/info`'s `info`: the row without `token`, with its status."""

    token = None
    status = serializers.CharField(help_text="active, expired or blocked.")


class KeySecretOut(KeyOut):
    """A key with its secret: only the responses of `/key/generate`, `/user/new` and `/key/regenerate`."""

    key = serializers.SerializerMethodField(help_text="The raw secret; shown only in this response.")
    token_id = serializers.CharField(source="token")
    budget_id = serializers.SerializerMethodField()
    litellm_budget_table = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_key(self, obj: Any) -> str | None:
        return self.context["raw"]  # None in the replay of an idempotent rotation: never shown twice

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_budget_id(self, obj: Any) -> None:
        return None  # keys carry their budget inline, not through a budget row

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_litellm_budget_table(self, obj: Any) -> None:
        return None


class KeyInfoOut(serializers.Serializer):
    key = serializers.CharField(help_text="As passed.")
    info = KeyInfoRowOut()


class KeyListOut(serializers.Serializer):
    keys = serializers.ListField(child=serializers.JSONField(), help_text="Hashes, or rows with return_full_object.")
    total_count = serializers.IntegerField()
    current_page = serializers.IntegerField()
    total_pages = serializers.IntegerField()


class KeyDeleteOut(serializers.Serializer):
    deleted_keys = serializers.ListField(child=serializers.CharField())


class KeyUpdateOut(serializers.Serializer):
    """`{"key": <as passed>, ...the fields written}`."""

    key = serializers.CharField()


class KeyHealthOut(serializers.Serializer):
    key = serializers.ChoiceField(choices=("healthy", "unhealthy"))
    logging_callbacks = serializers.DictField(allow_null=True)
