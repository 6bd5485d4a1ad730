"""Writes to the catalog of models, MCP servers and agents."""
from __future__ import annotations

from typing import Any

from django.db import transaction

from accessctl.common import field_values, model_update
from accessctl.errors import InvalidInput
from accessctl.events import Affects, publish
from orgs.audit import record
from orgs.models import User

from ..models import Agent, CatalogModel, MCPServer

CATALOG_MODELS = {
    "model": (CatalogModel, "model_name", ("model_name", "provider", "description", "active")),
    "mcp_server": (MCPServer, "server_id", ("server_id", "name", "description", "active")),
    "agent": (Agent, "agent_id", ("agent_id", "name", "description", "active")),
}


@transaction.atomic
def catalog_upsert(*, actor: User | None, kind: str, data: dict[str, Any]) -> Any:
    """Create or update a catalog entry (model, MCP server or agent) by its natural id."""
    model, natural, fields = CATALOG_MODELS[kind]
    ident = data.get(natural)
    if not isinstance(ident, str) or not ident.strip():
        raise InvalidInput(f"{natural} is required.", param=natural)
    row = model.objects.select_for_update().filter(**{natural: ident}).first()
    if row is None:
        row = model.objects.create(**{f: data[f] for f in fields if f in data})
        before, after = {}, field_values(row, fields)
    else:
        before, after = model_update(row, data, fields)
    if after:
        publish(Affects(catalog=True))  # /v1/models expands to the cached catalog
        record(
            actor=actor,
            action=f"catalog_{kind}_upsert",
            object_type=f"catalog_{kind}",
            object_id=ident,
            before=before,
            after=after,
        )
    return row


@transaction.atomic
def catalog_delete(*, actor: User | None, kind: str, row: Any) -> None:
    model, natural, fields = CATALOG_MODELS[kind]
    before = field_values(row, fields)
    ident = getattr(row, natural)
    row.delete()
    publish(Affects(catalog=True))
    record(actor=actor, action=f"catalog_{kind}_delete", object_type=f"catalog_{kind}", object_id=ident, before=before)
