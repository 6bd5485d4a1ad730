"""Roles as ordered data (SPEC §2): declared once, compared by priority, never by chains of string checks."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The object permission (django-guardian, on orgs' Team) that grants a team admin's rights on one team.
MANAGE_TEAM = "manage_team"


class PlatformRole(StrEnum):
    PROXY_ADMIN = "proxy_admin"
    PROXY_ADMIN_VIEWER = "proxy_admin_viewer"
    INTERNAL_USER = "internal_user"
    INTERNAL_USER_VIEWER = "internal_user_viewer"


class OrgRole(StrEnum):
    ORG_ADMIN = "org_admin"
    INTERNAL_USER = "internal_user"
    INTERNAL_USER_VIEWER = "internal_user_viewer"


class TeamRole(StrEnum):
    ADMIN = "admin"
    USER = "user"


@dataclass(frozen=True)
class RoleInfo:
    value: str
    label: str
    priority: int  # higher outranks lower
    reads_everything: bool = False
    writes_everything: bool = False
    creates_own_keys: bool = False


PLATFORM_ROLES: dict[str, RoleInfo] = {
    PlatformRole.PROXY_ADMIN: RoleInfo(
        PlatformRole.PROXY_ADMIN, "Proxy admin", 100, reads_everything=True, writes_everything=True,
        creates_own_keys=True,
    ),
    PlatformRole.PROXY_ADMIN_VIEWER: RoleInfo(
        PlatformRole.PROXY_ADMIN_VIEWER, "Proxy admin viewer", 80, reads_everything=True
    ),
    PlatformRole.INTERNAL_USER: RoleInfo(PlatformRole.INTERNAL_USER, "Internal user", 20, creates_own_keys=True),
    PlatformRole.INTERNAL_USER_VIEWER: RoleInfo(PlatformRole.INTERNAL_USER_VIEWER, "Internal user viewer", 10),
}

ORG_ROLES: dict[str, RoleInfo] = {
    OrgRole.ORG_ADMIN: RoleInfo(OrgRole.ORG_ADMIN, "Organization admin", 100, creates_own_keys=True),
    OrgRole.INTERNAL_USER: RoleInfo(OrgRole.INTERNAL_USER, "Internal user", 20, creates_own_keys=True),
    OrgRole.INTERNAL_USER_VIEWER: RoleInfo(OrgRole.INTERNAL_USER_VIEWER, "Internal user viewer", 10),
}

TEAM_ROLES: dict[str, RoleInfo] = {
    TeamRole.ADMIN: RoleInfo(TeamRole.ADMIN, "Team admin", 100),
    TeamRole.USER: RoleInfo(TeamRole.USER, "Team member", 10),
}

PLATFORM_ROLE_CHOICES = [(r.value, r.label) for r in PLATFORM_ROLES.values()]
ORG_ROLE_CHOICES = [(r.value, r.label) for r in ORG_ROLES.values()]
TEAM_ROLE_CHOICES = [(r.value, r.label) for r in TEAM_ROLES.values()]
# The bare values, in the same order: what API serializers offer (one OpenAPI enum per family).
PLATFORM_ROLE_VALUES = [r.value for r in PLATFORM_ROLES.values()]
ORG_ROLE_VALUES = [r.value for r in ORG_ROLES.values()]
TEAM_ROLE_VALUES = [r.value for r in TEAM_ROLES.values()]

# The routes a team member with role `user` may be granted on the team's keys (SPEC §2).
TEAM_MEMBER_PERMISSIONS: tuple[str, ...] = (
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
# Every member holds these whatever the stored list says (LiteLLM's baseline).
BASELINE_TEAM_MEMBER_PERMISSIONS: tuple[str, ...] = ("/key/info", "/key/health")
DEFAULT_TEAM_MEMBER_PERMISSIONS: list[str] = list(BASELINE_TEAM_MEMBER_PERMISSIONS)


def platform_role(value: str | None) -> RoleInfo:
    """The role info of a platform role; unknown or missing counts as internal_user (as LiteLLM does)."""
    return PLATFORM_ROLES.get(value or "", PLATFORM_ROLES[PlatformRole.INTERNAL_USER])


def outranks(roles: dict[str, RoleInfo], a: str, b: str) -> bool:
    """True when role `a` is at least as high as role `b` in the same family."""
    return roles[a].priority >= roles[b].priority


def team_member_permissions(stored: list[str] | None) -> frozenset[str]:
    """The effective grants of a team member with role `user`: stored list (or default) plus the baseline."""
    granted = DEFAULT_TEAM_MEMBER_PERMISSIONS if stored is None else stored
    return frozenset(granted) | frozenset(BASELINE_TEAM_MEMBER_PERMISSIONS)
