"""The one decision table: `can(actor, action, target)` → allowed, or the exact status and error type.

Pure: an `Actor` carries the caller's platform role and memberships (loaded once per request by
`actor_for`), a `Target` the facts of the row acted on. The REST API, the LiteLLM-compatible routes,
the admin and the commands all ask here (SPEC §2). Rows the caller may not even see answer 404, the
same as a missing row, so ids cannot be probed (SPEC §3).

One module per concept (facts, actions, whose, routes, rules, rows); everything is read as `policy.X`.
"""
from .actions import (  # noqa: F401
    ACTIONS,
    FIELD_ACTIONS,
    KEY_ACTION_ROUTE,
    READ_ACTIONS,
    SERVICE_ACCOUNT_ACTIONS,
    WRITE_ACTIONS,
    actions_for,
)
from .facts import (  # noqa: F401
    ALLOW,
    NOT_FOUND,
    Actor,
    Target,
    UserFacts,
    Verdict,
    deny,
)
from .routes import (  # noqa: F401
    CHECK_ROUTE,
    GATEWAY_ROUTES,
    INFO_ROUTES,
    KEY_TYPE_DEFAULT,
    KEY_TYPE_ROUTES,
    KEY_TYPES,
    LLM_API_ROUTES,
    MANAGEMENT_ROUTES,
    MAX_ALLOWED_ROUTES,
    MODEL_INFO_ROUTES,
    MODEL_LIST_ROUTES,
    READ_METHODS,
    READ_POSTS,
    ROUTE_DENIED,
    ROUTE_GROUPS,
    USAGE_ROUTE,
    can_change_routes,
    is_route_restricted,
    may_call_route,
    normal_route,
    refused_gateway_routes,
    route_groups,
    routes_within,
)
from .rows import (  # noqa: F401
    access_group_target,
    actor_for,
    bulk_job_target,
    key_target,
    new_key_target,
    organization_target,
    team_target,
    user_facts,
    user_target,
)
from .rules import (  # noqa: F401
    can,
    can_grant_models,
    raise_refusal,
    require,
    user_facts_of,
)
from .whose import (  # noqa: F401
    can_add_member,
    can_change_own_membership,
    manages_user,
    may_own_key,
)
