"""REST serializers for organizations, teams, users, memberships and the audit log (LiteLLM's field names).

Input serializers validate types (400 naming the field); output serializers render rows loaded for
a whole page by the selectors, never one query per row.
"""
from __future__ import annotations

from rest_framework import serializers

from accessctl.ids import IdField
from accessctl.litellm import BudgetInput, StrictCharField, json_object, string_list
from accessctl.roles import ORG_ROLE_VALUES, PLATFORM_ROLE_VALUES, TEAM_MEMBER_PERMISSIONS, TEAM_ROLE_VALUES

# --- shared output pieces -----------------------------------------------------------------------


class BudgetFieldsSerializer(serializers.Serializer):
    """The budget and limits every object carries, with the running spend."""

    max_budget = serializers.FloatField(allow_null=True)
    soft_budget = serializers.FloatField(allow_null=True)
    tpm_limit = serializers.IntegerField(allow_null=True)
    rpm_limit = serializers.IntegerField(allow_null=True)
    max_parallel_requests = serializers.IntegerField(allow_null=True)
    model_max_budget = serializers.DictField(child=serializers.FloatField())
    budget_duration = serializers.CharField(allow_null=True)
    budget_reset_at = serializers.DateTimeField(allow_null=True)


class SpendSerializer(serializers.Serializer):
    spend = serializers.FloatField()
    model_spend = serializers.DictField(child=serializers.FloatField())


class BudgetTableSerializer(BudgetFieldsSerializer):
    """An organization's budget row, as LiteLLM's `litellm_budget_table`."""

    budget_id = serializers.UUIDField()


# --- organizations ------------------------------------------------------------------------------


class OrganizationSerializer(SpendSerializer):
    organization_id = IdField()
    organization_alias = serializers.CharField()
    models = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField()
    budget_id = serializers.UUIDField()
    litellm_budget_table = BudgetTableSerializer(source="budget")
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField()


class OrganizationCreateSerializer(BudgetInput):
    organization_alias = StrictCharField(max_length=255)
    organization_id = IdField(required=False, allow_null=True)
    models = string_list(required=False)
    metadata = json_object(required=False)


class OrganizationUpdateSerializer(BudgetInput):
    organization_alias = StrictCharField(max_length=255, required=False)
    models = string_list(required=False)
    metadata = json_object(required=False)


class OrganizationMemberSerializer(serializers.Serializer):
    user_id = serializers.CharField(source="user.user_id")
    user_email = serializers.EmailField(source="user.user_email", allow_null=True)
    user_role = serializers.ChoiceField(choices=ORG_ROLE_VALUES)
    max_budget_in_organization = serializers.FloatField(source="budget.max_budget", allow_null=True)
    spend = serializers.FloatField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class OrganizationMemberAddSerializer(serializers.Serializer):
    user_id = StrictCharField(max_length=255)
    user_role = serializers.ChoiceField(choices=ORG_ROLE_VALUES, default="internal_user")
    max_budget_in_organization = serializers.FloatField(required=False, allow_null=True, min_value=0)


class OrganizationMemberUpdateSerializer(serializers.Serializer):
    user_role = serializers.ChoiceField(choices=ORG_ROLE_VALUES, required=False)
    max_budget_in_organization = serializers.FloatField(required=False, allow_null=True, min_value=0)


# --- teams --------------------------------------------------------------------------------------


class MemberWithRoleSerializer(serializers.Serializer):
    user_id = serializers.CharField(source="user.user_id")
    user_email = serializers.EmailField(source="user.user_email", allow_null=True)
    role = serializers.ChoiceField(choices=TEAM_ROLE_VALUES)


class TeamSerializer(BudgetFieldsSerializer, SpendSerializer):
    team_id = IdField()
    team_alias = serializers.CharField(allow_null=True)
    organization_id = IdField(allow_null=True)
    models = serializers.ListField(child=serializers.CharField())
    team_member_permissions = serializers.ListField(child=serializers.CharField(), source="member_permissions")
    blocked = serializers.BooleanField()
    access_group_ids = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField()
    members_with_roles = MemberWithRoleSerializer(source="memberships.all", many=True)
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField()


class NewMemberSerializer(serializers.Serializer):
    user_id = StrictCharField(max_length=255)
    role = serializers.ChoiceField(choices=TEAM_ROLE_VALUES, default="user")


class TeamFieldsSerializer(BudgetInput):
    team_alias = StrictCharField(max_length=255, required=False, allow_null=True)
    models = string_list(required=False)
    team_member_permissions = serializers.ListField(
        child=serializers.ChoiceField(choices=TEAM_MEMBER_PERMISSIONS), required=False
    )
    blocked = serializers.BooleanField(required=False)
    access_group_ids = serializers.ListField(child=IdField(), required=False)
    metadata = json_object(required=False)


class TeamCreateSerializer(TeamFieldsSerializer):
    team_id = IdField(required=False, allow_null=True)
    organization_id = IdField(required=False, allow_null=True)
    members_with_roles = NewMemberSerializer(many=True, required=False)


class TeamUpdateSerializer(TeamFieldsSerializer):
    pass


class TeamMemberSerializer(serializers.Serializer):
    user_id = serializers.CharField(source="user.user_id")
    user_email = serializers.EmailField(source="user.user_email", allow_null=True)
    role = serializers.ChoiceField(choices=TEAM_ROLE_VALUES)
    max_budget_in_team = serializers.FloatField(source="budget.max_budget", allow_null=True)
    spend = serializers.FloatField()
    created_at = serializers.DateTimeField()


class TeamMemberAddSerializer(serializers.Serializer):
    user_id = StrictCharField(max_length=255)
    role = serializers.ChoiceField(choices=TEAM_ROLE_VALUES, default="user")
    max_budget_in_team = serializers.FloatField(required=False, allow_null=True, min_value=0)


class TeamMemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=TEAM_ROLE_VALUES, required=False)
    max_budget_in_team = serializers.FloatField(required=False, allow_null=True, min_value=0)


# --- users --------------------------------------------------------------------------------------


class UserOrganizationSerializer(serializers.Serializer):
    organization_id = IdField()
    user_role = serializers.ChoiceField(choices=ORG_ROLE_VALUES)


class UserTeamSerializer(serializers.Serializer):
    team_id = IdField()
    role = serializers.ChoiceField(choices=TEAM_ROLE_VALUES)


class UserSerializer(BudgetFieldsSerializer, SpendSerializer):
    user_id = serializers.CharField()
    user_email = serializers.EmailField(allow_null=True)
    user_alias = serializers.CharField(allow_null=True)
    user_role = serializers.ChoiceField(choices=PLATFORM_ROLE_VALUES)
    is_system = serializers.BooleanField()
    is_active = serializers.BooleanField()
    models = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField()
    organizations = UserOrganizationSerializer(source="organization_memberships.all", many=True)
    teams = UserTeamSerializer(source="team_memberships.all", many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class UserFieldsSerializer(BudgetInput):
    user_email = serializers.EmailField(required=False, allow_null=True, allow_blank=True)
    user_alias = StrictCharField(max_length=255, required=False, allow_null=True)
    user_role = serializers.ChoiceField(choices=PLATFORM_ROLE_VALUES, required=False)
    is_active = serializers.BooleanField(required=False)
    is_system = serializers.BooleanField(required=False)
    models = string_list(required=False)
    metadata = json_object(required=False)
    password = StrictCharField(required=False, write_only=True, min_length=8, max_length=128)


class UserCreateSerializer(UserFieldsSerializer):
    user_id = StrictCharField(max_length=255, required=False)
    organization_id = IdField(required=False, allow_null=True)
    organization_role = serializers.ChoiceField(choices=ORG_ROLE_VALUES, default="internal_user")


class UserUpdateSerializer(UserFieldsSerializer):
    spend = serializers.FloatField(required=False, min_value=0)


# --- audit --------------------------------------------------------------------------------------


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor_id = serializers.CharField()
    action = serializers.CharField()
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    organization_id = IdField(allow_null=True)
    before = serializers.DictField()
    after = serializers.DictField()
