"""The laws of SPEC §2-§3 that hold for whole classes of callers and rows, checked over every action and
every target of the table (test_policy_table.py), or over the callers and rows hypothesis draws.

- proxy admins (and the master key) may do everything;
- readers (admin viewers, system users) read everything and write nothing (system users: but usage);
- a key without a user manages nothing: outside its info routes, 401 (usage reports: 403, as for anyone);
- another tenant's row answers 404, whatever the action (REST: tests/authz/test_rest_laws.py);
- viewers never write (but their own password);
- nobody grants more than they hold: models, platform roles, a key's own routes, their own membership.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from hypothesis import given, settings
from hypothesis import strategies as st

from accessctl.policy import (
    ACTIONS,
    KEY_TYPES,
    READ_ACTIONS,
    ROUTE_GROUPS,
    SERVICE_ACCOUNT_ACTIONS,
    WRITE_ACTIONS,
    Actor,
    Target,
    UserFacts,
    can,
    can_change_own_membership,
    can_change_routes,
    can_grant_models,
    may_call_route,
)
from tests.policy.test_policy_table import ACTORS, TARGETS

A, B, TA, TB = "org-a", "org-b", "team-a", "team-b"
ME = "me@a.test"


# --- whole classes, every action × every target ----------------------------------------------------


def _every_action_and_target():
    for action in sorted(ACTIONS):
        for name, target in TARGETS.items():
            yield action, name, target


def test_proxy_admins_and_the_master_key_may_do_everything():
    for actor in ("proxy admin", "master key"):
        refused = [(a, t) for a, t, target in _every_action_and_target() if not can(ACTORS[actor], a, target)]
        assert refused == [], actor


def test_readers_read_everything_and_write_nothing_but_system_users_report_usage():
    for actor in ("admin viewer", "system user"):
        for action, name, target in _every_action_and_target():
            verdict = can(ACTORS[actor], action, target)
            if action in READ_ACTIONS or (actor == "system user" and action == "usage:report"):
                assert verdict.allowed, (actor, action, name)
            else:
                assert (verdict.status, verdict.type) == (403, "auth_error"), (actor, action, name)


def test_a_key_without_a_user_manages_nothing():
    for action, name, target in _every_action_and_target():
        if (
            action not in SERVICE_ACCOUNT_ACTIONS and action != "usage:report"
        ):  # usage: 403 for all but system users
            verdict = can(ACTORS["team key"], action, target)
            assert (verdict.status, verdict.type) == (401, "auth_error"), (action, name)


# --- callers hypothesis draws ---------------------------------------------------------------------

ORG_ROLE = st.sampled_from(["org_admin", "internal_user", "internal_user_viewer"])
TEAM_ROLE = st.sampled_from(["admin", "user"])


@st.composite
def callers_of_tenant_a(draw, platform_roles=("internal_user", "internal_user_viewer")) -> Actor:
    """A user with no platform role above internal_user, who belongs to nothing, or to org A and/or team A."""
    org_roles = draw(st.dictionaries(st.just(A), ORG_ROLE, max_size=1))
    team_roles = draw(st.dictionaries(st.just(TA), TEAM_ROLE, max_size=1))
    return Actor(
        user_id=ME,
        platform_role=draw(st.sampled_from(platform_roles)),
        org_roles=org_roles,
        team_roles=team_roles,
        team_org_ids=dict.fromkeys(team_roles, A),
    )


KEY_OF_TEAM_A = Actor(user_id=None, platform_role=None, key_team_id=TA, key_token="tok-team-a")
GRANTS = st.none() | st.lists(
    st.sampled_from(["/key/generate", "/key/update", "/key/delete", "/key/info", "/key/list", "/key/health"]),
    unique=True,
).map(tuple)


def _resource(action: str) -> str:
    return action.split(":", 1)[0]


@st.composite
def rows_of_tenant_b(draw) -> tuple[str, Target]:
    """An existing row of tenant B (never the caller's own), and an action on it (no creates: they name no row)."""
    kind = draw(st.sampled_from(["key", "team", "user", "organization", "access_group", "audit", "bulk_job"]))
    actions = sorted(a for a in ACTIONS if _resource(a) == kind and not a.endswith((":create", ":generate")))
    action = draw(st.sampled_from(actions))
    owner = draw(st.sampled_from(["mallory", "boss@b.test"]))
    if kind == "key":
        target = draw(
            st.sampled_from(
                [
                    Target(
                        organization_id=B,
                        team_id=TB,
                        owner_user_id=owner,
                        member_permissions=draw(GRANTS),
                        key_token="tok-b",
                    ),
                    Target(organization_id=B, owner_user_id=owner, key_token="tok-b"),
                    Target(owner_user_id=owner, key_token="tok-b"),  # a personal key outside any organization
                ]
            )
        )
    elif kind == "team":
        target = Target(organization_id=B, team_id=TB, member_permissions=draw(GRANTS))
    elif kind == "user":
        target = Target(
            owner_user_id=owner,
            user_org_ids=(B,),
            user_team_ids=draw(st.sampled_from([(), (TB,)])),
            owner=UserFacts(owner, org_roles=((B, draw(ORG_ROLE)),)),
        )
    elif kind == "bulk_job":
        target = Target(organization_id=B, owner_user_id=owner)
    else:
        target = Target(organization_id=B)
    return action, target


@settings(max_examples=300, deadline=None)
@given(caller=callers_of_tenant_a(), row=rows_of_tenant_b())
def test_another_tenants_row_answers_404_whatever_the_action(caller, row):
    action, target = row
    verdict = can(caller, action, target)
    assert (verdict.status, verdict.type) == (404, "not_found_error"), verdict.message


@settings(max_examples=100, deadline=None)
@given(row=rows_of_tenant_b())
def test_a_key_without_a_user_finds_no_row_of_another_tenant(row):
    action, target = row
    if action in SERVICE_ACCOUNT_ACTIONS:
        assert can(KEY_OF_TEAM_A, action, target).status == 404


@st.composite
def viewers(draw) -> Actor:
    """A caller whose every role is a viewer's: platform viewer, org viewer or member, team member (role user)."""
    orgs = draw(
        st.dictionaries(st.sampled_from([A, B]), st.sampled_from(["internal_user", "internal_user_viewer"]))
    )
    teams = draw(st.dictionaries(st.sampled_from([TA, TB]), st.just("user")))
    return Actor(
        user_id=ME,
        platform_role=draw(st.sampled_from(["proxy_admin_viewer", "internal_user_viewer"])),
        org_roles=orgs,
        team_roles=teams,
        team_org_ids={team: A if team == TA else B for team in teams},
    )


@settings(max_examples=300, deadline=None)
@given(
    viewer=viewers(), action=st.sampled_from(sorted(WRITE_ACTIONS)), target=st.sampled_from(sorted(TARGETS))
)
def test_viewers_never_write(viewer, action, target):
    verdict = can(viewer, action, TARGETS[target])
    own_password = action == "user:update_password" and TARGETS[target].owner_user_id == ME
    if own_password and viewer.platform_role == "internal_user_viewer":
        assert verdict.allowed  # a viewer still changes their own password (SPEC §2: "own things")
    else:
        assert not verdict.allowed, (action, target)


@settings(max_examples=200, deadline=None)
@given(
    caller=callers_of_tenant_a(),
    action=st.sampled_from(["user:create", "user:update", "user:update_role"]),
    role=st.sampled_from(["proxy_admin", "proxy_admin_viewer"]),
    where=st.sampled_from([A, B, None]),
    whom=st.sampled_from([None, "bob", ME]),
)
def test_nobody_but_a_proxy_admin_grants_an_admin_role(caller, action, role, where, whom):
    target = Target(
        organization_id=where, owner_user_id=whom, user_org_ids=(A,) if whom else (), new_platform_role=role
    )
    assert not can(caller, action, target)


@given(
    caller=callers_of_tenant_a(platform_roles=("internal_user", "internal_user_viewer", "proxy_admin_viewer"))
)
def test_nobody_but_a_proxy_admin_changes_their_own_membership(caller):
    assert not can_change_own_membership(caller, ME)
    assert can_change_own_membership(caller, "bob")  # someone else's: the membership rules decide


# Models: names and `*` patterns (SPEC §5) over a small alphabet, so that ceilings and requests overlap.
NAME = st.sampled_from(
    ["openai/gpt-4o", "openai/gpt-4o-mini", "openai/o1", "anthropic/claude-3", "mistral/large"]
)
PATTERN = st.sampled_from(["openai/*", "openai/gpt-*", "anthropic/*", "*-mini", "*"])
ENTRY = NAME | PATTERN
CEILING = st.lists(ENTRY, max_size=3) | st.just(["all-proxy-models"])


@settings(max_examples=400, deadline=None)
@given(
    caller=callers_of_tenant_a(),
    wanted=st.lists(ENTRY | st.sampled_from(["all-proxy-models", "all-team-models"]), min_size=1, max_size=3),
    ceilings=st.dictionaries(st.sampled_from(["team", "organization", "user"]), CEILING, min_size=1),
)
def test_nobody_grants_models_beyond_what_they_hold(caller, wanted, ceilings):
    """If granting is allowed, every model the grant lets through is let through by every ceiling."""
    if not can_grant_models(caller, wanted, ceilings):
        return
    probes = [
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
        "openai/o1",
        "anthropic/claude-3",
        "mistral/large",
        "google/gemini-mini",
        "openai/gpt-5",
    ]
    for model in probes:
        granted = any(
            w == "all-proxy-models" or fnmatchcase(model, w) for w in wanted if w != "all-team-models"
        )
        for ceiling in ceilings.values():
            if not ceiling or {"all-proxy-models", "*"} & set(ceiling):
                continue
            assert not granted or any(fnmatchcase(model, c) for c in ceiling), (model, wanted, ceiling)


# Routes: a key may narrow but never widen its own key_type / allowed_routes.
ROUTE = st.sampled_from(
    [
        "/key/info",
        "/key/generate",
        "/key/update",
        "/team/info",
        "/team/new",
        "/user/info",
        "/api/v1/keys",
        "/api/v1/keys/abc",
        "/v1/models",
        "/model/info",
        "/api/v1/authz/check",
        "/api/v1/usage",
        "/keyring",
    ]
)
ALLOWED_ENTRY = ROUTE | st.sampled_from(["/key", "/key/*", "/team", "/api/v1/*", *ROUTE_GROUPS])
RULE = st.tuples(st.sampled_from(KEY_TYPES), st.lists(ALLOWED_ENTRY, max_size=3))


@settings(max_examples=400, deadline=None)
@given(old=RULE, new=RULE, path=ROUTE, method=st.sampled_from(["GET", "POST"]))
def test_a_key_never_widens_its_own_routes(old, new, path, method):
    me = Actor(user_id=ME, platform_role="internal_user", key_token="tok-mine")
    if not can_change_routes(me, Target(owner_user_id=ME, key_token="tok-mine"), new=new, old=old):
        return
    if may_call_route(*new, path, method):
        assert may_call_route(*old, path, method), (old, new, path, method)


def test_every_action_is_a_read_or_a_write_never_both():
    assert READ_ACTIONS.isdisjoint(WRITE_ACTIONS)
    assert READ_ACTIONS | WRITE_ACTIONS == ACTIONS
