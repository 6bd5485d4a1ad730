"""The request and answer shapes of LiteLLM's `/team/*` routes, and what the team, user and organization
routes share (member entries, budget rows). Users and organizations have modules of their own."""
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
from accessctl.roles import ORG_ROLES, TEAM_MEMBER_PERMISSIONS, TEAM_ROLES
from keys.api.litellm_serializers import KeyOut

# --- shared -----------------------------------------------------------------------------------


class MemberInput(serializers.Serializer):
    """A member named by `user_id` or `user_email` (at least one), with a role."""

    user_id = StrictCharField(required=False, allow_null=True, max_length=255, trim_whitespace=False)
    user_email = StrictCharField(required=False, allow_null=True, max_length=254)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("user_id") and not attrs.get("user_email"):
            raise serializers.ValidationError({"user_id": "Pass `user_id` or `user_email`."})
        return attrs


class TeamMemberInput(MemberInput):
    role = serializers.ChoiceField(choices=tuple(TEAM_ROLES), required=False, default="user")


class OrgMemberInput(MemberInput):
    role = serializers.ChoiceField(choices=tuple(ORG_ROLES), required=False, default="internal_user")


class OneOrMany(serializers.Field):
    """A member object or a list of them (LiteLLM accepts both)."""

    child_class: type[serializers.Serializer]

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        items = data if isinstance(data, list) else [data]
        if not items:
            raise serializers.ValidationError("Pass at least one member.")
        out = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise serializers.ValidationError({index: ["Expected an object."]})
            child = self.child_class(data=item)
            if not child.is_valid():
                raise serializers.ValidationError({index: child.errors})
            out.append(dict(child.validated_data))
        return out

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(TeamMemberInput(many=True))
class TeamMembersField(OneOrMany):
    child_class = TeamMemberInput


@extend_schema_field(OrgMemberInput(many=True))
class OrgMembersField(OneOrMany):
    child_class = OrgMemberInput


class BudgetTableOut(serializers.Serializer):
    """A budget row (`litellm_budget_table`)."""

    budget_id = serializers.CharField()
    max_budget = serializers.FloatField(allow_null=True)
    soft_budget = serializers.FloatField(allow_null=True)
    tpm_limit = serializers.IntegerField(allow_null=True)
    rpm_limit = serializers.IntegerField(allow_null=True)
    max_parallel_requests = serializers.IntegerField(allow_null=True)
    model_max_budget = serializers.DictField()
    budget_duration = serializers.CharField(allow_null=True)
    budget_reset_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_by = serializers.CharField()


# --- teams ------------------------------------------------------------------------------------


class TeamFieldsInput(BudgetInput):
    team_alias = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=255)
    organization_id = StrictCharField(required=False, allow_null=True, allow_blank=True)
    models = string_list(required=False, allow_null=True)
    metadata = json_object(required=False, allow_null=True)
    blocked = serializers.BooleanField(required=False)
    team_member_permissions = serializers.ListField(
        child=serializers.ChoiceField(choices=TEAM_MEMBER_PERMISSIONS), required=False, allow_null=True
    )
    access_group_ids = string_list(required=False, allow_null=True)
    spend = StrictFloatField(required=False, allow_null=True, min_value=0)


class TeamNewInput(TeamFieldsInput):
    # Ids are taken as sent (SPEC §1): " x" is not silently "x"; the service refuses what cannot be an id.
    team_id = StrictCharField(required=False, allow_null=True, trim_whitespace=False)
    admins = string_list(required=False, allow_null=True, help_text="LiteLLM's legacy list, stored as given.")
    members = string_list(required=False, allow_null=True, help_text="LiteLLM's legacy list, stored as given.")
    members_with_roles = serializers.ListField(child=TeamMemberInput(), required=False, allow_null=True)


class TeamUpdateInput(TeamFieldsInput):
    team_id = StrictCharField()


class TeamIdsInput(serializers.Serializer):
    team_ids = string_list(allow_empty=False, max_length=1000)


class TeamIdQuery(serializers.Serializer):
    team_id = StrictCharField(error_messages={"required": "Malformed request. No team id passed in."})


class TeamListQuery(serializers.Serializer):
    user_id = StrictCharField(required=False)
    organization_id = StrictCharField(required=False)


class TeamListV2Query(TeamListQuery):
    """`/v2/team/list`: LiteLLM's paginated team list and its filters."""

    team_id = StrictCharField(required=False)
    team_alias = StrictCharField(required=False, help_text="Part of the alias, ignoring case.")
    page = StrictIntegerField(required=False, default=1, min_value=1, max_value=PAGE_MAX)
    page_size = StrictIntegerField(required=False, default=10, min_value=1, max_value=100)
    sort_by = serializers.ChoiceField(
        choices=("team_id", "team_alias", "created_at", "updated_at", "spend", "max_budget"), required=False
    )
    sort_order = serializers.ChoiceField(choices=("asc", "desc"), required=False, default="asc")


class TeamMemberAddInput(serializers.Serializer):
    team_id = StrictCharField()
    member = TeamMembersField(help_text="One member object, or a list of them.")
    max_budget_in_team = StrictFloatField(required=False, allow_null=True, min_value=0)


class TeamMemberRefInput(MemberInput):
    team_id = StrictCharField()


class TeamMemberUpdateInput(TeamMemberRefInput):
    role = serializers.ChoiceField(choices=tuple(TEAM_ROLES), required=False, allow_null=True)
    max_budget_in_team = StrictFloatField(required=False, allow_null=True, min_value=0)


class TeamPermissionsUpdateInput(serializers.Serializer):
    team_id = StrictCharField()
    team_member_permissions = serializers.ListField(child=serializers.ChoiceField(choices=TEAM_MEMBER_PERMISSIONS))


class MemberWithRoleOut(serializers.Serializer):
    user_id = serializers.CharField()
    user_email = serializers.CharField(allow_null=True)
    role = serializers.CharField()


class TeamOut(serializers.Serializer):
    """A team row; memberships must be prefetched (`orgs.selectors.teams_with_members`)."""

    team_id = serializers.CharField()
    team_alias = serializers.CharField(allow_null=True)
    organization_id = serializers.CharField(allow_null=True)
    admins = serializers.SerializerMethodField()
    members = serializers.SerializerMethodField()
    members_with_roles = serializers.SerializerMethodField()
    team_member_permissions = serializers.ListField(source="member_permissions", child=serializers.CharField())
    models = serializers.ListField(child=serializers.CharField())
    access_group_ids = serializers.ListField(child=serializers.CharField())
    blocked = serializers.BooleanField()
    metadata = serializers.DictField()
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
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_by = serializers.CharField()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_admins(self, team: Any) -> list[str]:
        """LiteLLM's legacy list, as given at creation (the admins are in `members_with_roles`)."""
        return list(team.legacy_admins or [])

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_members(self, team: Any) -> list[str]:
        """LiteLLM's legacy list, as given at creation (the members are in `members_with_roles`)."""
        return list(team.legacy_members or [])

    @extend_schema_field(MemberWithRoleOut(many=True))
    def get_members_with_roles(self, team: Any) -> list[dict[str, Any]]:
        return [
            {"user_id": m.user.user_id, "user_email": m.user.user_email, "role": m.role}
            for m in team.memberships.all()
        ]


class TeamMembershipOut(serializers.Serializer):
    user_id = serializers.CharField(source="user.user_id")
    team_id = serializers.CharField()
    role = serializers.CharField()
    spend = serializers.FloatField()
    budget_id = serializers.CharField(allow_null=True)
    litellm_budget_table = BudgetTableOut(source="budget", allow_null=True)


class TeamWithKeysOut(TeamOut):
    """A `/team/list` item: the row with its memberships and keys (both prefetched)."""

    team_memberships = TeamMembershipOut(source="memberships", many=True)
    keys = KeyOut(many=True)


class TeamInfoOut(serializers.Serializer):
    team_id = serializers.CharField()
    team_info = TeamOut()
    keys = KeyOut(many=True)
    team_memberships = TeamMembershipOut(many=True)


class TeamUpdateOut(serializers.Serializer):
    team_id = serializers.CharField()
    data = TeamOut()


class TeamDeleteOut(serializers.Serializer):
    deleted_teams = serializers.ListField(child=serializers.CharField())


class TeamMemberAddOut(TeamOut):
    updated_users = serializers.ListField(child=serializers.DictField())
    updated_team_memberships = serializers.ListField(child=serializers.DictField())


class TeamMemberUpdateOut(serializers.Serializer):
    team_id = serializers.CharField()
    user_id = serializers.CharField()
    user_email = serializers.CharField(allow_null=True)
    role = serializers.CharField()
    max_budget_in_team = serializers.FloatField(allow_null=True)


class TeamPermissionsOut(serializers.Serializer):
    team_id = serializers.CharField()
    team_member_permissions = serializers.ListField(child=serializers.CharField())
    all_available_permissions = serializers.ListField(child=serializers.CharField())
