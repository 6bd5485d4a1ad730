"""REST serializers for access groups (LiteLLM's field names) and the catalog of models, MCP servers and agents."""
from __future__ import annotations

from rest_framework import serializers

from accessctl.ids import IdField
from accessctl.litellm import StrictCharField, string_list

# --- access groups ------------------------------------------------------------------------------


class AccessGroupSerializer(serializers.Serializer):
    access_group_id = IdField()
    access_group_name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    organization_id = IdField(allow_null=True, help_text="Owner; null for a global group.")
    access_model_names = serializers.ListField(child=serializers.CharField())
    access_mcp_server_ids = serializers.ListField(child=serializers.CharField())
    access_agent_ids = serializers.ListField(child=serializers.CharField())
    assigned_team_ids = serializers.ListField(child=serializers.CharField())
    assigned_key_ids = serializers.ListField(child=serializers.CharField(), help_text="Key tokens.")
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
