"""The request and answer shapes of LiteLLM's `/organization/*` routes."""
from __future__ import annotations

from rest_framework import serializers

from accessctl.litellm import (
    BudgetInput,
    StrictCharField,
    StrictFloatField,
    json_object,
    string_list,
)
from accessctl.roles import ORG_ROLES

from .litellm_serializers import (
    BudgetTableOut,
    MemberInput,
    OrgMembersField,
)
from .litellm_user_serializers import (
    UserOut,
)


class OrganizationFieldsInput(BudgetInput):
    organization_alias = StrictCharField(required=False, max_length=255)
    models = string_list(required=False, allow_null=True)
    metadata = json_object(required=False, allow_null=True)


class OrganizationNewInput(OrganizationFieldsInput):
    organization_alias = StrictCharField(max_length=255)
    organization_id = StrictCharField(required=False, allow_null=True, trim_whitespace=False)


class OrganizationUpdateInput(OrganizationFieldsInput):
    organization_id = StrictCharField()
    spend = StrictFloatField(required=False, allow_null=True, min_value=0)


class OrganizationIdsInput(serializers.Serializer):
    organization_ids = string_list(allow_empty=False, max_length=1000)


class OrganizationInfoQuery(serializers.Serializer):
    organization_id = StrictCharField()


class OrganizationListQuery(serializers.Serializer):
    org_id = StrictCharField(required=False)
    org_alias = StrictCharField(required=False)


class OrganizationMemberAddInput(serializers.Serializer):
    organization_id = StrictCharField()
    member = OrgMembersField(help_text="One member object, or a list of them.")
    max_budget_in_organization = StrictFloatField(required=False, allow_null=True, min_value=0)


class OrganizationMemberRefInput(MemberInput):
    organization_id = StrictCharField()


class OrganizationMemberUpdateInput(OrganizationMemberRefInput):
    role = serializers.ChoiceField(choices=tuple(ORG_ROLES), required=False, allow_null=True)
    max_budget_in_organization = StrictFloatField(required=False, allow_null=True, min_value=0)


class OrganizationMembershipOut(serializers.Serializer):
    user_id = serializers.CharField(source="user.user_id")
    user_email = serializers.CharField(source="user.user_email", allow_null=True)
    organization_id = serializers.CharField()
    user_role = serializers.CharField()
    spend = serializers.FloatField()
    budget_id = serializers.CharField(allow_null=True)
    litellm_budget_table = BudgetTableOut(source="budget", allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class TeamBriefOut(serializers.Serializer):
    team_id = serializers.CharField()
    team_alias = serializers.CharField(allow_null=True)
    organization_id = serializers.CharField(allow_null=True)
    models = serializers.ListField(child=serializers.CharField())
    blocked = serializers.BooleanField()
    max_budget = serializers.FloatField(allow_null=True)
    spend = serializers.FloatField()


class OrganizationOut(serializers.Serializer):
    """An organization row with its budget row; members and teams must be prefetched."""

    organization_id = serializers.CharField()
    organization_alias = serializers.CharField()
    budget_id = serializers.CharField()
    models = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField()
    spend = serializers.FloatField()
    model_spend = serializers.DictField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_by = serializers.CharField()
    litellm_budget_table = BudgetTableOut(source="budget")
    members = OrganizationMembershipOut(source="memberships", many=True)
    teams = TeamBriefOut(many=True)


class OrganizationMemberAddOut(serializers.Serializer):
    organization_id = serializers.CharField()
    updated_users = UserOut(many=True)
    updated_organization_memberships = OrganizationMembershipOut(many=True)
