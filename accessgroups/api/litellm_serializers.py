"""Input and output serializers of LiteLLM's unified access-group routes (`/v1/access_group`)."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accessctl.litellm import StrictCharField, string_list

from .serializers import AssignedFieldsSerializer


class AccessGroupFieldsInput(serializers.Serializer):
    access_group_name = StrictCharField(required=False, max_length=255)
    description = StrictCharField(required=False, allow_null=True, allow_blank=True)
    access_model_names = string_list(required=False, allow_null=True)
    access_mcp_server_ids = string_list(required=False, allow_null=True)
    access_agent_ids = string_list(required=False, allow_null=True)
    assigned_team_ids = string_list(required=False, allow_null=True)
    assigned_key_ids = string_list(required=False, allow_null=True, help_text="Key hashes (raw keys are accepted).")


class AccessGroupCreateInput(AccessGroupFieldsInput):
    access_group_name = StrictCharField(max_length=255)
    access_group_id = StrictCharField(
        required=False, allow_null=True, trim_whitespace=False,
        help_text="Caller-chosen id (SPEC §1); a UUID string when omitted.",
    )
    organization_id = StrictCharField(
        required=False, allow_null=True, help_text="Owning organization; default: the request's organization context."
    )


class AccessGroupUpdateInput(AccessGroupFieldsInput):
    """A partial update: only the fields sent are set."""


class NamedRefOut(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField(allow_null=True)


class AccessGroupOut(AssignedFieldsSerializer):
    """A group as LiteLLM shows it, with the ids resolved to `{id, name}` pairs (`context["names"]`, built
    for the whole page by `accessgroups.selectors.names_for`; teams and keys by `selectors.assigned_for`).

    Unlike LiteLLM's, `assigned_key_ids` / `assigned_team_ids` are listed whole only up to
    `selectors.ASSIGNED_IDS_LIMIT`; above it they are empty, with the count and a `*_truncated` marker."""

    access_group_id = serializers.CharField()
    access_group_name = serializers.CharField()
    description = serializers.CharField()
    organization_id = serializers.CharField(allow_null=True)
    access_model_names = serializers.ListField(child=serializers.CharField())
    access_mcp_server_ids = serializers.ListField(child=serializers.CharField())
    access_agent_ids = serializers.ListField(child=serializers.CharField())
    access_mcp_servers = serializers.SerializerMethodField()
    access_agents = serializers.SerializerMethodField()
    assigned_teams = serializers.SerializerMethodField()
    assigned_keys = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    updated_by = serializers.CharField()

    def _named(self, kind: str, ids: list[str]) -> list[dict[str, Any]]:
        names = self.context["names"][kind]
        return [{"id": i, "name": names.get(i)} for i in ids]

    def _assigned_named(self, group: Any, side: str) -> list[dict[str, Any]]:
        found = self.assigned(group)
        return [{"id": i, "name": found[f"{side}s"].get(i)} for i in found[f"{side}_ids"]]

    @extend_schema_field(NamedRefOut(many=True))
    def get_access_mcp_servers(self, group: Any) -> list[dict[str, Any]]:
        return self._named("mcp_servers", group.access_mcp_server_ids or [])

    @extend_schema_field(NamedRefOut(many=True))
    def get_access_agents(self, group: Any) -> list[dict[str, Any]]:
        return self._named("agents", group.access_agent_ids or [])

    @extend_schema_field(NamedRefOut(many=True))
    def get_assigned_teams(self, group: Any) -> list[dict[str, Any]]:
        return self._assigned_named(group, "team")

    @extend_schema_field(NamedRefOut(many=True))
    def get_assigned_keys(self, group: Any) -> list[dict[str, Any]]:
        return self._assigned_named(group, "key")
