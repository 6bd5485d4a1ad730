"""accessctl in front of a LiteLLM proxy: a `custom_auth` that asks accessctl before every call, and a
callback that reports each successful call's spend back to it (SPEC §6, "Gateways that ask").

Loaded by LiteLLM's own process, so it imports nothing from Django or accessctl: only LiteLLM, aiohttp
(a LiteLLM dependency) and the standard library. In the proxy's config.yaml:

    general_settings:
      custom_auth: accessctl_litellm.user_api_key_auth
    litellm_settings:
      callbacks: accessctl_litellm.usage_reporter

Configured by environment:
    ACCESSCTL_URL          where accessctl answers (default http://127.0.0.1:8000)
    ACCESSCTL_USAGE_KEY    a system user's key (or accessctl's master key) for POST /api/v1/usage;
                           unset: no spend is reported (a warning says so once)
    ACCESSCTL_TIMEOUT      seconds one check may take before the call is refused (default 2.0)
    ACCESSCTL_USAGE_RETRIES  attempts per list of usage reports before it is dropped with an error (default 10)
    ACCESSCTL_USAGE_BACKOFF / ACCESSCTL_USAGE_BACKOFF_MAX  first delay between attempts, doubling, and its
                           cap (default 0.5 s / 30 s)
    ACCESSCTL_USAGE_FLUSH_SECONDS / ACCESSCTL_USAGE_BATCH  a list is sent when this many reports wait, or
                           this long after the first of them (default 1 s / 100): sooner costs accessctl
                           one request (and, with no broker, one apply) per interval
    ACCESSCTL_USAGE_MAX_IN_FLIGHT  lists sent at the same time (default 4)
    ACCESSCTL_USAGE_MAX_QUEUE  reports held while accessctl does not take them; beyond, the oldest are
                           dropped with an error (default 100,000)

Decisions: every request asks accessctl once (`POST /api/v1/authz/check`; the model listing routes ask
`GET /v1/models`), on one pooled connection pool per event loop, so a key blocked in accessctl is refused on
its very next call. A refusal becomes LiteLLM's error with accessctl's status and machine-readable `type`
(401 unknown key, 403 denied model, blocked, expired, over budget; 400 malformed). accessctl unreachable,
slow or failing is a 503 `accessctl_unavailable`: the call is refused (fail closed), and the next call asks
again, so the proxy recovers as soon as accessctl does.

Spend: the callback queues each call's report in memory and a background task sends them as lists (one
`POST /api/v1/usage` per list, each report with the LiteLLM call id as its idempotency key), so reporting
costs accessctl one request per list rather than one per call, and never holds up LiteLLM (`UsageReporter`).
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import hmac
import itertools
import json
import logging
import os
import random
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import aiohttp
from fastapi import Request
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LiteLLMRoutes, LitellmUserRoles, ProxyException, UserAPIKeyAuth
from litellm.proxy.auth.auth_utils import get_request_route
from litellm.proxy.auth.route_checks import RouteChecks
from litellm.proxy.common_utils.http_parsing_utils import _read_request_body

logger = logging.getLogger("accessctl.litellm")

ACCESSCTL_URL = os.environ.get("ACCESSCTL_URL", "http://127.0.0.1:8000").rstrip("/")
USAGE_KEY = os.environ.get("ACCESSCTL_USAGE_KEY", "")
TIMEOUT_SECONDS = float(os.environ.get("ACCESSCTL_TIMEOUT", "2.0"))
USAGE_RETRIES = int(os.environ.get("ACCESSCTL_USAGE_RETRIES", "10"))  # attempts per list of reports
USAGE_BACKOFF_SECONDS = float(os.environ.get("ACCESSCTL_USAGE_BACKOFF", "0.5"))  # doubles per attempt
USAGE_BACKOFF_MAX_SECONDS = float(os.environ.get("ACCESSCTL_USAGE_BACKOFF_MAX", "30"))
USAGE_FLUSH_SECONDS = float(os.environ.get("ACCESSCTL_USAGE_FLUSH_SECONDS", "1.0"))  # a list waits at most this
USAGE_BATCH = int(os.environ.get("ACCESSCTL_USAGE_BATCH", "100"))  # reports that are sent at once
USAGE_MAX_IN_FLIGHT = int(os.environ.get("ACCESSCTL_USAGE_MAX_IN_FLIGHT", "4"))  # lists sent at the same time
USAGE_MAX_QUEUE = int(os.environ.get("ACCESSCTL_USAGE_MAX_QUEUE", "100000"))  # then the oldest are dropped
MAX_REPORTS_PER_LIST = 1000  # accessctl's limit per request
POOL_SIZE = int(os.environ.get("ACCESSCTL_POOL_SIZE", "100"))

CHECK_URL = f"{ACCESSCTL_URL}/api/v1/authz/check"
MODELS_URL = f"{ACCESSCTL_URL}/v1/models"
USAGE_URL = f"{ACCESSCTL_URL}/api/v1/usage"

UNAVAILABLE = "accessctl_unavailable"
# LiteLLM reads an empty `models` as "every model"; a key that may call nothing gets this instead.
NO_MODELS = "no-default-models"
MARKER = {"accessctl": "1"}  # in UserAPIKeyAuth.metadata: the callback reports only accessctl's keys

MODEL_LIST_ROUTES = frozenset({"/v1/models", "/models", "/model/info", "/v1/model/info", "/model_group/info"})
# LLM routes that name no model (files, batches, threads, …) ask for the key's status and models only;
# these need a model, and a request to them without one is refused with accessctl's 400.
MODEL_REQUIRED_ROUTES = frozenset(
    path
    for route in ("chat/completions", "completions", "embeddings", "responses", "messages", "moderations",
                  "images/generations", "audio/speech", "audio/transcriptions", "rerank")
    for path in (f"/{route}", f"/v1/{route}", f"/openai/{route}")
)
_AGENT_ROUTE = re.compile(r"^(?:/v1)?/a2a/([^/]+)")
_MCP_PATH = re.compile(r"^/mcp/([^/]+)|^/([^/]+)/mcp(?:/|$)")
_MCP_RESERVED = frozenset({"sse", "tools", "proxy", "mcp", "mcp-rest", "v1", "server"})
_PATH_MODEL_PARAMS = ("model", "model_name", "deployment_id", "model_id")
_PUBLIC_ROUTES = LiteLLMRoutes.public_routes.value
_ITEM_PARAM = re.compile(r"^\[(\d+)\]")


# --- the HTTP client: one pool per event loop ------------------------------------------------------------

_sessions: dict[int, aiohttp.ClientSession] = {}


def _session() -> aiohttp.ClientSession:
    """The pooled client of the running loop (created on first use inside it, as aiohttp requires)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(id(loop))
    if session is None or session.closed:
        connector = aiohttp.TCPConnector(limit=POOL_SIZE, ttl_dns_cache=300, keepalive_timeout=30)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
            json_serialize=lambda value: json.dumps(value, separators=(",", ":")),
            skip_auto_headers=("User-Agent",),
        )
        _sessions[id(loop)] = session
    return session


def _refusal(status: int, body: Any) -> ProxyException:
    """accessctl's refusal as LiteLLM's error: same status, same `type`, `message` and `param`."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return _unavailable(f"accessctl answered {status} without an error body.")
    if status not in (400, 401, 403, 404, 413):
        # 5xx (e.g. its database is down): refuse, never pass the call through.
        return ProxyException(
            message=str(error.get("message") or "accessctl is unavailable."),
            type=str(error.get("type") or UNAVAILABLE),
            param=error.get("param"),
            code=503,
        )
    return ProxyException(
        message=str(error.get("message") or "Refused by accessctl."),
        type=str(error.get("type") or "auth_error"),
        param=error.get("param"),
        code=status,
    )


def _unavailable(reason: str) -> ProxyException:
    return ProxyException(
        message=f"Refused: accessctl could not be asked ({reason}). The call was not made.",
        type=UNAVAILABLE,
        param=None,
        code=503,
    )


async def _ask(method: str, url: str, api_key: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One request to accessctl on the key's behalf: the 200 answer, or LiteLLM's error for anything else."""
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        async with _session().request(method, url, json=body, headers=headers) as response:
            status = response.status
            try:
                payload = await response.json(content_type=None)
            except ValueError:
                payload = None
    except TimeoutError:
        raise _unavailable(f"no answer within {TIMEOUT_SECONDS:g} s") from None
    except aiohttp.ClientError as exc:
        raise _unavailable(type(exc).__name__) from None
    if status == 200 and isinstance(payload, dict):
        return payload
    raise _refusal(status, payload)


# --- custom_auth -----------------------------------------------------------------------------------------


def _malformed_key(api_key: Any) -> bool:
    """No key, or one no accessctl key can be (whitespace or control characters inside): 401 without asking."""
    return not isinstance(api_key, str) or not api_key or any(c.isspace() or not c.isprintable() for c in api_key)


def _is_proxy_master_key(api_key: str) -> bool:
    """The LiteLLM proxy's own master key stays its administrator's (LiteLLM's admin routes and UI)."""
    proxy_server = sys.modules.get("litellm.proxy.proxy_server")
    master = getattr(proxy_server, "master_key", None)
    return isinstance(master, str) and bool(master) and hmac.compare_digest(api_key.encode(), master.encode())


def _mcp_servers(route: str, request: Request) -> list[str]:
    names = [n.strip() for n in request.headers.get("x-mcp-servers", "").split(",") if n.strip()]
    match = _MCP_PATH.match(route)
    if match:
        name = match.group(1) or match.group(2)
        if name and name not in _MCP_RESERVED:
            names.append(name)
    return list(dict.fromkeys(names))


def _path_model(request: Request) -> str | None:
    for name in _PATH_MODEL_PARAMS:
        value = request.path_params.get(name)
        if isinstance(value, str) and value:
            return value
    value = request.query_params.get("model")
    return value or None


def _user_api_key_auth(api_key: str, answer: Mapping[str, Any], models: list[str] | None) -> UserAPIKeyAuth:
    """LiteLLM's view of the key, from accessctl's answer: identity, effective models, and each level's
    rate limits and budgets, so that LiteLLM's own limiters (rpm, tpm, parallel requests) enforce them."""
    key = answer.get("key") or {}
    limits = answer.get("limits") or {}
    team = limits.get("team") or {}
    org = limits.get("organization") or {}
    user = limits.get("user") or {}
    return UserAPIKeyAuth(
        api_key=api_key,  # LiteLLM keeps only its SHA-256, which is accessctl's token for the key
        key_alias=key.get("key_alias"),
        user_id=key.get("user_id"),
        team_id=key.get("team_id"),
        org_id=key.get("organization_id"),
        user_role=LitellmUserRoles.INTERNAL_USER,
        models=(models or [NO_MODELS]) if models is not None else [],
        metadata=dict(MARKER),
        tpm_limit=limits.get("tpm_limit"),
        rpm_limit=limits.get("rpm_limit"),
        max_parallel_requests=limits.get("max_parallel_requests"),
        max_budget=limits.get("max_budget"),
        soft_budget=limits.get("soft_budget"),
        spend=limits.get("spend") or 0.0,
        budget_duration=limits.get("budget_duration"),
        budget_reset_at=limits.get("budget_reset_at"),
        model_max_budget=limits.get("model_max_budget") or {},
        model_spend=limits.get("model_spend") or {},
        team_alias=team.get("team_alias"),
        team_tpm_limit=team.get("tpm_limit"),
        team_rpm_limit=team.get("rpm_limit"),
        team_max_budget=team.get("max_budget"),
        team_spend=team.get("spend"),
        organization_alias=org.get("organization_alias"),
        organization_tpm_limit=org.get("tpm_limit"),
        organization_rpm_limit=org.get("rpm_limit"),
        organization_max_budget=org.get("max_budget"),
        user_email=user.get("user_email"),
        user_tpm_limit=user.get("tpm_limit"),
        user_rpm_limit=user.get("rpm_limit"),
        user_max_budget=user.get("max_budget"),
        user_spend=user.get("spend"),
    )


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    """LiteLLM's `custom_auth`: ask accessctl whether this key may make this call, once, now."""
    route = get_request_route(request)
    if route in _PUBLIC_ROUTES:
        return UserAPIKeyAuth(user_role=LitellmUserRoles.INTERNAL_USER_VIEW_ONLY)
    if _malformed_key(api_key):
        raise ProxyException(
            message="Authentication Error, no valid API key passed in (expected `Authorization: Bearer sk-…`).",
            type="auth_error",
            param="api_key",
            code=401,
        )
    if _is_proxy_master_key(api_key):
        return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN)

    if route in MODEL_LIST_ROUTES:
        listing = await _ask("GET", MODELS_URL, api_key)
        models = [entry["id"] for entry in listing.get("data", []) if isinstance(entry, dict) and "id" in entry]
        return UserAPIKeyAuth(
            api_key=api_key, user_role=LitellmUserRoles.INTERNAL_USER, models=models or [NO_MODELS],
            metadata=dict(MARKER),
        )

    body: dict[str, Any] = {}
    agent = _AGENT_ROUTE.match(route)
    servers = _mcp_servers(route, request) if route.startswith("/mcp") or route.endswith("/mcp") else []
    if agent:
        body["agent_id"] = agent.group(1)
    elif servers:
        answers = await asyncio.gather(
            *(_ask("POST", CHECK_URL, api_key, {"mcp_server_id": name}) for name in servers)
        )
        return _user_api_key_auth(api_key, answers[0], None)
    elif RouteChecks.is_llm_api_route(route):
        data = await _read_request_body(request)  # parsed once by LiteLLM already: this reads its copy
        model = data.get("model") if isinstance(data, dict) else None
        model = model if model is not None else _path_model(request)
        if model is not None:
            body["model"] = model
        elif route not in MODEL_REQUIRED_ROUTES:
            listing = await _ask("GET", MODELS_URL, api_key)  # no resource named: the key's status decides
            models = [entry["id"] for entry in listing.get("data", []) if isinstance(entry, dict)]
            return UserAPIKeyAuth(
                api_key=api_key, user_role=LitellmUserRoles.INTERNAL_USER, models=models or [NO_MODELS],
                metadata=dict(MARKER),
            )
        # else: ask without a model, and accessctl's 400 names the missing field
    else:
        # LiteLLM's management, spend and UI routes act on LiteLLM's own database, which accessctl
        # replaces: a virtual key never reaches them (the proxy's master key still does).
        raise ProxyException(
            message=f"Route {route} is not open to virtual keys: manage keys, teams and spend in accessctl.",
            type="route_not_allowed",
            param="route",
            code=403,
        )
    body["include"] = ["models"]
    answer = await _ask("POST", CHECK_URL, api_key, body)
    return _user_api_key_auth(api_key, answer, answer.get("models") if "models" in answer else None)


# --- spend reporting -------------------------------------------------------------------------------------


class UsageReporter(CustomLogger):
    """Reports each successful call's cost (LiteLLM's `response_cost`), model and tokens to accessctl's
    `POST /api/v1/usage`, in lists.

    The callback only queues the report (in memory, O(1): LiteLLM's request path never waits on
    accessctl). A background task per event loop sends what is queued as one list when USAGE_BATCH
    reports are waiting or USAGE_FLUSH_SECONDS after the first of them, at most USAGE_MAX_IN_FLIGHT lists
    at once. Each report carries the LiteLLM call id as its `idempotency_key`, so a list retried after a
    timeout, a connection error, a 429 or a 5xx (exponential backoff with jitter, the same keys each time)
    is counted once. A 400/404 naming one item (`[i].…`, e.g. a key deleted meanwhile) drops that report
    with an error and sends the rest again at once; any other 4xx is final for the list. What is still
    unacknowledged when the process exits (a clean stop) is sent synchronously by an `atexit` hook; a
    process killed outright loses it (at most USAGE_FLUSH_SECONDS of calls, plus lists being retried).
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()  # LiteLLM may log from more than one thread
        self._waiting: dict[str, dict[str, Any]] = {}  # idempotency key → report, not sent yet
        self._unacked: dict[str, dict[str, Any]] = {}  # every report not acknowledged yet (waiting or sent)
        self._loops: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event, asyncio.Task]] = {}
        self._in_flight: set[asyncio.Task] = set()
        self._warned = False
        self._exit_hook = False
        self.dropped = 0  # reports given up (refused, retries exhausted, queue full)

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        report = usage_report(kwargs)
        if report is None:
            return
        if not USAGE_KEY:
            if not self._warned:
                logger.warning("ACCESSCTL_USAGE_KEY is not set: spend is not reported to accessctl")
                self._warned = True
            return
        self.enqueue(*report)

    # --- the queue ---------------------------------------------------------------------------------------

    def enqueue(self, idempotency_key: str, body: Mapping[str, Any]) -> None:
        """Queue one report for the next list (inside a running event loop); never waits."""
        item = {**body, "idempotency_key": idempotency_key}
        with self._lock:
            if idempotency_key in self._unacked:
                return  # the same call logged twice: one report
            if len(self._unacked) >= USAGE_MAX_QUEUE:
                oldest = next(iter(self._waiting), None)
                if oldest is None:
                    self._drop([item], "the queue is full of reports being sent")
                    return
                self._drop([self._waiting.pop(oldest)], f"the queue is full ({USAGE_MAX_QUEUE} reports)")
                self._unacked.pop(oldest, None)
            self._waiting[idempotency_key] = item
            self._unacked[idempotency_key] = item
            waiting = len(self._waiting)
        if not self._exit_hook:
            self._exit_hook = True
            atexit.register(self.flush_at_exit)
        wakeup = self._flusher()
        if waiting == 1 or waiting >= USAGE_BATCH:
            wakeup.set()

    def _flusher(self) -> asyncio.Event:
        """The running loop's wake-up event, starting its flushing task on first use."""
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is None or entry[0] is not loop or entry[2].done():
            wakeup = asyncio.Event()
            task = loop.create_task(self._flush_forever(wakeup), name="accessctl-usage-flusher")
            entry = self._loops[id(loop)] = (loop, wakeup, task)
        return entry[1]

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            keys = list(itertools.islice(self._waiting, MAX_REPORTS_PER_LIST))
            return [self._waiting.pop(key) for key in keys]

    async def _flush_forever(self, wakeup: asyncio.Event) -> None:
        slots = asyncio.Semaphore(USAGE_MAX_IN_FLIGHT)
        while True:
            if not self._waiting:
                wakeup.clear()
                await wakeup.wait()
            if len(self._waiting) < USAGE_BATCH:  # gather a list for up to USAGE_FLUSH_SECONDS
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), USAGE_FLUSH_SECONDS)
            await slots.acquire()
            items = self._take()
            if not items:
                slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self.deliver(items))
            self._in_flight.add(task)
            task.add_done_callback(lambda done: (self._in_flight.discard(done), slots.release()))

    async def flush(self) -> None:
        """Send everything queued now and wait until every list in flight is settled (tests, shutdown)."""
        while True:
            items = self._take()
            sending = [asyncio.get_running_loop().create_task(self.deliver(items))] if items else []
            pending = [task for task in self._in_flight if task.get_loop() is asyncio.get_running_loop()]
            if not sending and not pending:
                return
            await asyncio.gather(*sending, *pending, return_exceptions=True)

    # --- sending ---------------------------------------------------------------------------------------------

    def _acknowledge(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            for item in items:
                self._unacked.pop(item["idempotency_key"], None)

    def _drop(self, items: list[dict[str, Any]], reason: str) -> None:
        self.dropped += len(items)
        logger.error("accessctl usage: %d report(s) dropped (%s): %s", len(items), reason,
                     [(i["idempotency_key"], i["model"], i["spend"]) for i in items[:20]])

    async def deliver(self, items: list[dict[str, Any]]) -> bool:
        """POST the list until accessctl takes it (True), refuses it for good, or the retries run out."""
        headers = {"Authorization": f"Bearer {USAGE_KEY}"}
        delay = USAGE_BACKOFF_SECONDS
        attempt = 0
        while items:
            attempt += 1
            try:
                async with _session().post(USAGE_URL, json=items, headers=headers) as response:
                    status = response.status
                    detail = (await response.text())[:500]
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, detail = None, type(exc).__name__
            if status is not None and status < 300:
                self._acknowledge(items)
                return True
            if status is not None and status != 429 and status < 500:
                index = _refused_item(status, detail, len(items))
                if index is None:
                    logger.error("accessctl refused a list of %d usage reports (%s): %s", len(items), status, detail)
                    self._acknowledge(items)
                    self._drop(items, f"HTTP {status}")
                    return False
                # One report is refused (its key was deleted, …): drop it, send the rest at once.
                refused = items.pop(index)
                self._acknowledge([refused])
                self._drop([refused], f"HTTP {status}: {detail}")
                attempt -= 1
                continue
            if attempt >= USAGE_RETRIES:
                self._acknowledge(items)
                self._drop(items, f"{USAGE_RETRIES} attempts, the last {status or detail}")
                return False
            logger.warning("accessctl usage: a list of %d reports failed (%s); retry %d in %.1f s", len(items),
                           status or detail, attempt, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, USAGE_BACKOFF_MAX_SECONDS)
        return False

    def flush_at_exit(self) -> None:
        """Send what is still unacknowledged, synchronously (the event loop is gone at exit)."""
        with self._lock:
            items = list(self._unacked.values())
            self._unacked.clear()
            self._waiting.clear()
        for start in range(0, len(items), MAX_REPORTS_PER_LIST):
            chunk = items[start:start + MAX_REPORTS_PER_LIST]
            if not _post_now(chunk):
                self._drop(chunk, "accessctl unreachable at exit")


def _refused_item(status: int, detail: str, count: int) -> int | None:
    """The index of the one report a 400/404 names (`param` `[i].…`), or None when it names none."""
    if status not in (400, 404):
        return None
    try:
        param = json.loads(detail)["error"]["param"]
    except (ValueError, KeyError, TypeError):
        return None
    match = _ITEM_PARAM.match(param) if isinstance(param, str) else None
    index = int(match.group(1)) if match else None
    return index if index is not None and index < count else None


def _post_now(items: list[dict[str, Any]], attempts: int = 3) -> bool:
    """One list by plain blocking HTTP (no event loop): True once accessctl took it."""
    data = json.dumps(items, separators=(",", ":")).encode()
    for attempt in range(attempts):
        request = urllib.request.Request(USAGE_URL, data=data, method="POST", headers={
            "Authorization": f"Bearer {USAGE_KEY}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                if response.status < 300:
                    return True
        except urllib.error.HTTPError as exc:
            if exc.code != 429 and exc.code < 500:
                logger.error("accessctl refused the usage reports at exit (%s)", exc.code)
                return False
        except (OSError, TimeoutError):
            pass
        time.sleep(0.2 * (attempt + 1))
    return False


def usage_report(kwargs: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(idempotency key, body) for a successful call made with an accessctl key; None for anything else."""
    payload = kwargs.get("standard_logging_object") or {}
    metadata = payload.get("metadata") or {}
    auth_metadata = metadata.get("user_api_key_auth_metadata") or {}
    token = metadata.get("user_api_key_hash")
    if not token or auth_metadata.get("accessctl") != MARKER["accessctl"]:
        return None  # the proxy's master key, a health check, a key accessctl did not vouch for
    model = payload.get("model_group") or kwargs.get("model")
    call_id = payload.get("litellm_call_id") or kwargs.get("litellm_call_id") or payload.get("id")
    if not model or not call_id:
        return None
    cost = payload.get("response_cost", kwargs.get("response_cost"))
    body = {
        "key": token,
        "model": model,
        "spend": float(cost) if isinstance(cost, (int, float)) and cost > 0 else 0.0,
        "prompt_tokens": int(payload.get("prompt_tokens") or 0),
        "completion_tokens": int(payload.get("completion_tokens") or 0),
    }
    return f"litellm-{call_id}", body


usage_reporter = UsageReporter()
