"""The request and answer shapes of LiteLLM's `/user/*` routes."""
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
from accessctl.roles import PLATFORM_ROLES, TEAM_ROLES
from keys.api.litellm_serializers import KeyFieldsInput, KeyOut

from .litellm_serializers import (
    TeamWithKeysOut,
)


class UserFieldsInput(BudgetInput):
    user_email = serializers.EmailField(required=False, allow_null=True, allow_blank=True)
    user_alias = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=255)
    user_role = serializers.ChoiceField(choices=tuple(PLATFORM_ROLES), required=False, allow_null=True)
    models = string_list(required=False, allow_null=True)
    metadata = json_object(required=False, allow_null=True)
    spend = StrictFloatField(required=False, allow_null=True, min_value=0)


class UserTeamInput(serializers.Serializer):
    team_id = StrictCharField()
    max_budget_in_team = StrictFloatField(required=False, allow_null=True, min_value=0)
    user_role = serializers.ChoiceField(choices=tuple(TEAM_ROLES), required=False, default="user")


@extend_schema_field(UserTeamInput(many=True))
class TeamRefField(serializers.Field):
    """`teams` of `/user/new`: team ids, or objects `{team_id, max_budget_in_team, user_role}`."""

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, list):
            raise serializers.ValidationError("Expected a list of team ids or objects.")
        out = []
        for index, item in enumerate(data):
            child = UserTeamInput(data={"team_id": item} if isinstance(item, str) else item)
            if not isinstance(item, str | dict) or not child.is_valid():
                raise serializers.ValidationError({index: getattr(child, "_errors", None) or ["Invalid team."]})
            out.append(dict(child.validated_data))
        return out

    def to_representation(self, value: Any) -> Any:
        return value


class UserNewInput(UserFieldsInput, KeyFieldsInput):
    """A new user and (unless `auto_create_key` is false) their first key."""

    user_id = StrictCharField(required=False, allow_null=True, max_length=255)
    team_id = StrictCharField(required=False, allow_null=True, allow_blank=True)
    teams = TeamRefField(required=False, allow_null=True)
    organization_id = StrictCharField(required=False, allow_null=True, allow_blank=True)
    organizations = string_list(required=False, allow_null=True)
    auto_create_key = serializers.BooleanField(required=False, default=True)
    password = serializers.JSONField(required=False)

    def validate_password(self, value: Any) -> None:
        raise serializers.ValidationError("Setting a password on /user/new is not supported; use /user/update.")


class UserUpdateInput(UserFieldsInput):
    user_id = StrictCharField(required=False, allow_null=True, max_length=255)
    password = StrictCharField(required=False, allow_null=True, min_length=8, write_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("user_id") and not attrs.get("user_email"):
            raise serializers.ValidationError({"user_id": "Pass `user_id` or `user_email`."})
        return attrs


class UserIdsInput(serializers.Serializer):
    user_ids = string_list(allow_empty=False, max_length=1000)


class UserInfoQuery(serializers.Serializer):
    user_id = StrictCharField(required=False)


class CsvField(serializers.CharField):
    def to_internal_value(self, data: Any) -> list[str]:
        return [part.strip() for part in super().to_internal_value(data).split(",") if part.strip()]


class UserListQuery(serializers.Serializer):
    role = serializers.ChoiceField(choices=tuple(PLATFORM_ROLES), required=False)
    user_ids = CsvField(required=False)
    user_email = StrictCharField(required=False)
    search = StrictCharField(required=False)
    team = StrictCharField(required=False)
    organization_ids = CsvField(required=False)
    page = StrictIntegerField(required=False, default=1, min_value=1, max_value=PAGE_MAX)
    page_size = StrictIntegerField(required=False, default=25, min_value=1, max_value=100)
    sort_by = serializers.ChoiceField(
        choices=("user_id", "user_email", "user_alias", "created_at", "spend", "user_role"), required=False
    )
    sort_order = serializers.ChoiceField(choices=("asc", "desc"), required=False, default="asc")


class UserOut(serializers.Serializer):
    """A user row; never a password. Memberships must be prefetched (`orgs.selectors.with_memberships`)."""

    user_id = serializers.CharField()
    user_alias = serializers.CharField(allow_null=True)
    user_email = serializers.CharField(allow_null=True)
    user_role = serializers.CharField()
    teams = serializers.SerializerMethodField()
    organizations = serializers.SerializerMethodField()
    models = serializers.ListField(child=serializers.CharField())
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
    sso_user_id = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_teams(self, user: Any) -> list[str]:
        return [str(m.team_id) for m in user.team_memberships.all()]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_organizations(self, user: Any) -> list[str]:
        return [str(m.organization_id) for m in user.organization_memberships.all()]


class UserWithKeyCountOut(UserOut):
    key_count = serializers.IntegerField()


class UserNewOut(UserOut):
    """The new user with their first key's fields (`key` is its raw secret, shown once; null without one)."""

    key = serializers.CharField(allow_null=True)
    token = serializers.CharField(allow_null=True)
    key_name = serializers.CharField(allow_null=True)
    key_alias = serializers.CharField(allow_null=True)
    expires = serializers.DateTimeField(allow_null=True)
    team_id = serializers.CharField(allow_null=True)


class UserInfoOut(serializers.Serializer):
    user_id = serializers.CharField()
    user_info = UserOut()
    keys = KeyOut(many=True)
    teams = TeamWithKeysOut(many=True)


class UserUpdateOut(serializers.Serializer):
    user_id = serializers.CharField()
    data = UserOut()


class UserDeleteOut(serializers.Serializer):
    deleted_users = serializers.ListField(child=serializers.CharField())


class TeamListV2Out(serializers.Serializer):
    teams = TeamWithKeysOut(many=True)
    total = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    total_pages = serializers.IntegerField()


class UserListOut(serializers.Serializer):
    users = UserWithKeyCountOut(many=True)
    total = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    total_pages = serializers.IntegerField()
