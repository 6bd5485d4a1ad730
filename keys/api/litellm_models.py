"""LiteLLM's model routes over the catalog: `/model/info`, `/v1/model/info`, `/model_group/info`, narrowed
to what the caller's key may reach (the same resolution as `/v1/models`, so a listed model is one the
check allows). LiteLLM's model and credential writes are out of scope (models live in the catalog):
those routes answer a 400 of type `unsupported_route` naming the route, never a bare 404.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers

from accessctl.errors import error_body
from accessgroups.models import CatalogModel

from .gateway import _FastView, _json, _Refusal, reachable_models
from .gateway_schema import _ERROR

TAGS = ["LiteLLM: models"]

UNSUPPORTED_MODEL_WRITES = "Models are managed in accessctl's catalog (the admin, or /api/v1/catalog/models/)."


def _catalog_rows(names: list[str]) -> dict[str, Any]:
    return {row.model_name: row for row in CatalogModel.objects.filter(model_name__in=names)}


def _deployment(name: str, provider: str, row: Any | None) -> dict[str, Any]:
    """One entry of `/model/info`, in LiteLLM's shape (no secrets: the catalog holds none)."""
    created = row.created_at.isoformat() if row is not None else None
    return {
        "model_name": name,
        "litellm_params": {"model": name, "custom_llm_provider": provider or None},
        "model_info": {
            "id": name,
            "db_model": row is not None,
            "key": name,
            "litellm_provider": provider or None,
            "mode": "chat",
            "description": row.description if row is not None else "",
            "access_groups": [],
            "direct_access": True,
            "access_via_team_ids": [],
            "input_cost_per_token": None,
            "output_cost_per_token": None,
            "created_at": created,
            "updated_at": created,
        },
    }


def _group(name: str, provider: str) -> dict[str, Any]:
    """One entry of `/model_group/info`, in LiteLLM's shape."""
    return {
        "model_group": name,
        "providers": [provider] if provider else [],
        "mode": "chat",
        "max_input_tokens": None,
        "max_output_tokens": None,
        "input_cost_per_token": None,
        "output_cost_per_token": None,
        "tpm": None,
        "rpm": None,
        "supports_parallel_function_calling": False,
        "supports_vision": False,
        "supports_function_calling": False,
        "supported_openai_params": [],
        "configurable_clientside_auth_params": None,
    }


def model_info(request: Any):
    try:
        names, catalog = reachable_models(request)
        wanted = request.GET.get("litellm_model_id")
        if wanted is not None:
            if wanted not in names:
                # LiteLLM answers 400 for an unknown deployment id; a model the key may not reach is unknown to it.
                raise _Refusal(f"Model id = {wanted} not found on litellm proxy", "bad_request_error", 400,
                               "litellm_model_id")
            names = [wanted]
    except _Refusal as refusal:
        return _json(refusal.body, refusal.status)
    rows = _catalog_rows(names)
    return _json({"data": [_deployment(n, catalog.get(n, ""), rows.get(n)) for n in names]})


def model_group_info(request: Any):
    try:
        names, catalog = reachable_models(request)
    except _Refusal as refusal:
        return _json(refusal.body, refusal.status)
    wanted = request.GET.get("model_group")
    if wanted is not None:
        names = [n for n in names if n == wanted]
    return _json({"data": [_group(n, catalog.get(n, "")) for n in names]})


_DATA = inline_serializer("LiteLLMModelData", {"data": serializers.ListField(child=serializers.DictField())})


class ModelInfoView(_FastView):
    """`/model/info` and `/v1/model/info`: the deployments (catalog models) the key may reach."""

    @extend_schema(
        tags=TAGS,
        summary="Catalog models the key may reach, in LiteLLM's deployment shape",
        parameters=[OpenApiParameter("litellm_model_id", str, required=False, description="One model only.")],
        responses={200: _DATA, 400: _ERROR, 401: _ERROR, 403: _ERROR},
    )
    def get(self, request, *args, **kwargs):
        return model_info(request)


class ModelGroupInfoView(_FastView):
    """`/model_group/info`: the model groups (catalog models) the key may reach."""

    @extend_schema(
        tags=TAGS,
        summary="Model groups the key may reach, in LiteLLM's shape",
        parameters=[OpenApiParameter("model_group", str, required=False, description="One group only.")],
        responses={200: _DATA, 401: _ERROR, 403: _ERROR},
    )
    def get(self, request, *args, **kwargs):
        return model_group_info(request)


def unsupported(request: Any, *args: Any, **kwargs: Any):
    """A LiteLLM route accessctl does not implement: a 400 naming the route, never a bare 404 (and never a
    5xx: the request is well understood, it asks for what this server deliberately does not do)."""
    message = f"{request.method} {request.path} is a LiteLLM route that accessctl does not support. "
    if request.path.startswith("/credentials"):
        message += "accessctl holds no provider credentials: configure them on the gateway."
    else:
        message += UNSUPPORTED_MODEL_WRITES
    return _json(error_body(message, "unsupported_route", "route", 400), 400)


class UnsupportedRouteView(_FastView):
    """LiteLLM's model and credential writes: out of scope (SPEC §7); a clear 400 for every method."""

    def dispatch(self, request, *args, **kwargs):
        return unsupported(request)

    @extend_schema(tags=TAGS, summary="Unsupported LiteLLM route (always 400)", request=None, responses={400: _ERROR})
    def post(self, request, *args, **kwargs):
        return unsupported(request)
