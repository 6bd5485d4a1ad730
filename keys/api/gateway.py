"""The gateway's hot path (SPEC §6): the authorization check, the per-key model list, usage reports.

The check and the list answer from the key's cached decision snapshot: hash the bearer, one cache
round trip, decide with the pure resolver; no database query when warm, none of the management API's
tenancy machinery (no authenticators, no membership loading). Both decide through `authorize`, so a
listed model is always one the check allows.
"""
from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote_plus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

from accessctl import jsonbody, metrics
from accessctl.authentication import MASTER_USER_ID, bearer_value
from accessctl.errors import BODY_TOO_LARGE, ServiceError, error_body
from keys import cache, crypto
from keys.authz import KeySnapshot, allowed_names, authorize, status_decision

from .gateway_schema import (
    _CHECK_REQUEST,
    _CHECK_RESPONSES,
    _MODEL_LIST_RESPONSES,
    _QUERY,
    RESOURCE_PARAMS,
    GatewaySchema,
)

QUERY_PARAMS = (*RESOURCE_PARAMS, "include")
MODEL_CREATED = 1677610602  # the constant LiteLLM reports as `created`; clients only check presence
_JSON = "application/json"


class _Refusal(Exception):
    """An answer other than 200, in the SPEC §7 shape."""

    def __init__(self, message: str, type: str, status: int, param: str | None = None):
        super().__init__(message)
        self.body = error_body(message, type, param, status)
        self.status = status


def _json(body: Mapping[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(body, separators=(",", ":")), content_type=_JSON, status=status)


MASTER = object()  # what `_caller` returns for the master key: a proxy admin, allowed everything


def _caller(request: Any) -> KeySnapshot | object:
    """The key's snapshot (or MASTER) for the bearer of this request; 401 when there is none."""
    try:
        raw = bearer_value(request)
    except ServiceError as exc:
        raise _Refusal(exc.message, exc.type, 401) from None
    if raw is None:
        raise _Refusal("Authentication Error, No api key passed in.", "auth_error", 401)
    master = settings.ACCESSCTL_MASTER_KEY
    if master and hmac.compare_digest(raw.encode(), master.encode()):
        return MASTER
    if not raw.startswith(crypto.KEY_PREFIX):
        raise _Refusal(
            "Authentication Error, Invalid proxy server token passed. Key is expected to start with 'sk-'.",
            "auth_error",
            401,
        )
    token = crypto.hash_secret(raw)
    try:
        snapshot = cache.get_snapshot(token)
    except DatabaseError:
        raise _Refusal("The database is unavailable.", "no_db_connection", 503) from None
    # The cache is keyed by the hash; comparing it again costs nothing and never leaks timing. The old
    # secret of a rotation resolves to the same snapshot and is accepted until its grace period ends.
    if snapshot is None or not snapshot.accepts(token, timezone.now):
        _hold_unknown_key()
        raise _Refusal("Authentication Error, Invalid proxy server token passed.", "auth_error", 401)
    if snapshot.refused_routes:  # a key_type / allowed_routes that keeps the key off this gateway route
        decision = snapshot.route_decision(request.path_info, request.method)
        if not decision.allowed:
            raise _Refusal(decision.message, decision.type, 403)
    return snapshot


_tarpit: tuple[int, threading.BoundedSemaphore | None] = (0, None)


def _hold_unknown_key() -> None:
    """Answer an unknown key late: a flood of random keys then gets a few answers per second per slot,
    and the threads it holds sleep instead of competing with real traffic for the CPU. At most
    ACCESSCTL_UNKNOWN_KEY_SLOTS such answers wait at once per process (the rest are answered at once),
    so the flood can never hold every thread."""
    global _tarpit
    slots = settings.ACCESSCTL_UNKNOWN_KEY_SLOTS
    if slots <= 0:
        return
    if _tarpit[0] != slots:
        _tarpit = (slots, threading.BoundedSemaphore(slots))
    semaphore = _tarpit[1]
    if semaphore.acquire(blocking=False):
        try:
            time.sleep(settings.ACCESSCTL_UNKNOWN_KEY_DELAY_SECONDS)
        finally:
            semaphore.release()


def _resources(params: Mapping[str, Any]) -> dict[str, str]:
    """`model` / `mcp_server_id` / `agent_id` from the body or query; at least one, each a non-empty string.

    Names are matched exactly as sent: `" gpt-4o"` is not `gpt-4o` (a gateway that trimmed differently
    could otherwise be told yes for a name it then routes elsewhere).
    """
    found: dict[str, str] = {}
    for name in RESOURCE_PARAMS:
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise _Refusal(f"{name} must be a non-empty string.", "bad_request_error", 400, name)
        found[name] = value
    if not found:
        raise _Refusal("One of model, mcp_server_id or agent_id is required.", "bad_request_error", 400, "model")
    return found


def _query(request: Any) -> dict[str, str]:
    """The resource parameters (and `include`) of the query string. Parsed by hand: a QueryDict costs more than the check.

    A parameter given twice is refused (400): which one a gateway or proxy in front would act on is
    not ours to guess, so the answer must not be about one while the request goes on with the other.
    """
    found: dict[str, str] = {}
    for part in request.META.get("QUERY_STRING", "").split("&"):
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name in QUERY_PARAMS:
            if name in found:
                raise _Refusal(f"{name} may be given only once.", "bad_request_error", 400, name)
            found[name] = unquote_plus(value) if ("%" in value or "+" in value) else value
    return found


def _parsed_body(request: Any, empty: Any) -> Any:
    """The JSON body, bounded in size (413) and depth (400 naming the field); `empty` when there is none."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise _Refusal(BODY_TOO_LARGE, "request_too_large", 413, "body") from None
    if not raw:
        return empty
    try:
        return jsonbody.loads(raw)
    except jsonbody.TooDeep as exc:
        raise _Refusal(str(exc), "bad_request_error", 400, exc.param) from None
    except (ValueError, UnicodeDecodeError):
        raise _Refusal("Malformed request body: not JSON.", "bad_request_error", 400, "body") from None


def _json_body(request: Any) -> dict[str, Any]:
    data = _parsed_body(request, {})
    if not isinstance(data, dict):
        raise _Refusal("The request body must be a JSON object.", "bad_request_error", 400, "body")
    return data


# token → (snapshot, encoded 200 body, identity headers): the answer depends on the snapshot alone, so it is
# built once per snapshot object (a reloaded snapshot is a new object and gets a new answer). The answer
# with the effective models also depends on the catalog: token → (snapshot, catalog, encoded body).
_encoded: dict[str, tuple[KeySnapshot, bytes, tuple[tuple[str, str], ...]]] = {}
_encoded_with_models: dict[str, tuple[KeySnapshot, Any, bytes]] = {}

# The key's identity in response headers for `auth_request` / `ext_authz` callers, which see headers only
# (nginx's `auth_request_set $x $upstream_http_x_accessctl_user_id`). Values are percent-encoded (RFC 3986)
# when they hold anything but unreserved and a few harmless characters, so none can split a header.
IDENTITY_HEADERS = (
    ("X-Accessctl-User-Id", "user_id"),
    ("X-Accessctl-Team-Id", "team_id"),
    ("X-Accessctl-Organization-Id", "organization_id"),
    ("X-Accessctl-Key-Alias", "key_alias"),
    ("X-Accessctl-Key-Token", "token"),
)
ERROR_HEADER = "X-Accessctl-Error"  # a refusal's JSON body, for callers that only see headers (nginx)
_HEADER_SAFE = "@.:+=,;!$&'()*/"
INCLUDE_MODELS = "models"  # `include=models` / `"include": ["models"]`: add the key's effective models


def _identity_headers(key: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((header, quote(str(key[field]), safe=_HEADER_SAFE)) for header, field in IDENTITY_HEADERS if key[field])


def _memo(table: dict, token: str, entry: tuple) -> tuple:
    if len(table) >= cache.LOCAL_MAX_ENTRIES:
        table.clear()
    table[token] = entry
    return entry


def _allowed_response(snapshot: KeySnapshot | object, *, with_headers: bool, with_models: bool) -> HttpResponse:
    catalog = None
    if with_models:
        try:
            catalog = cache.get_catalog()
        except DatabaseError:
            raise _Refusal("The database is unavailable.", "no_db_connection", 503) from None
    if snapshot is MASTER:
        body = _allowed_body(snapshot, catalog)
        encoded, headers = json.dumps(body, separators=(",", ":")).encode(), _identity_headers(body["key"])
    else:
        memo = _encoded.get(snapshot.token)
        if memo is None or memo[0] is not snapshot:
            body = _allowed_body(snapshot, None)
            encoded = json.dumps(body, separators=(",", ":")).encode()
            memo = _memo(_encoded, snapshot.token, (snapshot, encoded, _identity_headers(body["key"])))
        encoded, headers = memo[1], memo[2]
        if catalog is not None:
            with_list = _encoded_with_models.get(snapshot.token)
            if with_list is None or with_list[0] is not snapshot or with_list[1] is not catalog:
                body = _allowed_body(snapshot, catalog)
                with_list = _memo(
                    _encoded_with_models,
                    snapshot.token,
                    (snapshot, catalog, json.dumps(body, separators=(",", ":")).encode()),
                )
            encoded = with_list[2]
    response = HttpResponse(encoded, content_type=_JSON)
    if with_headers:
        for header, value in headers:
            response[header] = value
    return response


_MASTER_LIMITS = {
    "tpm_limit": None, "rpm_limit": None, "max_parallel_requests": None, "max_budget": None, "soft_budget": None,
    "spend": None, "budget_duration": None, "budget_reset_at": None, "model_max_budget": {}, "model_spend": {},
    "team": None, "organization": None, "user": None,
}


def _allowed_body(snapshot: KeySnapshot | object, catalog: Mapping[str, str] | None) -> dict[str, Any]:
    """The 200 answer: who the key is and its limits and budgets at every level; with a catalog, also the
    models it may call (catalog models and explicit names, as `/v1/models` lists them before per-model
    budgets)."""
    if snapshot is MASTER:
        key = {"token": None, "key_alias": None, "user_id": MASTER_USER_ID, "team_id": None, "organization_id": None}
        body = {"allowed": True, "key": key, "limits": dict(_MASTER_LIMITS)}
        if catalog is not None:
            body["models"] = sorted(catalog)
        return body
    body = {
        "allowed": True,
        "key": {
            "token": snapshot.token,
            "key_alias": snapshot.key_alias,
            "user_id": snapshot.user_id,
            "team_id": snapshot.team_id,
            "organization_id": snapshot.organization_id,
        },
        "limits": dict(snapshot.limits),
    }
    if catalog is not None:
        body["models"] = allowed_names(snapshot, "models", catalog)
    return body


def check(request: Any, read_params: Callable[[Any], Mapping[str, Any]]) -> HttpResponse:
    """May the bearer call this model / MCP server / agent now? 200, or 401/403 with the reason's type.

    `read_params` reads the parameters (query string or JSON body) once the key is known. The query form
    (nginx `auth_request`, Envoy `ext_authz`) also answers in headers: the key's identity on a 200, the
    error body in `X-Accessctl-Error` on a refusal.
    """
    in_headers = read_params is _query
    try:
        snapshot = _caller(request)
        data = read_params(request)
        resources = _resources(data)
        if snapshot is not MASTER:
            decision = authorize(snapshot, now=timezone.now(), **resources)
            if not decision.allowed:
                raise _Refusal(decision.message, decision.type, 403, decision.param)
        include = data.get("include")
        with_models = include == INCLUDE_MODELS or (isinstance(include, list) and INCLUDE_MODELS in include)
        metrics.check_answered(None)
        return _allowed_response(snapshot, with_headers=in_headers, with_models=with_models)
    except _Refusal as refusal:
        metrics.check_answered(refusal.body["error"]["type"])
        response = _json(refusal.body, refusal.status)
        if in_headers:
            response[ERROR_HEADER] = json.dumps(refusal.body, separators=(",", ":"))  # ASCII: json escapes the rest
        return response


def reachable_models(request: Any) -> tuple[list[str], Mapping[str, str]]:
    """The models the bearer may call now and the catalog ({model_name: provider}): exactly the catalog
    models (and explicit names) for which the check answers 200. Raises `_Refusal`."""
    snapshot = _caller(request)
    try:
        catalog = cache.get_catalog()
    except DatabaseError:
        raise _Refusal("The database is unavailable.", "no_db_connection", 503) from None
    if snapshot is MASTER:
        return sorted(catalog), catalog
    now = timezone.now()
    status = status_decision(snapshot, now)
    if not status.allowed:
        raise _Refusal(status.message, status.type, 403, status.param)
    names = [
        name
        for name in allowed_names(snapshot, "models", catalog)
        if authorize(snapshot, now=now, model=name).allowed  # per-model budgets drop a model too
    ]
    return names, catalog


def model_list(request: Any) -> HttpResponse:
    """The models the bearer may call, in the OpenAI list shape."""
    try:
        names, catalog = reachable_models(request)
    except _Refusal as refusal:
        return _json(refusal.body, refusal.status)
    data = [
        {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": catalog.get(name) or "openai"}
        for name in names
    ]
    return _json({"object": "list", "data": data})


class _FastView(APIView):
    """A DRF class for the OpenAPI description only: requests skip DRF's per-request machinery (request
    wrapping, content negotiation, authenticators, permissions, throttles), which would cost more than
    the check itself; the handlers take the Django request and authenticate by hand."""

    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()
    schema = GatewaySchema()

    def dispatch(self, request, *args, **kwargs):
        allowed = request.method in ("GET", "HEAD", "POST")
        handler = getattr(self, request.method.lower(), None) if allowed else None
        if handler is None:
            body = error_body(f"Method {request.method} not allowed.", "method_not_allowed", None, 405)
            return _json(body, 405)
        return handler(request)


class AuthzCheckView(_FastView):
    """`/api/v1/authz/check`: may this key call this model (or MCP server, or agent)?"""

    @extend_schema(
        operation_id="authz_check_query",
        summary="Authorization check (query form, for nginx auth_request / Envoy ext_authz)",
        parameters=_QUERY,
        responses=_CHECK_RESPONSES,
        tags=["gateway"],
    )
    def get(self, request, *args, **kwargs):
        return check(request, _query)

    @extend_schema(
        operation_id="authz_check",
        summary="Authorization check",
        request=_CHECK_REQUEST,
        responses=_CHECK_RESPONSES,
        tags=["gateway"],
    )
    def post(self, request, *args, **kwargs):
        return check(request, _json_body)


class ModelListView(_FastView):
    """`/v1/models`: what the key may call, in the OpenAI list shape."""

    @extend_schema(
        operation_id="model_list", summary="Models this key may call", responses=_MODEL_LIST_RESPONSES, tags=["gateway"]
    )
    def get(self, request, *args, **kwargs):
        return model_list(request)


class ModelListAliasView(ModelListView):
    """`/models`: the same as `/v1/models` (LiteLLM's alias)."""

    @extend_schema(
        operation_id="model_list_alias",
        summary="Models this key may call (alias of /v1/models)",
        responses=_MODEL_LIST_RESPONSES,
        tags=["gateway"],
    )
    def get(self, request, *args, **kwargs):
        return model_list(request)
