"""SPEC §2-§3 as a table a reader checks by eye: one line per (actor, action, target) → expected.

No oracle: each expectation is written out. `expected` is `ok`, or the refusal's status (`401 member` is
LiteLLM's `team_member_permission_error`; every other 400/401/403/404 has its usual type). The actors and
targets are named below; "A" is the callers' organization (and "team A" its team), "B" a stranger's.

The rows pick, for every kind of caller, every action and every relation (own tenant, another tenant,
themself, no tenant at all, a user who outranks the caller), one case of each distinct answer. What holds
for whole classes at once (proxy admins may do everything; readers read everything and write nothing;
a key without a user manages nothing; another tenant's rows answer 404; viewers never write; nobody
grants more than they hold) is checked exhaustively, or by hypothesis, in test_policy_laws.py.
"""

from __future__ import annotations

import pytest

from accessctl.policy import ACTIONS, Actor, Target, UserFacts, can

A, B = "org-a", "org-b"  # two tenants: the callers' (A) and a stranger's (B)
TA, TB = "team-a", "team-b"  # a team of each
ME = "me@a.test"
ALL_GRANTS = (
    "/key/generate",
    "/key/update",
    "/key/delete",
    "/key/regenerate",
    "/key/block",
    "/key/unblock",
    "/key/info",
    "/key/list",
    "/key/health",
)


def _me(role="internal_user", **memberships) -> Actor:
    return Actor(user_id=ME, platform_role=role, **memberships)


def _in_a(user_id, org_role="internal_user", team=False, platform_role="internal_user", is_system=False):
    return UserFacts(
        user_id=user_id,
        platform_role=platform_role,
        is_system=is_system,
        org_roles=((A, org_role),),
        teams=((TA, A),) if team else (),
    )


ACTORS = {
    "proxy admin": _me("proxy_admin"),
    "master key": Actor(user_id=None, platform_role="proxy_admin", is_master=True),
    "admin viewer": _me("proxy_admin_viewer"),
    "system user": Actor(user_id="gateway@x.test", platform_role="internal_user", is_system=True),
    "org admin": _me(org_roles={A: "org_admin"}),
    "org member": _me(org_roles={A: "internal_user"}),
    "org viewer": _me(org_roles={A: "internal_user_viewer"}),
    "team admin": _me(team_roles={TA: "admin"}, team_org_ids={TA: A}),
    "team member": _me(team_roles={TA: "user"}, team_org_ids={TA: A}),
    "viewer team member": _me(
        "internal_user_viewer",
        org_roles={A: "internal_user_viewer"},
        team_roles={TA: "user"},
        team_org_ids={TA: A},
    ),
    "internal user": _me(),
    "internal viewer": _me("internal_user_viewer"),
    "team key": Actor(user_id=None, platform_role=None, key_team_id=TA, key_token="tok-team-a"),
}

TARGETS = {
    # keys
    "A team key": Target(organization_id=A, team_id=TA, owner_user_id="bob", owner=_in_a("bob", team=True)),
    "A team key, no grants": Target(
        organization_id=A, team_id=TA, owner_user_id="bob", member_permissions=()
    ),
    "A team key, all grants": Target(
        organization_id=A, team_id=TA, owner_user_id="bob", member_permissions=ALL_GRANTS
    ),
    "A team key, itself": Target(organization_id=A, team_id=TA, key_token="tok-team-a"),
    "B team key": Target(organization_id=B, team_id=TB, owner_user_id="mallory"),
    "my key": Target(owner_user_id=ME),
    "bob's key": Target(owner_user_id="bob"),
    "mallory's key": Target(owner_user_id="mallory"),
    "new: my key in A": Target(organization_id=A, owner_user_id=ME),
    "new: my key in B": Target(organization_id=B, owner_user_id=ME),
    # A key in a team for its owner: `owner_in_team` is the service's lookup (is the owner a member?).
    "new: my key in team A (I'm in it)": Target(
        organization_id=A, team_id=TA, owner_user_id=ME, owner_in_team=True, member_permissions=ALL_GRANTS
    ),
    "new: my key in team A (I'm in it), default grants": Target(
        organization_id=A, team_id=TA, owner_user_id=ME, owner_in_team=True
    ),
    "new: my key in team A (I'm not in it)": Target(
        organization_id=A, team_id=TA, owner_user_id=ME, owner_in_team=False
    ),
    "new: bob's key in A": Target(organization_id=A, owner_user_id="bob", owner=_in_a("bob")),
    "new: mallory's key in B": Target(
        organization_id=B,
        owner_user_id="mallory",
        owner=UserFacts("mallory", org_roles=((B, "internal_user"),)),
    ),
    "new: A team key for bob": Target(
        organization_id=A,
        team_id=TA,
        owner_user_id="bob",
        owner_in_team=True,
        member_permissions=ALL_GRANTS,
        owner=_in_a("bob", team=True),
    ),
    "new: A team key for bob, default grants": Target(
        organization_id=A, team_id=TA, owner_user_id="bob", owner_in_team=True, owner=_in_a("bob", team=True)
    ),
    "new: A team key for a non-member": Target(
        organization_id=A, team_id=TA, owner_user_id="zoe", owner_in_team=False, owner=_in_a("zoe")
    ),
    # ... for users who outrank the caller
    "new: key in A for root (proxy admin)": Target(
        organization_id=A, owner_user_id="root", owner=_in_a("root", platform_role="proxy_admin")
    ),
    "new: key in A for gw (system user)": Target(
        organization_id=A, owner_user_id="gw", owner=_in_a("gw", is_system=True)
    ),
    "new: key in A for eve (admin of B)": Target(
        organization_id=A,
        owner_user_id="eve",
        owner=UserFacts("eve", org_roles=((A, "internal_user"), (B, "org_admin"))),
    ),
    "new: A team key for boss (org admin of A)": Target(
        organization_id=A,
        team_id=TA,
        owner_user_id="boss",
        owner_in_team=True,
        owner=_in_a("boss", org_role="org_admin", team=True),
    ),
    # teams
    "team A": Target(organization_id=A, team_id=TA),
    "team B": Target(organization_id=B, team_id=TB),
    "global team": Target(team_id="team-g", is_global=True),
    "new: team in A": Target(organization_id=A),
    "new: team in B": Target(organization_id=B),
    "new: global team": Target(is_global=True),
    # users
    "me": Target(owner_user_id=ME),  # my own user row
    "bob (A, team A)": Target(
        owner_user_id="bob", user_org_ids=(A,), user_team_ids=(TA,), owner=_in_a("bob", team=True)
    ),
    "mallory (B)": Target(owner_user_id="mallory", user_org_ids=(B,), user_team_ids=(TB,)),
    "loner (no org)": Target(owner_user_id="loner", owner=UserFacts("loner")),
    "eve (A, admin of B)": Target(
        owner_user_id="eve",
        user_org_ids=(A, B),
        owner=UserFacts("eve", org_roles=((A, "internal_user"), (B, "org_admin"))),
    ),
    "root (proxy admin in A)": Target(
        owner_user_id="root",
        user_org_ids=(A,),
        owner_platform_role="proxy_admin",
        owner=_in_a("root", platform_role="proxy_admin"),
    ),
    "new: user in A": Target(organization_id=A),
    "new: user in B": Target(organization_id=B),
    "new: user, no org": Target(),
    "new: proxy admin in A": Target(organization_id=A, new_platform_role="proxy_admin"),
    # organizations
    "org A": Target(organization_id=A),
    "org B": Target(organization_id=B),
    "new: org": Target(),
    # access groups
    "A group": Target(organization_id=A),
    "B group": Target(organization_id=B),
    "global group": Target(is_global=True),
    # everything else
    "catalog": Target(),
    "A audit": Target(organization_id=A),
    "B audit": Target(organization_id=B),
    "the list": Target(),  # a list itself (or the audit log, the usage endpoint): no row yet
    "my rows": Target(owner_user_id=ME),  # the list of my own keys / teams
    "bob's job in A": Target(organization_id=A, owner_user_id="bob"),
    "mallory's job in B": Target(organization_id=B, owner_user_id="mallory"),
    "my job in B": Target(organization_id=B, owner_user_id=ME),
    "platform job": Target(owner_user_id="root", is_global=True),
}

TABLE = """
actor              | action                       | target                                    | expected

proxy admin        | key:generate                 | new: key in A for gw (system user)        | ok
proxy admin        | key:update_budget            | B team key                                | ok
proxy admin        | team:create                  | new: global team                          | ok
proxy admin        | user:update_role             | root (proxy admin in A)                   | ok
proxy admin        | organization:delete          | org B                                     | ok
proxy admin        | access_group:update          | global group                              | ok
proxy admin        | catalog:write                | catalog                                   | ok

master key         | key:generate                 | new: mallory's key in B                   | ok
master key         | user:create                  | new: proxy admin in A                     | ok
master key         | organization:create          | new: org                                  | ok

admin viewer       | key:info                     | B team key                                | ok
admin viewer       | key:update                   | my key                                    | 403
admin viewer       | user:info                    | mallory (B)                               | ok
admin viewer       | user:update_password         | me                                        | 403
admin viewer       | organization:update          | org B                                     | 403
admin viewer       | usage:report                 | the list                                  | 403

system user        | key:generate                 | new: my key in A                          | 403
system user        | key:info                     | B team key                                | ok
system user        | team:info                    | team B                                    | ok
system user        | user:update                  | mallory (B)                               | 403
system user        | usage:report                 | the list                                  | ok

org admin          | key:assign_access_groups     | A team key                                | ok
org admin          | key:assign_access_groups     | my key                                    | 403
org admin          | key:block                    | A team key                                | ok
org admin          | key:delete                   | A team key                                | ok
org admin          | key:generate                 | my key                                    | ok
org admin          | key:generate                 | bob's key                                 | 403
org admin          | key:generate                 | new: my key in B                          | 404
org admin          | key:generate                 | new: bob's key in A                       | ok
org admin          | key:generate                 | new: A team key for a non-member          | 400
org admin          | key:generate                 | new: key in A for root (proxy admin)      | 403
org admin          | key:generate                 | new: key in A for eve (admin of B)        | 403
org admin          | key:generate                 | new: A team key for boss (org admin of A) | ok
org admin          | key:health                   | A team key                                | ok
org admin          | key:info                     | A team key                                | ok
org admin          | key:list                     | A team key                                | ok
org admin          | key:list                     | the list                                  | ok
org admin          | key:reassign                 | A team key                                | ok
org admin          | key:reassign                 | my key                                    | 403
org admin          | key:regenerate               | A team key                                | ok
org admin          | key:unblock                  | A team key                                | ok
org admin          | key:update                   | A team key                                | ok
org admin          | key:update_budget            | A team key                                | ok
org admin          | key:update_budget            | my key                                    | 403
org admin          | team:create                  | new: team in A                            | ok
org admin          | team:create                  | new: team in B                            | 404
org admin          | team:create                  | new: global team                          | 401
org admin          | team:delete                  | team A                                    | ok
org admin          | team:info                    | team A                                    | ok
org admin          | team:list                    | team A                                    | ok
org admin          | team:list                    | the list                                  | 401
org admin          | team:member_manage           | team A                                    | ok
org admin          | team:permissions_read        | team A                                    | ok
org admin          | team:permissions_update      | team A                                    | ok
org admin          | team:update                  | team A                                    | ok
org admin          | team:update                  | global team                               | 404
org admin          | team:update_limits           | team A                                    | ok
org admin          | user:create                  | new: user in A                            | ok
org admin          | user:create                  | new: user in B                            | 404
org admin          | user:create                  | new: user, no org                         | 401
org admin          | user:create                  | new: proxy admin in A                     | 403
org admin          | user:delete                  | me                                        | 403
org admin          | user:delete                  | bob (A, team A)                           | 403
org admin          | user:delete                  | eve (A, admin of B)                       | 403
org admin          | user:info                    | me                                        | ok
org admin          | user:info                    | bob (A, team A)                           | ok
org admin          | user:info                    | eve (A, admin of B)                       | ok
org admin          | user:list                    | me                                        | ok
org admin          | user:list                    | bob (A, team A)                           | ok
org admin          | user:list                    | eve (A, admin of B)                       | ok
org admin          | user:list                    | the list                                  | ok
org admin          | user:update                  | me                                        | ok
org admin          | user:update                  | bob (A, team A)                           | ok
org admin          | user:update                  | loner (no org)                            | 404
org admin          | user:update                  | eve (A, admin of B)                       | 403
org admin          | user:update_budget           | me                                        | 403
org admin          | user:update_budget           | bob (A, team A)                           | 403
org admin          | user:update_budget           | eve (A, admin of B)                       | 403
org admin          | user:update_password         | me                                        | ok
org admin          | user:update_password         | bob (A, team A)                           | 403
org admin          | user:update_password         | eve (A, admin of B)                       | 403
org admin          | user:update_role             | me                                        | 403
org admin          | user:update_role             | bob (A, team A)                           | 403
org admin          | user:update_role             | eve (A, admin of B)                       | 403
org admin          | organization:create          | new: org                                  | 401
org admin          | organization:delete          | org A                                     | 401
org admin          | organization:info            | org A                                     | ok
org admin          | organization:list            | org A                                     | ok
org admin          | organization:list            | the list                                  | ok
org admin          | organization:member_manage   | org A                                     | ok
org admin          | organization:update          | org A                                     | ok
org admin          | organization:update_limits   | org A                                     | 403
org admin          | access_group:assign          | A group                                   | ok
org admin          | access_group:assign          | global group                              | 403
org admin          | access_group:create          | A group                                   | ok
org admin          | access_group:create          | global group                              | 403
org admin          | access_group:delete          | A group                                   | ok
org admin          | access_group:delete          | global group                              | 403
org admin          | access_group:read            | A group                                   | ok
org admin          | access_group:read            | global group                              | ok
org admin          | access_group:update          | A group                                   | ok
org admin          | access_group:update          | global group                              | 403
org admin          | catalog:read                 | catalog                                   | ok
org admin          | catalog:write                | catalog                                   | 403
org admin          | audit:read                   | A audit                                   | ok
org admin          | audit:read                   | the list                                  | ok
org admin          | usage:report                 | the list                                  | 403
org admin          | bulk_job:read                | bob's job in A                            | ok
org admin          | bulk_job:read                | platform job                              | 404

org member         | key:block                    | A team key                                | 403
org member         | key:delete                   | A team key                                | 400
org member         | key:generate                 | new: key in A for root (proxy admin)      | 403
org member         | key:generate                 | new: A team key for boss (org admin of A) | 400
org member         | key:health                   | A team key                                | 403
org member         | key:info                     | A team key                                | 403
org member         | key:list                     | A team key                                | 403
org member         | key:unblock                  | A team key                                | 403
org member         | team:create                  | new: team in A                            | 401
org member         | team:info                    | team A                                    | 403
org member         | team:list                    | team A                                    | 403
org member         | team:permissions_read        | team A                                    | 403
org member         | user:create                  | new: user in A                            | 401
org member         | user:create                  | new: proxy admin in A                     | 403
org member         | user:delete                  | eve (A, admin of B)                       | 403
org member         | user:info                    | eve (A, admin of B)                       | 403
org member         | user:list                    | eve (A, admin of B)                       | 403
org member         | user:update                  | eve (A, admin of B)                       | 403
org member         | user:update_budget           | eve (A, admin of B)                       | 403
org member         | user:update_password         | eve (A, admin of B)                       | 403
org member         | user:update_role             | eve (A, admin of B)                       | 403
org member         | organization:delete          | org A                                     | 401
org member         | organization:info            | org A                                     | ok
org member         | organization:list            | org A                                     | ok
org member         | organization:member_manage   | org A                                     | 403
org member         | organization:update          | org A                                     | 403
org member         | organization:update_limits   | org A                                     | 403
org member         | access_group:assign          | A group                                   | 403
org member         | access_group:create          | A group                                   | 403
org member         | access_group:delete          | A group                                   | 403
org member         | access_group:read            | A group                                   | 403
org member         | access_group:update          | A group                                   | 403
org member         | audit:read                   | A audit                                   | 403
org member         | bulk_job:read                | bob's job in A                            | 404

org viewer         | key:block                    | A team key                                | 403
org viewer         | key:block                    | my key                                    | ok
org viewer         | key:delete                   | A team key                                | 400
org viewer         | key:delete                   | my key                                    | ok
org viewer         | key:generate                 | my key                                    | ok
org viewer         | key:generate                 | new: my key in B                          | 404
org viewer         | key:generate                 | new: key in A for root (proxy admin)      | 403
org viewer         | key:generate                 | new: A team key for boss (org admin of A) | 400
org viewer         | key:health                   | A team key                                | 403
org viewer         | key:info                     | A team key                                | 403
org viewer         | key:list                     | A team key                                | 403
org viewer         | key:reassign                 | A team key                                | 403
org viewer         | key:regenerate               | A team key                                | 401 member
org viewer         | key:regenerate               | my key                                    | ok
org viewer         | key:unblock                  | my key                                    | ok
org viewer         | key:update                   | A team key                                | 401 member
org viewer         | key:update                   | my key                                    | ok
org viewer         | team:delete                  | team A                                    | 401
org viewer         | team:info                    | team A                                    | 403
org viewer         | team:list                    | team A                                    | 403
org viewer         | team:permissions_read        | team A                                    | 403
org viewer         | team:permissions_update      | team A                                    | 403
org viewer         | team:update_limits           | team A                                    | 403
org viewer         | user:create                  | new: user in A                            | 401
org viewer         | user:info                    | bob (A, team A)                           | 403
org viewer         | user:list                    | the list                                  | 403
org viewer         | user:update                  | me                                        | ok
org viewer         | user:update                  | bob (A, team A)                           | 403
org viewer         | user:update_password         | me                                        | ok
org viewer         | user:update_password         | bob (A, team A)                           | 403
org viewer         | user:update_password         | eve (A, admin of B)                       | 403
org viewer         | organization:update_limits   | org A                                     | 403

team admin         | key:assign_access_groups     | A team key                                | ok
team admin         | key:assign_access_groups     | my key                                    | 403
team admin         | key:block                    | A team key                                | ok
team admin         | key:delete                   | A team key                                | ok
team admin         | key:generate                 | my key                                    | ok
team admin         | key:generate                 | bob's key                                 | 403
team admin         | key:generate                 | new: my key in A                          | 404
team admin         | key:generate                 | new: bob's key in A                       | 403
team admin         | key:generate                 | new: A team key for bob                   | ok
team admin         | key:generate                 | new: A team key for a non-member          | 400
team admin         | key:generate                 | new: A team key for boss (org admin of A) | 403
team admin         | key:health                   | A team key                                | ok
team admin         | key:info                     | A team key                                | ok
team admin         | key:list                     | A team key                                | ok
team admin         | key:list                     | the list                                  | ok
team admin         | key:reassign                 | A team key                                | ok
team admin         | key:reassign                 | my key                                    | 403
team admin         | key:regenerate               | A team key                                | ok
team admin         | key:unblock                  | A team key                                | ok
team admin         | key:update                   | A team key                                | ok
team admin         | key:update_budget            | A team key                                | ok
team admin         | key:update_budget            | my key                                    | 403
team admin         | team:create                  | new: team in A                            | 404
team admin         | team:create                  | new: global team                          | 401
team admin         | team:delete                  | team A                                    | 401
team admin         | team:info                    | team A                                    | ok
team admin         | team:list                    | team A                                    | ok
team admin         | team:list                    | the list                                  | 401
team admin         | team:member_manage           | team A                                    | ok
team admin         | team:permissions_read        | team A                                    | ok
team admin         | team:permissions_update      | team A                                    | ok
team admin         | team:update                  | team A                                    | ok
team admin         | team:update_limits           | team A                                    | 403
team admin         | user:create                  | new: user in A                            | 404
team admin         | user:create                  | new: user, no org                         | 401
team admin         | user:create                  | new: proxy admin in A                     | 403
team admin         | user:delete                  | me                                        | 403
team admin         | user:delete                  | bob (A, team A)                           | 403
team admin         | user:info                    | me                                        | ok
team admin         | user:info                    | bob (A, team A)                           | 403
team admin         | user:list                    | me                                        | ok
team admin         | user:list                    | bob (A, team A)                           | 403
team admin         | user:list                    | the list                                  | 403
team admin         | user:update                  | me                                        | ok
team admin         | user:update                  | bob (A, team A)                           | 403
team admin         | user:update_budget           | me                                        | 403
team admin         | user:update_budget           | bob (A, team A)                           | 403
team admin         | user:update_password         | me                                        | ok
team admin         | user:update_password         | bob (A, team A)                           | 403
team admin         | user:update_role             | me                                        | 403
team admin         | user:update_role             | bob (A, team A)                           | 403
team admin         | organization:create          | new: org                                  | 401
team admin         | organization:list            | the list                                  | ok
team admin         | access_group:assign          | global group                              | 403
team admin         | access_group:create          | global group                              | 403
team admin         | access_group:delete          | global group                              | 403
team admin         | access_group:read            | global group                              | 403
team admin         | access_group:update          | global group                              | 403
team admin         | catalog:read                 | catalog                                   | ok
team admin         | catalog:write                | catalog                                   | 403
team admin         | audit:read                   | the list                                  | 403
team admin         | usage:report                 | the list                                  | 403
team admin         | bulk_job:read                | my job in B                               | ok
team admin         | bulk_job:read                | platform job                              | 404

team member        | key:block                    | A team key                                | 401 member
team member        | key:block                    | my key                                    | ok
team member        | key:delete                   | A team key                                | 401 member
team member        | key:generate                 | bob's key                                 | 403
team member        | key:generate                 | new: my key in A                          | 404
team member        | key:generate                 | new: my key in team A (I'm in it)         | ok
team member        | key:generate                 | new: my key in team A (I'm in it), default grants | 401 member
team member        | key:generate                 | new: A team key for bob                   | 403
team member        | key:generate                 | new: A team key for bob, default grants   | 401 member
team member        | key:generate                 | new: A team key for boss (org admin of A) | 401 member
team member        | key:health                   | A team key                                | ok
team member        | key:health                   | A team key, no grants                     | ok
team member        | key:info                     | A team key, no grants                     | ok
team member        | key:list                     | A team key                                | 401 member
team member        | key:list                     | A team key, no grants                     | 401 member
team member        | key:list                     | A team key, all grants                    | ok
team member        | key:list                     | my key                                    | ok
team member        | key:reassign                 | A team key, all grants                    | 403
team member        | key:regenerate               | A team key                                | 401 member
team member        | key:regenerate               | my key                                    | ok
team member        | key:unblock                  | A team key                                | 401 member
team member        | key:update                   | A team key                                | 401 member
team member        | key:update                   | A team key, all grants                    | ok
team member        | key:update                   | my key                                    | ok
team member        | key:update_budget            | A team key, all grants                    | 403
team member        | team:create                  | new: team in A                            | 404
team member        | team:delete                  | team A                                    | 401
team member        | team:info                    | team A                                    | ok
team member        | team:member_manage           | team A                                    | 403
team member        | team:permissions_read        | team A                                    | ok
team member        | team:permissions_update      | team A                                    | 403
team member        | team:update                  | team A                                    | 403
team member        | team:update_limits           | team A                                    | 403
team member        | user:delete                  | bob (A, team A)                           | 403
team member        | user:info                    | bob (A, team A)                           | 403
team member        | user:list                    | bob (A, team A)                           | 403
team member        | user:update                  | me                                        | ok
team member        | user:update                  | bob (A, team A)                           | 403
team member        | user:update_budget           | bob (A, team A)                           | 403
team member        | user:update_password         | me                                        | ok
team member        | user:update_password         | bob (A, team A)                           | 403
team member        | user:update_role             | bob (A, team A)                           | 403
team member        | access_group:read            | global group                              | 403

viewer team member | key:generate                 | my key                                    | 403
viewer team member | key:info                     | A team key                                | ok
viewer team member | key:unblock                  | A team key                                | 403
viewer team member | key:update                   | A team key, all grants                    | 403
viewer team member | key:update_budget            | A team key                                | 403
viewer team member | team:create                  | new: team in A                            | 401
viewer team member | team:list                    | team A                                    | ok
viewer team member | team:member_manage           | team A                                    | 403
viewer team member | team:update                  | team A                                    | 403
viewer team member | user:create                  | new: proxy admin in A                     | 403
viewer team member | user:delete                  | bob (A, team A)                           | 403
viewer team member | user:delete                  | eve (A, admin of B)                       | 403
viewer team member | user:info                    | eve (A, admin of B)                       | 403
viewer team member | user:list                    | me                                        | ok
viewer team member | user:list                    | bob (A, team A)                           | 403
viewer team member | user:list                    | eve (A, admin of B)                       | 403
viewer team member | user:update                  | eve (A, admin of B)                       | 403
viewer team member | user:update_budget           | bob (A, team A)                           | 403
viewer team member | user:update_budget           | eve (A, admin of B)                       | 403
viewer team member | user:update_role             | me                                        | 403
viewer team member | user:update_role             | bob (A, team A)                           | 403
viewer team member | user:update_role             | eve (A, admin of B)                       | 403
viewer team member | organization:delete          | org A                                     | 401
viewer team member | organization:info            | org A                                     | ok
viewer team member | organization:list            | org A                                     | ok
viewer team member | organization:member_manage   | org A                                     | 403
viewer team member | organization:update          | org A                                     | 403
viewer team member | access_group:assign          | A group                                   | 403
viewer team member | access_group:create          | A group                                   | 403
viewer team member | access_group:delete          | A group                                   | 403
viewer team member | access_group:read            | A group                                   | 403
viewer team member | access_group:update          | A group                                   | 403
viewer team member | audit:read                   | A audit                                   | 403
viewer team member | bulk_job:read                | bob's job in A                            | 404

internal user      | key:assign_access_groups     | my key                                    | 403
internal user      | key:delete                   | my key                                    | ok
internal user      | key:generate                 | my key                                    | ok
internal user      | key:generate                 | new: my key in team A (I'm not in it)     | 400
internal user      | key:info                     | my key                                    | ok
internal user      | key:list                     | the list                                  | ok
internal user      | key:reassign                 | my key                                    | 403
internal user      | key:unblock                  | my key                                    | ok
internal user      | key:update_budget            | my key                                    | 403
internal user      | team:create                  | new: global team                          | 401
internal user      | team:list                    | the list                                  | 401
internal user      | team:list                    | my rows                                   | ok
internal user      | user:create                  | new: user in A                            | 404
internal user      | user:create                  | new: user, no org                         | 401
internal user      | user:create                  | new: proxy admin in A                     | 403
internal user      | user:delete                  | me                                        | 403
internal user      | user:info                    | me                                        | ok
internal user      | user:list                    | me                                        | ok
internal user      | user:list                    | the list                                  | 403
internal user      | user:update_budget           | me                                        | 403
internal user      | user:update_role             | me                                        | 403
internal user      | organization:create          | new: org                                  | 401
internal user      | organization:list            | the list                                  | ok
internal user      | access_group:assign          | global group                              | 403
internal user      | access_group:create          | global group                              | 403
internal user      | access_group:delete          | global group                              | 403
internal user      | access_group:update          | global group                              | 403
internal user      | catalog:read                 | catalog                                   | ok
internal user      | catalog:write                | catalog                                   | 403
internal user      | audit:read                   | the list                                  | 403
internal user      | usage:report                 | the list                                  | 403
internal user      | bulk_job:read                | my job in B                               | ok
internal user      | bulk_job:read                | platform job                              | 404

internal viewer    | key:assign_access_groups     | my key                                    | 403
internal viewer    | key:delete                   | my key                                    | 403
internal viewer    | key:generate                 | bob's key                                 | 403
internal viewer    | key:generate                 | new: my key in team A (I'm not in it)     | 400
internal viewer    | key:health                   | my key                                    | ok
internal viewer    | key:list                     | my key                                    | ok
internal viewer    | key:list                     | the list                                  | ok
internal viewer    | key:regenerate               | my key                                    | 403
internal viewer    | key:update                   | my key                                    | 403
internal viewer    | team:create                  | new: team in A                            | 404
internal viewer    | team:create                  | new: global team                          | 401
internal viewer    | team:list                    | the list                                  | 401
internal viewer    | user:create                  | new: user in A                            | 404
internal viewer    | user:create                  | new: user, no org                         | 401
internal viewer    | user:create                  | new: proxy admin in A                     | 403
internal viewer    | user:delete                  | me                                        | 403
internal viewer    | user:info                    | me                                        | ok
internal viewer    | user:update                  | me                                        | 403
internal viewer    | user:update_budget           | me                                        | 403
internal viewer    | organization:create          | new: org                                  | 401
internal viewer    | organization:list            | the list                                  | ok
internal viewer    | access_group:assign          | global group                              | 403
internal viewer    | access_group:create          | global group                              | 403
internal viewer    | access_group:delete          | global group                              | 403
internal viewer    | access_group:read            | global group                              | 403
internal viewer    | access_group:update          | global group                              | 403
internal viewer    | catalog:read                 | catalog                                   | ok
internal viewer    | catalog:write                | catalog                                   | 403
internal viewer    | audit:read                   | the list                                  | 403
internal viewer    | usage:report                 | the list                                  | 403
internal viewer    | bulk_job:read                | my job in B                               | ok
internal viewer    | bulk_job:read                | platform job                              | 404

team key           | key:generate                 | new: A team key for bob                   | 401
team key           | key:health                   | A team key                                | ok
team key           | key:info                     | A team key                                | ok
team key           | key:info                     | A team key, itself                        | ok
team key           | key:info                     | B team key                                | 404
team key           | key:list                     | A team key                                | ok
team key           | key:list                     | the list                                  | ok
team key           | key:update                   | A team key, itself                        | 401
team key           | team:info                    | team A                                    | ok
team key           | team:list                    | team A                                    | ok
team key           | team:list                    | the list                                  | ok
team key           | team:update                  | team A                                    | 401
team key           | user:info                    | me                                        | 401
team key           | organization:info            | org A                                     | 401
team key           | catalog:read                 | catalog                                   | ok
team key           | usage:report                 | the list                                  | 403
"""

EXPECTED = {
    "ok": (200, ""),
    "400": (400, "bad_request_error"),
    "401": (401, "auth_error"),
    "401 member": (401, "team_member_permission_error"),
    "403": (403, "auth_error"),
    "404": (404, "not_found_error"),
}


def _rows() -> list[tuple[str, ...]]:
    lines = [line for line in TABLE.strip().splitlines()[1:] if line.strip()]
    return [tuple(cell.strip() for cell in line.split("|")) for line in lines]


ROWS = _rows()


def test_the_table_names_every_actor_and_action_and_only_known_targets():
    assert {actor for actor, _, _, _ in ROWS} == set(ACTORS)
    assert {action for _, action, _, _ in ROWS} == set(ACTIONS)
    assert {target for _, _, target, _ in ROWS} <= set(TARGETS)
    assert {expected for _, _, _, expected in ROWS} <= set(EXPECTED)
    assert len({row[:3] for row in ROWS}) == len(ROWS), "a row repeats another"


@pytest.mark.parametrize(
    ("actor", "action", "target", "expected"), ROWS, ids=[" | ".join(row) for row in ROWS]
)
def test_policy(actor: str, action: str, target: str, expected: str):
    verdict = can(ACTORS[actor], action, TARGETS[target])
    assert (verdict.status, verdict.type if not verdict.allowed else "") == EXPECTED[expected], (
        verdict.message
    )
    assert verdict.allowed is (expected == "ok")
