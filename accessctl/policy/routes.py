"""Which routes a key may call: key_type and allowed_routes (SPEC §2)."""
from __future__ import annotations

from collections.abc import Sequence

from .facts import (
    ALLOW,
    Actor,
    Target,
    Verdict,
    deny,
)

# --- which routes a key may call: key_type and allowed_routes (SPEC §2) ---------------------------
# A key acts with its user's rights narrowed by these two fields, as in LiteLLM: `llm_api` keys call the
# model routes only, `management` keys the management routes only, `read_only` keys the info (read)
# routes only, `default` keys anything; `allowed_routes` (paths, or the route-group names below)
# narrows further. Asked by the management API's authentication layer for every request a virtual key
# makes (`accessctl.tenancy`), and by the warm check through the key's snapshot (`keys.authz`).

KEY_TYPE_DEFAULT = "default"
KEY_TYPES = (KEY_TYPE_DEFAULT, "llm_api", "management", "read_only")
LLM_API_ROUTES = "llm_api_routes"
MANAGEMENT_ROUTES = "management_routes"
INFO_ROUTES = "info_routes"
ROUTE_GROUPS = (LLM_API_ROUTES, MANAGEMENT_ROUTES, INFO_ROUTES)
KEY_TYPE_ROUTES = {"llm_api": LLM_API_ROUTES, "management": MANAGEMENT_ROUTES, "read_only": INFO_ROUTES}
ROUTE_DENIED = "key_route_access_denied"

# The gateway's routes (keys/api/gateway_urls.py). The check and usage reports are model routes only; the
# model list is also an info route, and the model info routes are in all three groups (as in LiteLLM).
CHECK_ROUTE = "/api/v1/authz/check"
USAGE_ROUTE = "/api/v1/usage"
MODEL_LIST_ROUTES = ("/v1/models", "/models")
MODEL_INFO_ROUTES = ("/model/info", "/v1/model/info", "/model_group/info")
GATEWAY_ROUTES = (CHECK_ROUTE, USAGE_ROUTE, *MODEL_LIST_ROUTES, *MODEL_INFO_ROUTES)
_GATEWAY_ROUTE_GROUPS = {
    CHECK_ROUTE: frozenset({LLM_API_ROUTES}),
    USAGE_ROUTE: frozenset({LLM_API_ROUTES}),
    **{route: frozenset({LLM_API_ROUTES, INFO_ROUTES}) for route in MODEL_LIST_ROUTES},
    **{route: frozenset(ROUTE_GROUPS) for route in MODEL_INFO_ROUTES},
}
_READ = frozenset({MANAGEMENT_ROUTES, INFO_ROUTES})
_WRITE = frozenset({MANAGEMENT_ROUTES})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Management routes that only read although LiteLLM calls them with POST.
READ_POSTS = frozenset({"/key/health"})
MAX_ALLOWED_ROUTES = 100


def normal_route(path: str) -> str:
    """A route as the rules compare it: without a trailing slash (`/api/v1/keys/` is `/api/v1/keys`)."""
    return path.rstrip("/") or "/"


def route_groups(path: str, method: str) -> frozenset[str]:
    """The route groups a request belongs to. Everything but the gateway's routes is the management API;
    its reads (GET, and LiteLLM's read-only POSTs) are also info routes."""
    path = normal_route(path)
    gateway = _GATEWAY_ROUTE_GROUPS.get(path)
    if gateway is not None:
        return gateway
    return _READ if method.upper() in READ_METHODS or path in READ_POSTS else _WRITE


def _entry_matches(entry: str, path: str, groups: frozenset[str]) -> bool:
    """LiteLLM's matching of one `allowed_routes` entry: a group name, an exact path, a path prefix
    (`/key` covers `/key/info`, never `/keyring`), or a prefix ending in `*`."""
    if entry in ROUTE_GROUPS:
        return entry in groups
    if entry.endswith("*"):
        return path.startswith(entry[:-1])
    entry = normal_route(entry)
    return path == entry or path.startswith(entry + "/")


def is_route_restricted(key_type: str | None, allowed_routes: Sequence[str] | None) -> bool:
    return (key_type or KEY_TYPE_DEFAULT) != KEY_TYPE_DEFAULT or bool(allowed_routes)


def may_call_route(key_type: str | None, allowed_routes: Sequence[str] | None, path: str, method: str) -> Verdict:
    """May a key with this `key_type` and `allowed_routes` call this route? 403 `key_route_access_denied`
    otherwise. The master key and browser sessions are no keys: they are never asked."""
    if not is_route_restricted(key_type, allowed_routes):
        return ALLOW
    path = normal_route(path)
    groups = route_groups(path, method)
    group = KEY_TYPE_ROUTES.get(key_type or KEY_TYPE_DEFAULT)
    if group is not None and group not in groups:
        return deny(
            403,
            f"Virtual key of key_type={key_type} is not allowed to call this route: it may call {group} only. "
            f"Tried to call route: {method.upper()} {path}",
            ROUTE_DENIED,
        )
    if allowed_routes and not any(_entry_matches(entry, path, groups) for entry in allowed_routes):
        return deny(
            403,
            f"Virtual key is not allowed to call this route. Only allowed to call routes: {list(allowed_routes)}. "
            f"Tried to call route: {path}",
            ROUTE_DENIED,
        )
    return ALLOW


def refused_gateway_routes(key_type: str | None, allowed_routes: Sequence[str] | None) -> frozenset[str]:
    """The gateway routes a key may not call: decided once, when its snapshot is built, so the warm check
    pays a set lookup (the gateway routes' groups do not depend on the method)."""
    if not is_route_restricted(key_type, allowed_routes):
        return frozenset()
    return frozenset(r for r in GATEWAY_ROUTES if not may_call_route(key_type, allowed_routes, r, "POST"))


def _entry_within(entry: str, entries: Sequence[str]) -> bool:
    """Does every route `entry` matches also match one of `entries`? Conservative: when unsure, no."""
    if entry in ROUTE_GROUPS:
        return entry in entries
    wildcard = entry.endswith("*")
    prefix = entry[:-1] if wildcard else normal_route(entry)
    for other in entries:
        if other == MANAGEMENT_ROUTES:
            # Every route outside the gateway's is a management route, whatever its method.
            gateway = [r for r in GATEWAY_ROUTES if _entry_matches(entry, r, _WRITE)]
            if all(MANAGEMENT_ROUTES in _GATEWAY_ROUTE_GROUPS[r] for r in gateway):
                return True
        elif other in ROUTE_GROUPS:
            continue  # a path's sub-routes may be writes or management routes: never wholly these groups
        elif other.endswith("*"):
            if prefix.startswith(other[:-1]):
                return True
        else:
            base = normal_route(other)
            if (not wildcard and prefix == base) or prefix.startswith(base + "/"):
                return True
    return False


def _rule_within(key_type: str, allowed_routes: Sequence[str], entries: Sequence[str]) -> bool:
    """Is every route the rule (key_type, allowed_routes) lets through matched by one of `entries`?"""
    if allowed_routes and all(_entry_within(entry, entries) for entry in allowed_routes):
        return True
    group = KEY_TYPE_ROUTES.get(key_type)
    return group is not None and group in entries


def routes_within(new: tuple[str, Sequence[str]], old: tuple[str, Sequence[str]]) -> bool:
    """Does the rule `new` (key_type, allowed_routes) let through no route that `old` refuses?"""
    old_type, old_routes = old
    new_type, new_routes = new
    old_group = KEY_TYPE_ROUTES.get(old_type)
    if old_group is not None and not (new_type == old_type or _rule_within(new_type, new_routes, (old_group,))):
        return False
    return not old_routes or _rule_within(new_type, new_routes, old_routes)


def can_change_routes(
    actor: Actor, target: Target, *, new: tuple[str, Sequence[str]], old: tuple[str, Sequence[str]]
) -> Verdict:
    """Setting a key's key_type / allowed_routes is part of updating it (`key:update`, asked separately);
    but a key never widens itself: the key the request is made with may only narrow its own rule."""
    if actor.key_token is None or target.key_token != actor.key_token or routes_within(new, old):
        return ALLOW
    return deny(403, "A key may not widen its own key_type or allowed_routes; use a key that may update it.")
