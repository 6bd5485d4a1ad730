"""SPEC §2 as a table: every role × every action × own tenant / other tenant → allowed, or the exact refusal.

The expectations below are written from SPEC §2-§3 and the LiteLLM reference (statuses and error types
clients rely on), not read off `accessctl.policy`. Each role's column is data; the rows are generated
by crossing it with every action and target. Pure `Actor`/`Target` objects: no database.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from accessctl.policy import ACTIONS, READ_ACTIONS, WRITE_ACTIONS, Actor, Target, UserFacts, can
from orgs.roles import BASELINE_TEAM_MEMBER_PERMISSIONS, TEAM_MEMBER_PERMISSIONS

ORG_A, ORG_B = "0a000000-0000-4000-8000-00000000000a", "0b000000-0000-4000-8000-00000000000b"
TEAM_A, TEAM_B = "1a000000-0000-4000-8000-00000000001a", "1b000000-0000-4000-8000-00000000001b"
ME = "me@example.test"


@dataclass(frozen=True)
class Expect:
    status: int  # 200 means allowed
    type: str = ""

    def __str__(self) -> str:
        return "allowed" if self.status == 200 else f"{self.status} {self.type}"


OK = Expect(200)
BAD_REQUEST = Expect(400, "bad_request_error")
UNAUTHORIZED = Expect(401, "auth_error")
MEMBER_DENIED = Expect(401, "team_member_permission_error")
FORBIDDEN = Expect(403, "auth_error")
NOT_FOUND = Expect(404, "not_found_error")


# --- who asks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    actor: Actor
    # For team members: the team's stored `member_permissions` (None = never set, LiteLLM's default).
    member_permissions: tuple[str, ...] | None = None


def _user(**kwargs) -> Actor:
    return Actor(user_id=ME, platform_role=kwargs.pop("platform_role", "internal_user"), **kwargs)


KEY_ROUTES = {
    "key:generate": "/key/generate",
    "key:update": "/key/update",
    "key:delete": "/key/delete",
    "key:regenerate": "/key/regenerate",
    "key:block": "/key/block",
    "key:unblock": "/key/unblock",
    "key:info": "/key/info",
    "key:list": "/key/list",
    "key:health": "/key/health",
}

ROLES: dict[str, Role] = {
    "proxy_admin": Role(_user(platform_role="proxy_admin")),
    "master_key": Role(Actor(user_id="default_user_id", platform_role="proxy_admin", is_master=True)),
    "admin_viewer": Role(_user(platform_role="proxy_admin_viewer")),
    "org_admin": Role(_user(org_roles={ORG_A: "org_admin"})),
    "org_member": Role(_user(org_roles={ORG_A: "internal_user"})),
    "org_viewer": Role(_user(org_roles={ORG_A: "internal_user_viewer"})),
    "team_admin": Role(_user(team_roles={TEAM_A: "admin"}, team_org_ids={TEAM_A: ORG_A})),
    "team_member": Role(_user(team_roles={TEAM_A: "user"}, team_org_ids={TEAM_A: ORG_A})),
    "team_member[no grants]": Role(
        _user(team_roles={TEAM_A: "user"}, team_org_ids={TEAM_A: ORG_A}), member_permissions=()
    ),
    **{
        f"team_member[+{route}]": Role(
            _user(team_roles={TEAM_A: "user"}, team_org_ids={TEAM_A: ORG_A}), member_permissions=(route,)
        )
        for route in TEAM_MEMBER_PERMISSIONS
    },
    **{
        f"team_member[all but {route}]": Role(
            _user(team_roles={TEAM_A: "user"}, team_org_ids={TEAM_A: ORG_A}),
            member_permissions=tuple(p for p in TEAM_MEMBER_PERMISSIONS if p != route),
        )
        for route in TEAM_MEMBER_PERMISSIONS
    },
    "internal_user": Role(_user()),
    "internal_user_viewer": Role(_user(platform_role="internal_user_viewer")),
    "system_user": Role(Actor(user_id="gateway", platform_role="internal_user", is_system=True)),
    "service_account_key": Role(Actor(user_id=None, platform_role=None, key_team_id=TEAM_A, key_token="f" * 64)),
}


# --- what is acted on ---------------------------------------------------------------------------

KEY_ACTIONS = sorted(a for a in ACTIONS if a.startswith("key:"))
TEAM_ACTIONS = sorted(a for a in ACTIONS if a.startswith("team:") and a != "team:create")
USER_ROW_ACTIONS = sorted(a for a in ACTIONS if a.startswith("user:") and a != "user:create")
ORG_ROW_ACTIONS = sorted(a for a in ACTIONS if a.startswith("organization:") and a != "organization:create")
GROUP_ACTIONS = sorted(a for a in ACTIONS if a.startswith("access_group:"))
GATES = ("key:list", "team:list", "user:list", "organization:list", "access_group:read", "audit:read")


@dataclass(frozen=True)
class Kind:
    """A target: how to build it for a role, in which tenant it lies, and the actions that apply."""

    name: str
    scope: str  # "own", "other" or "none" (no tenant: global rows, the catalog, list gates)
    actions: tuple[str, ...]
    build: Callable[[Role], Target | None]  # None: the target makes no sense for that role


def _member(user_id: str, org: str, team: str | None = None, platform_role: str = "internal_user") -> UserFacts:
    """A user who belongs to `org` (as internal_user) and, if given, to `team` of that org."""
    return UserFacts(
        user_id=user_id, platform_role=platform_role, org_roles=((org, "internal_user"),),
        teams=((team, org),) if team else (),
    )


def _team_key(org: str, team: str, owner: str) -> Callable[[Role], Target]:
    return lambda role: Target(
        organization_id=org, team_id=team, owner_user_id=owner, member_permissions=role.member_permissions,
        owner=_member(owner, org, team),
    )


def _self_user(role: Role) -> Target | None:
    if role.actor.user_id is None:
        return None
    return Target(
        owner_user_id=role.actor.user_id,
        user_org_ids=tuple(role.actor.org_roles),
        user_team_ids=tuple(role.actor.team_roles),
    )


def _own_personal(org: str | None) -> Callable[[Role], Target | None]:
    return lambda role: None if role.actor.user_id is None else Target(organization_id=org, owner_user_id=role.actor.user_id)


KINDS = [
    Kind("team key", "own", tuple(KEY_ACTIONS), _team_key(ORG_A, TEAM_A, "bob")),
    Kind("team key", "other", tuple(KEY_ACTIONS), _team_key(ORG_B, TEAM_B, "mallory")),
    Kind("own personal key", "own", tuple(KEY_ACTIONS), _own_personal(None)),
    Kind("stranger's personal key", "other", tuple(KEY_ACTIONS), lambda r: Target(owner_user_id="mallory")),
    Kind("new own personal key in org", "own", ("key:generate",), _own_personal(ORG_A)),
    Kind("new own personal key in org", "other", ("key:generate",), _own_personal(ORG_B)),
    Kind("new personal key for someone in org", "own", ("key:generate",),
         lambda r: Target(organization_id=ORG_A, owner_user_id="bob", owner=_member("bob", ORG_A))),
    Kind("new personal key for someone in org", "other", ("key:generate",),
         lambda r: Target(organization_id=ORG_B, owner_user_id="mallory", owner=_member("mallory", ORG_B))),
    # Whose key (SPEC §2): never a user above the caller, nor one who also belongs to another tenant.
    Kind("new personal key for a proxy admin in org", "own", ("key:generate",),
         lambda r: Target(organization_id=ORG_A, owner_user_id="root",
                          owner=_member("root", ORG_A, platform_role="proxy_admin"))),
    Kind("new personal key for a member of two orgs", "own", ("key:generate",),
         lambda r: Target(organization_id=ORG_A, owner_user_id="eve", owner=UserFacts(
             user_id="eve", org_roles=((ORG_A, "internal_user"), (ORG_B, "org_admin"))))),
    Kind("new team key for a team member who is an org admin", "own", ("key:generate",),
         lambda r: Target(organization_id=ORG_A, team_id=TEAM_A, owner_user_id="boss", owner_in_team=True,
                          member_permissions=r.member_permissions,
                          owner=UserFacts(user_id="boss", org_roles=((ORG_A, "org_admin"),), teams=((TEAM_A, ORG_A),)))),
    Kind("team", "own", tuple(TEAM_ACTIONS),
         lambda r: Target(organization_id=ORG_A, team_id=TEAM_A, member_permissions=r.member_permissions)),
    Kind("team", "other", tuple(TEAM_ACTIONS), lambda r: Target(organization_id=ORG_B, team_id=TEAM_B)),
    Kind("new team in org", "own", ("team:create",), lambda r: Target(organization_id=ORG_A)),
    Kind("new team in org", "other", ("team:create",), lambda r: Target(organization_id=ORG_B)),
    Kind("new global team", "none", ("team:create",), lambda r: Target(is_global=True)),
    Kind("colleague (org and team member)", "own", tuple(USER_ROW_ACTIONS),
         lambda r: Target(owner_user_id="bob", user_org_ids=(ORG_A,), user_team_ids=(TEAM_A,),
                          owner=_member("bob", ORG_A, TEAM_A))),
    Kind("colleague who also belongs to another org", "own", tuple(USER_ROW_ACTIONS),
         lambda r: Target(owner_user_id="eve", user_org_ids=(ORG_A, ORG_B),
                          owner=UserFacts(user_id="eve", org_roles=((ORG_A, "internal_user"), (ORG_B, "org_admin"))))),
    Kind("user with no organization", "other", tuple(USER_ROW_ACTIONS),
         lambda r: Target(owner_user_id="loner", owner=UserFacts(user_id="loner"))),
    Kind("self", "own", tuple(USER_ROW_ACTIONS), _self_user),
    Kind("stranger", "other", tuple(USER_ROW_ACTIONS),
         lambda r: Target(owner_user_id="mallory", user_org_ids=(ORG_B,), user_team_ids=(TEAM_B,))),
    Kind("new user in org", "own", ("user:create",), lambda r: Target(organization_id=ORG_A)),
    Kind("new user in org", "other", ("user:create",), lambda r: Target(organization_id=ORG_B)),
    Kind("new global user", "none", ("user:create",), lambda r: Target()),
    Kind("new proxy_admin user in org", "own", ("user:create",),
         lambda r: Target(organization_id=ORG_A, new_platform_role="proxy_admin")),
    Kind("organization", "own", tuple(ORG_ROW_ACTIONS), lambda r: Target(organization_id=ORG_A)),
    Kind("organization", "other", tuple(ORG_ROW_ACTIONS), lambda r: Target(organization_id=ORG_B)),
    Kind("new organization", "none", ("organization:create",), lambda r: Target()),
    Kind("org-owned access group", "own", tuple(GROUP_ACTIONS), lambda r: Target(organization_id=ORG_A)),
    Kind("org-owned access group", "other", tuple(GROUP_ACTIONS), lambda r: Target(organization_id=ORG_B)),
    Kind("global access group", "none", tuple(GROUP_ACTIONS), lambda r: Target(is_global=True)),
    Kind("catalog", "none", ("catalog:read", "catalog:write"), lambda r: Target()),
    Kind("audit entries", "own", ("audit:read",), lambda r: Target(organization_id=ORG_A)),
    Kind("audit entries", "other", ("audit:read",), lambda r: Target(organization_id=ORG_B)),
    Kind("list (no row)", "none", GATES, lambda r: Target()),
    Kind("list of my own rows", "own", ("key:list", "team:list"),
         lambda r: None if r.actor.user_id is None else Target(owner_user_id=r.actor.user_id)),
    Kind("usage report", "none", ("usage:report",), lambda r: Target()),
    Kind("bulk job", "own", ("bulk_job:read",), lambda r: Target(organization_id=ORG_A, owner_user_id="bob")),
    Kind("bulk job", "other", ("bulk_job:read",), lambda r: Target(organization_id=ORG_B, owner_user_id="mallory")),
    Kind("my own bulk job", "own", ("bulk_job:read",),
         lambda r: None if r.actor.user_id is None else Target(organization_id=ORG_B, owner_user_id=r.actor.user_id)),
    Kind("platform bulk job", "none", ("bulk_job:read",), lambda r: Target(owner_user_id="root", is_global=True)),
]


# --- what SPEC §2 says ---------------------------------------------------------------------------
# Each non-platform role's column: {kind name or "kind name@scope": {action or "*": outcome}}.
# Rows of another tenant answer 404 for every non-platform role unless a column says otherwise.

ALL = "*"

READ_OWN_KEY = {
    ALL: OK, "key:update_budget": FORBIDDEN, "key:reassign": FORBIDDEN, "key:assign_access_groups": FORBIDDEN
}
VIEWER_OWN_KEY = {ALL: FORBIDDEN, "key:info": OK, "key:list": OK, "key:health": OK}

# What every signed-in user with no membership gets (internal_user); the other columns start from it.
BASE_USER: dict[str, dict[str, Expect]] = {
    "team key@own": {ALL: NOT_FOUND},
    "own personal key@own": READ_OWN_KEY,
    "new own personal key in org@own": {ALL: NOT_FOUND},
    # Asking for someone else's personal key is refused before looking them up: nothing to probe.
    "new personal key for someone in org@own": {ALL: FORBIDDEN},
    "new personal key for someone in org@other": {ALL: FORBIDDEN},
    "new personal key for a proxy admin in org@own": {ALL: FORBIDDEN},
    "new personal key for a member of two orgs@own": {ALL: FORBIDDEN},
    "new team key for a team member who is an org admin@own": {ALL: NOT_FOUND},
    "colleague who also belongs to another org@own": {ALL: NOT_FOUND},
    "stranger's personal key@other": {ALL: NOT_FOUND, "key:generate": FORBIDDEN},
    "team@own": {ALL: NOT_FOUND},
    "new team in org@own": {ALL: NOT_FOUND},
    "new global team": {ALL: UNAUTHORIZED},
    "colleague (org and team member)@own": {ALL: NOT_FOUND},
    "self@own": {ALL: FORBIDDEN, "user:info": OK, "user:list": OK, "user:update": OK, "user:update_password": OK},
    "new user in org@own": {ALL: NOT_FOUND},
    "new global user": {ALL: UNAUTHORIZED},
    "new proxy_admin user in org@own": {ALL: FORBIDDEN},
    "organization@own": {ALL: NOT_FOUND},
    "new organization": {ALL: UNAUTHORIZED},
    "org-owned access group@own": {ALL: NOT_FOUND},
    "global access group": {ALL: FORBIDDEN},
    "catalog": {"catalog:read": OK, "catalog:write": FORBIDDEN},
    "audit entries@own": {ALL: NOT_FOUND},
    "list (no row)": {
        ALL: OK,
        "team:list": UNAUTHORIZED,  # LiteLLM: "Only admin users can query all teams/other teams"
        "user:list": FORBIDDEN,
        "access_group:read": FORBIDDEN,
        "audit:read": FORBIDDEN,
    },
    "list of my own rows@own": {ALL: OK},
    "usage report": {ALL: FORBIDDEN},
    # A bulk job names the keys or teams it chose: its requester and the org's admins read it, nobody else.
    "bulk job@own": {ALL: NOT_FOUND},
    "my own bulk job@own": {ALL: OK},
    "platform bulk job": {ALL: NOT_FOUND},
}

# A member of the organization who is not on the team: sees the org's rows, may change none of them.
ORG_MEMBER = {
    **BASE_USER,
    "team key@own": {
        ALL: FORBIDDEN,
        "key:generate": BAD_REQUEST,  # LiteLLM: "User=… not assigned to team=…"
        "key:delete": BAD_REQUEST,
        "key:update": MEMBER_DENIED,  # LiteLLM: "… does not belong to team …"
        "key:regenerate": MEMBER_DENIED,
    },
    "new own personal key in org@own": {ALL: OK},
    "team@own": {ALL: FORBIDDEN, "team:delete": UNAUTHORIZED},
    "new team in org@own": {ALL: UNAUTHORIZED},
    "colleague (org and team member)@own": {ALL: FORBIDDEN},
    "colleague who also belongs to another org@own": {ALL: FORBIDDEN},
    "new team key for a team member who is an org admin@own": {ALL: BAD_REQUEST},  # not assigned to the team
    "new user in org@own": {ALL: UNAUTHORIZED},
    "organization@own": {
        ALL: FORBIDDEN, "organization:info": OK, "organization:list": OK, "organization:delete": UNAUTHORIZED
    },
    "org-owned access group@own": {ALL: FORBIDDEN},
    "audit entries@own": {ALL: FORBIDDEN},
}

COLUMNS: dict[str, dict[str, dict[str, Expect]]] = {
    "internal_user": BASE_USER,
    "internal_user_viewer": {
        **BASE_USER,
        "own personal key@own": VIEWER_OWN_KEY,
        # A viewer creates nothing, wherever: refused from the role alone, before any organization is looked at.
        "new own personal key in org@own": {ALL: FORBIDDEN},
        "new own personal key in org@other": {ALL: FORBIDDEN},
        "self@own": {ALL: FORBIDDEN, "user:info": OK, "user:list": OK, "user:update_password": OK},
    },
    "org_member": ORG_MEMBER,
    "org_viewer": {**ORG_MEMBER, "new own personal key in org@own": {ALL: FORBIDDEN}},
    "org_admin": {
        **BASE_USER,
        "team key@own": {ALL: OK},
        "new own personal key in org@own": {ALL: OK},
        "new personal key for someone in org@own": {ALL: OK},
        "team@own": {ALL: OK},
        "new team in org@own": {ALL: OK},
        # Account-level writes (role, budget, password, deletion) are the proxy admins' and the user's own.
        "colleague (org and team member)@own": {
            ALL: OK, "user:update_role": FORBIDDEN, "user:update_budget": FORBIDDEN,
            "user:update_password": FORBIDDEN, "user:delete": FORBIDDEN,
        },
        "colleague who also belongs to another org@own": {ALL: FORBIDDEN, "user:info": OK, "user:list": OK},
        "new personal key for a proxy admin in org@own": {ALL: FORBIDDEN},
        "new personal key for a member of two orgs@own": {ALL: FORBIDDEN},
        "new team key for a team member who is an org admin@own": {ALL: OK},
        "new user in org@own": {ALL: OK},
        "organization@own": {
            ALL: OK, "organization:delete": UNAUTHORIZED, "organization:update_limits": FORBIDDEN
        },
        "org-owned access group@own": {ALL: OK},
        "global access group": {ALL: FORBIDDEN, "access_group:read": OK},
        "audit entries@own": {ALL: OK},
        "list (no row)": {ALL: OK, "team:list": UNAUTHORIZED},
        "bulk job@own": {ALL: OK},
    },
    "team_admin": {
        **BASE_USER,
        "team key@own": {ALL: OK},
        "team@own": {ALL: OK, "team:delete": UNAUTHORIZED, "team:update_limits": FORBIDDEN},
        # A team admin never mints a key for someone who outranks them in the organization.
        "new team key for a team member who is an org admin@own": {ALL: FORBIDDEN},
        "colleague (org and team member)@own": {ALL: FORBIDDEN},
    },
    "team_member": {
        **BASE_USER,
        # "team key@own" follows the grants: see `team_member_on_team_key`.
        "team@own": {
            ALL: FORBIDDEN, "team:info": OK, "team:list": OK, "team:permissions_read": OK,
            "team:delete": UNAUTHORIZED,
        },
        "colleague (org and team member)@own": {ALL: FORBIDDEN},
    },
    "service_account_key": {
        # A key with no user passes LiteLLM's route gate only for its team's info routes (401 otherwise).
        "team key@own": {ALL: UNAUTHORIZED, "key:info": OK, "key:list": OK, "key:health": OK},
        "team key@other": {ALL: UNAUTHORIZED, "key:info": NOT_FOUND, "key:list": NOT_FOUND, "key:health": NOT_FOUND},
        "stranger's personal key@other": {
            ALL: UNAUTHORIZED, "key:info": NOT_FOUND, "key:list": NOT_FOUND, "key:health": NOT_FOUND
        },
        "team@own": {ALL: UNAUTHORIZED, "team:info": OK, "team:list": OK},
        "team@other": {ALL: UNAUTHORIZED, "team:info": NOT_FOUND, "team:list": NOT_FOUND},
        "catalog": {"catalog:read": OK, "catalog:write": UNAUTHORIZED},
        "list (no row)": {ALL: UNAUTHORIZED, "key:list": OK, "team:list": OK},
        "usage report": {ALL: FORBIDDEN},
        ALL: {ALL: UNAUTHORIZED},
    },
}


def team_member_on_team_key(role: Role, action: str) -> Expect:
    """A team member with role `user` may, on the team's keys, only what `member_permissions` grants."""
    if action in ("key:update_budget", "key:reassign", "key:assign_access_groups"):
        return FORBIDDEN  # only an admin of the key
    stored = role.member_permissions
    granted = set(BASELINE_TEAM_MEMBER_PERMISSIONS) | set(
        stored if stored is not None else BASELINE_TEAM_MEMBER_PERMISSIONS
    )
    if KEY_ROUTES[action] not in granted:
        return MEMBER_DENIED
    # The table's team key belongs to a colleague: a member mints keys only for themself.
    return FORBIDDEN if action == "key:generate" else OK


def expected(role_name: str, kind: Kind, action: str) -> Expect:
    if role_name in ("proxy_admin", "master_key"):
        return OK
    if role_name in ("admin_viewer", "system_user"):
        if action == "usage:report":
            return OK if role_name == "system_user" else FORBIDDEN
        return OK if action in READ_ACTIONS else FORBIDDEN
    base = role_name.split("[", 1)[0]
    column = COLUMNS[base]
    if base == "team_member" and kind.name == "team key" and kind.scope == "own":
        return team_member_on_team_key(ROLES[role_name], action)
    if base == "team_member" and kind.name == "new team key for a team member who is an org admin":
        # Granted /key/generate or not, a member mints keys only for themself.
        return team_member_on_team_key(ROLES[role_name], action)
    key = f"{kind.name}@{kind.scope}" if kind.scope != "none" else kind.name
    cell = column.get(key)
    if cell is None and kind.scope == "other" and base != "service_account_key":
        return NOT_FOUND  # another tenant's row is invisible: the same 404 as a missing one
    if cell is None:
        cell = column[ALL]
    return cell.get(action, cell.get(ALL))


def _rows():
    for role_name, role in ROLES.items():
        for kind in KINDS:
            target = kind.build(role)
            if target is None:
                continue
            for action in kind.actions:
                yield pytest.param(
                    role, target, action, expected(role_name, kind, action),
                    id=f"{role_name} | {action} | {kind.name} ({kind.scope})",
                )


ROWS = list(_rows())


def test_policy_table_covers_every_role_action_and_tenant():
    covered_actions = {row.values[2] for row in ROWS}
    assert covered_actions == set(ACTIONS)
    assert len(ROWS) >= 200


def test_policy_table_every_action_is_a_read_or_a_write():
    assert READ_ACTIONS.isdisjoint(WRITE_ACTIONS)


@pytest.mark.parametrize(("role", "target", "action", "expect"), ROWS)
def test_policy(role: Role, target: Target, action: str, expect: Expect):
    verdict = can(role.actor, action, target)
    assert (verdict.status, verdict.type if not verdict.allowed else "") == (expect.status, expect.type), (
        verdict.message
    )
    assert verdict.allowed is (expect.status == 200)
