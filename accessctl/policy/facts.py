"""Who asks and about what: `Actor`, `UserFacts`, `Target`, and the `Verdict` a rule answers."""
from __future__ import annotations

from dataclasses import dataclass, field

from accessctl.roles import (
    PLATFORM_ROLES,
    OrgRole,
    PlatformRole,
    TeamRole,
    platform_role,
)

# --- who is asking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """The caller: a user (or none, for a team service-account key), their memberships, their key."""

    user_id: str | None
    platform_role: str | None
    is_system: bool = False
    is_master: bool = False
    org_roles: dict[str, str] = field(default_factory=dict)  # organization_id → org role (alive orgs only)
    team_roles: dict[str, str] = field(default_factory=dict)  # team_id → team role (grants count as admin)
    key_team_id: str | None = None  # the team of the key used, for service-account keys
    key_token: str | None = None
    user_pk: int | None = None
    # Teams the user may manage through a django-guardian object permission (`orgs.manage_team`) rather
    # than a membership; `actor_for` also lists them in `team_roles` as admin, so every rule honours them.
    granted_team_ids: frozenset[str] = frozenset()
    # team_id → the team's organization (None: a team outside any organization), for the teams in `team_roles`.
    team_org_ids: dict[str, str | None] = field(default_factory=dict)

    @property
    def role_info(self):
        return platform_role(self.platform_role)

    @property
    def is_proxy_admin(self) -> bool:
        return self.is_master or self.role_info.writes_everything

    @property
    def reads_everything(self) -> bool:
        return self.is_master or self.is_system or self.role_info.reads_everything

    @property
    def is_service_account(self) -> bool:
        return self.user_id is None and not self.is_master

    def org_role(self, organization_id: str | None) -> str | None:
        return self.org_roles.get(str(organization_id)) if organization_id else None

    def is_org_admin(self, organization_id: str | None) -> bool:
        return self.org_role(organization_id) == OrgRole.ORG_ADMIN

    def team_role(self, team_id: str | None) -> str | None:
        return self.team_roles.get(str(team_id)) if team_id else None

    @property
    def admin_org_ids(self) -> set[str]:
        return {org for org, role in self.org_roles.items() if role == OrgRole.ORG_ADMIN}

    @property
    def admin_team_ids(self) -> set[str]:
        return {team for team, role in self.team_roles.items() if role == TeamRole.ADMIN}

    @property
    def admin_team_org_ids(self) -> set[str]:
        """Organizations in which the actor runs at least one team."""
        return {org for team, org in self.team_org_ids.items() if org and team in self.admin_team_ids}

    @property
    def uses_admin(self) -> bool:
        """May log in to the admin: platform admins and viewers, org admins, team admins (role or grant)."""
        return (
            self.platform_role in (PlatformRole.PROXY_ADMIN, PlatformRole.PROXY_ADMIN_VIEWER)
            or bool(self.admin_org_ids)
            or bool(self.admin_team_ids)
        )

    @property
    def may_create_own_keys(self) -> bool:
        info = PLATFORM_ROLES.get(self.platform_role or "")
        return bool(info and info.creates_own_keys)


@dataclass(frozen=True)
class UserFacts:
    """What the policy needs to know about a user named by a request (a key's owner, a member, a user row)."""

    user_id: str
    platform_role: str | None = PlatformRole.INTERNAL_USER
    is_system: bool = False
    org_roles: tuple[tuple[str, str], ...] = ()  # (organization_id, org role)
    teams: tuple[tuple[str, str | None], ...] = ()  # (team_id, the team's organization_id)

    @property
    def org_ids(self) -> tuple[str, ...]:
        return tuple(org for org, _ in self.org_roles)

    @property
    def above_internal_user(self) -> bool:
        """A platform role above internal_user (an admin or admin viewer), or a system user."""
        return self.is_system or platform_role(self.platform_role).priority > _INTERNAL_USER_PRIORITY


_INTERNAL_USER_PRIORITY = PLATFORM_ROLES[PlatformRole.INTERNAL_USER].priority


@dataclass(frozen=True)
class Target:
    """Facts about the row acted on (or, for creates, where it would be created)."""

    organization_id: str | None = None  # the row's tenant (a key's or team's organization, a group's owner)
    team_id: str | None = None
    owner_user_id: str | None = None  # a key's owner, or the user row itself
    member_permissions: tuple[str, ...] | None = None  # the team's, for team keys
    user_org_ids: tuple[str, ...] = ()  # for user rows: the organizations the user belongs to
    user_team_ids: tuple[str, ...] = ()  # for user rows: the teams the user belongs to
    is_global: bool = False  # a global access group, or a team outside any organization
    new_platform_role: str | None = None  # for user creates/updates that set a role
    owner_in_team: bool | None = None  # for team-key creates: is the key's owner a member of the team?
    owner_platform_role: str | None = None  # for user rows: the user's own platform role
    # The user the request names (a key's new owner, a user row): judged by `manages_user`. None for
    # an owner that does not exist yet (created by the same request, inside the actor's tenant).
    owner: UserFacts | None = None
    key_token: str | None = None  # for key rows: the key's token (a key without a user reads only itself)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    status: int = 200
    type: str = ""
    message: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Verdict(True)


def deny(status: int, message: str, type: str | None = None) -> Verdict:
    default_type = {400: "bad_request_error", 401: "auth_error", 403: "auth_error", 404: "not_found_error"}[status]
    return Verdict(False, status, type or default_type, message)


NOT_FOUND = deny(404, "Not found.")
