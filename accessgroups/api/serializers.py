"""REST serializers for access groups (LiteLLM's field names) and the catalog of models, MCP servers and agents."""
from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accessctl.ids import IdField
from accessctl.litellm import StrictCharField, string_list
from accessgroups import selectors
from accessgroups.selectors import ASSIGNED_IDS_LIMIT

# --- access groups ------------------------------------------------------------------------------


class AssignedListSerializer(serializers.ListSerializer):
    """A page of groups: their teams and keys read once for the whole page (`selectors.assigned_for`)."""

    def to_representation(self, data: Any) -> list[Any]:
        groups = list(data.all() if hasattr(data, "all") else data)
        self.context.setdefault("assigned", {}).update(selectors.assigned_for(groups))
        return super().to_representation(groups)


class AssignedFieldsSerializer(serializers.Serializer):
    """A group's teams and keys, bounded whatever their number (issue 17): listed whole up to
    ASSIGNED_IDS_LIMIT, else an empty list, `*_truncated: true` and the count."""

    assigned_team_ids = serializers.SerializerMethodField(
        help_text=f"The team ids, when the group has at most {ASSIGNED_IDS_LIMIT} teams (else empty, see "
        "`assigned_team_ids_truncated`)."
    )
    assigned_key_ids = serializers.SerializerMethodField(
        help_text=f"The key tokens, when the group has at most {ASSIGNED_IDS_LIMIT} keys (else empty, see "
        "`assigned_key_ids_truncated` and `assigned_keys_url`)."
    )
    assigned_team_count = serializers.IntegerField()
    assigned_key_count = serializers.IntegerField()
    assigned_team_ids_truncated = serializers.SerializerMethodField(
        help_text=f"True when the group has more than {ASSIGNED_IDS_LIMIT} teams: `assigned_team_ids` is not listed."
    )
    assigned_key_ids_truncated = serializers.SerializerMethodField(
        help_text=f"True when the group has more than {ASSIGNED_IDS_LIMIT} keys: `assigned_key_ids` is not listed."
    )
    assigned_keys_url = serializers.SerializerMethodField(help_text="Every key of the group, a page at a time.")

    class Meta:
        list_serializer_class = AssignedListSerializer

    def assigned(self, group: Any) -> dict[str, Any]:
        found = self.context.setdefault("assigned", {})
        if str(group.pk) not in found:  # a single group: its own two bounded reads
            found.update(selectors.assigned_for([group]))
        return found[str(group.pk)]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_assigned_team_ids(self, group: Any) -> list[str]:
        return self.assigned(group)["team_ids"]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_assigned_key_ids(self, group: Any) -> list[str]:
        return self.assigned(group)["key_ids"]

    @extend_schema_field(serializers.BooleanField())
    def get_assigned_team_ids_truncated(self, group: Any) -> bool:
        return self.assigned(group)["teams_truncated"]

    @extend_schema_field(serializers.BooleanField())
    def get_assigned_key_ids_truncated(self, group: Any) -> bool:
        return self.assigned(group)["keys_truncated"]

    @extend_schema_field(serializers.CharField())
    def get_assigned_keys_url(self, group: Any) -> str:
        return reverse("access-group-keys", kwargs={"access_group_id": group.pk})


class AccessGroupSerializer(AssignedFieldsSerializer):
    access_group_id = IdField()
    access_group_name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    organization_id = IdField(allow_null=True, help_text="Owner; null for a global group.")
    access_model_names = serializers.ListField(child=serializers.CharField())
    access_mcp_server_ids = serializers.ListField(child=serializers.CharField())
    access_agent_ids = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField()


class AccessGroupFieldsSerializer(serializers.Serializer):
    description = StrictCharField(required=False, allow_blank=True, allow_null=True)
    access_model_names = string_list(required=False)
    access_mcp_server_ids = string_list(required=False)
    access_agent_ids = string_list(required=False)
    assigned_team_ids = serializers.ListField(child=IdField(), required=False)
    assigned_key_ids = string_list(required=False, help_text="Key tokens (or raw keys).")


class AccessGroupCreateSerializer(AccessGroupFieldsSerializer):
    access_group_name = StrictCharField(max_length=255)
    access_group_id = IdField(required=False, allow_null=True, help_text="Caller-chosen id; a UUID string when omitted.")
    organization_id = IdField(
        required=False, allow_null=True, help_text="Defaults to the context's organization; null: global."
    )


class AccessGroupUpdateSerializer(AccessGroupFieldsSerializer):
    access_group_name = StrictCharField(max_length=255, required=False)


ASSIGNMENT_FIELDS = ("assigned_team_ids", "assigned_key_ids")


# --- catalog ------------------------------------------------------------------------------------


class CatalogModelSerializer(serializers.Serializer):
    model_name = serializers.CharField()
    provider = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class CatalogModelUpdateSerializer(serializers.Serializer):
    provider = StrictCharField(max_length=64, required=False, allow_blank=True)
    description = StrictCharField(required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)


class CatalogModelCreateSerializer(CatalogModelUpdateSerializer):
    model_name = StrictCharField(max_length=255)


class MCPServerSerializer(serializers.Serializer):
    server_id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class MCPServerUpdateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=255, required=False)
    description = StrictCharField(required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)


class MCPServerCreateSerializer(MCPServerUpdateSerializer):
    server_id = StrictCharField(max_length=255)
    name = StrictCharField(max_length=255)


class AgentSerializer(serializers.Serializer):
    agent_id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class AgentUpdateSerializer(MCPServerUpdateSerializer):
    pass


class AgentCreateSerializer(AgentUpdateSerializer):
    agent_id = StrictCharField(max_length=255)
    name = StrictCharField(max_length=255)
