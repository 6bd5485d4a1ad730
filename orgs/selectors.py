"""Reads of users, organizations, teams and memberships, filtered by the tenant context inside the query."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Count, Prefetch, Q, QuerySet

from accessctl.ids import as_id  # noqa: E402 - a malformed id finds nothing, like a missing one
from accessctl.roles import PLATFORM_ROLES, PlatformRole

from .models import AuditEntry, Organization, OrganizationMembership, Team, TeamMembership, User

if TYPE_CHECKING:
    from accessctl.tenancy import TenantContext


# --- organizations ----------------------------------------------------------------------------


def organizations_in_context(tenant: TenantContext) -> QuerySet[Organization]:
    """Alive organizations the context can see, with their budget row."""
    return tenant.scope(Organization.objects.alive().select_related("budget"), org_field="organization_id")


def organization_in_context(tenant: TenantContext, organization_id: Any) -> Organization | None:
    uid = as_id(organization_id)
    return organizations_in_context(tenant).filter(pk=uid).first() if uid else None


def organizations_with_detail(queryset: QuerySet[Organization]) -> QuerySet[Organization]:
    """Organizations with members (and their users) and teams loaded for a whole page: three queries."""
    return queryset.prefetch_related(
        Prefetch("memberships", queryset=OrganizationMembership.objects.select_related("user", "budget")),
        Prefetch("teams", queryset=Team.objects.order_by("team_alias", "team_id")),
    )


def organization_membership(organization: Organization, user: User) -> OrganizationMembership | None:
    return (
        OrganizationMembership.objects.select_related("user", "budget", "organization")
        .filter(organization=organization, user=user)
        .first()
    )


# --- teams ------------------------------------------------------------------------------------


def teams_in_context(tenant: TenantContext) -> QuerySet[Team]:
    """Teams the context can see (never those of a soft-deleted organization)."""
    return tenant.scope(
        Team.objects.select_related("organization").exclude(organization__deleted_at__isnull=False),
        org_field="organization",
        team_field="team_id",
    )


def team_in_context(tenant: TenantContext, team_id: Any) -> Team | None:
    uid = as_id(team_id)
    return teams_in_context(tenant).filter(pk=uid).first() if uid else None


def teams_by_ids_in_context(tenant: TenantContext, team_ids: list[Any]) -> dict[str, Team]:
    """Teams by id in one query; ids the context cannot see are simply absent."""
    uids = [u for u in (as_id(t) for t in team_ids) if u]
    return {str(t.team_id): t for t in teams_in_context(tenant).filter(pk__in=uids)}


def teams_with_members(queryset: QuerySet[Team]) -> QuerySet[Team]:
    """Teams with their memberships (and users and budgets) loaded for a whole page: one more query."""
    return queryset.prefetch_related(
        Prefetch("memberships", queryset=TeamMembership.objects.select_related("user", "budget").order_by("pk"))
    )


def team_membership(team: Team, user: User) -> TeamMembership | None:
    return TeamMembership.objects.select_related("user", "team", "budget").filter(team=team, user=user).first()


def is_team_member(team: Team, user: User | None) -> bool:
    return user is not None and TeamMembership.objects.filter(team=team, user=user).exists()


def teams_of_user(queryset: QuerySet[Team], user_id: str) -> QuerySet[Team]:
    return queryset.filter(memberships__user__user_id=user_id)


# --- users ------------------------------------------------------------------------------------


def users_in_context(tenant: TenantContext) -> QuerySet[User]:
    """Users the context can see: everyone for platform admins, else themselves and the members of their
    teams and organizations (one row each, however many memberships match)."""
    scoped = tenant.scope(
        User.objects.all(),
        org_field="organization_memberships__organization",
        owner_field="user_id",
        team_field="team_memberships__team",
    )
    if tenant.bypass:
        return User.objects.all()
    return User.objects.filter(pk__in=scoped.values("pk"))


def with_memberships(queryset: QuerySet[User]) -> QuerySet[User]:
    """Users with their organization and team memberships loaded (what `policy.user_target` reads)."""
    # Each team membership with its team (a join, no extra query): the policy reads the team's organization.
    return queryset.prefetch_related(
        "organization_memberships",
        Prefetch("team_memberships", queryset=TeamMembership.objects.select_related("team")),
    )


def user_in_context(tenant: TenantContext, *, user_id: str | None = None, user_email: str | None = None) -> User | None:
    """One user by `user_id`, else by email (case-insensitive), with memberships loaded."""
    qs = with_memberships(users_in_context(tenant))
    if user_id:
        return qs.filter(user_id=user_id).first()
    if user_email:
        return qs.filter(user_email__iexact=user_email).order_by("pk").first()
    return None


def user_by_id(user_id: str) -> User | None:
    """Any user, whatever the context: only for writes the policy has already allowed (member adds)."""
    return with_memberships(User.objects.filter(user_id=user_id)).first()


def users_by_email(user_email: str) -> list[User]:
    return list(with_memberships(User.objects.filter(user_email__iexact=user_email)).order_by("pk")[:2])


def user_list(tenant: TenantContext, *, organization_ids: list[str] | None, filters: dict[str, Any]) -> QuerySet[User]:
    """Users for `/user/list`: the context's users (narrowed to members of `organization_ids` when given),
    filtered, with `key_count` and memberships loaded for the page."""
    qs = users_in_context(tenant)
    if organization_ids is not None:
        qs = qs.filter(
            pk__in=OrganizationMembership.objects.filter(organization_id__in=organization_ids).values("user_id")
        )
    if filters.get("role"):
        qs = qs.filter(user_role=filters["role"])
    if filters.get("user_ids"):
        qs = qs.filter(user_id__in=filters["user_ids"])
    if filters.get("user_email"):
        qs = qs.filter(user_email__icontains=filters["user_email"])
    if filters.get("search"):
        term = filters["search"]
        qs = qs.filter(Q(user_id__icontains=term) | Q(user_email__icontains=term) | Q(user_alias__icontains=term))
    if filters.get("team"):
        uid = as_id(filters["team"])
        qs = qs.filter(team_memberships__team_id=uid) if uid else qs.none()
    prefix = "-" if filters.get("sort_order") == "desc" else ""
    order = filters.get("sort_by") or "user_id"
    return with_memberships(qs.annotate(key_count=Count("keys", distinct=True))).order_by(f"{prefix}{order}", "pk")


# --- REST lists (/api/v1/): the context's rows the caller may read --------------------------------
# Each is the policy's row rule (`organization:info`, `team:info`, `user:info`, `audit:read`) as a
# filter inside the query, so a list never shows a row whose detail route would refuse it.


def organizations_visible(tenant: TenantContext) -> QuerySet[Organization]:
    """Alive organizations of the context where the caller is a member (all of them for readers-of-all)."""
    queryset = organizations_in_context(tenant)
    if tenant.actor.reads_everything:
        return queryset
    return queryset.filter(pk__in=list(tenant.actor.org_roles))


def teams_visible(tenant: TenantContext) -> QuerySet[Team]:
    """Teams of the context the caller belongs to, or whose organization they administer; with members."""
    queryset = teams_in_context(tenant)
    actor = tenant.actor
    if not actor.reads_everything:
        condition = Q(pk__in=list(actor.team_roles)) | Q(organization__in=list(actor.admin_org_ids))
        if actor.key_team_id:
            condition |= Q(pk=actor.key_team_id)
        queryset = queryset.filter(condition)
    return teams_with_members(queryset).order_by("team_alias", "team_id")


def users_visible(tenant: TenantContext) -> QuerySet[User]:
    """The caller and, for org admins, the members of their organizations; with memberships."""
    queryset = users_in_context(tenant)
    actor = tenant.actor
    if not actor.reads_everything:
        condition = Q(user_id=actor.user_id) if actor.user_id else Q(pk__in=[])
        if actor.admin_org_ids:
            members = OrganizationMembership.objects.filter(organization__in=list(actor.admin_org_ids))
            condition |= Q(pk__in=members.values("user_id"))
        queryset = queryset.filter(condition)
    return with_memberships(queryset).order_by("user_id")


def organization_members(organization: Organization) -> QuerySet[OrganizationMembership]:
    return OrganizationMembership.objects.filter(organization=organization).select_related("user", "budget")


def team_members(team: Team) -> QuerySet[TeamMembership]:
    return TeamMembership.objects.filter(team=team).select_related("user", "budget")


def audit_entries_visible(tenant: TenantContext) -> QuerySet[AuditEntry]:
    """Audit entries: everything for readers-of-all in "all" mode, else the entries of the context's
    organization (or of the organizations the caller administers)."""
    queryset = AuditEntry.objects.all()
    actor = tenant.actor
    if tenant.bypass:
        return queryset
    if tenant.organization is not None:
        queryset = queryset.filter(organization_id=tenant.organization.pk)
    if actor.reads_everything:
        return queryset
    return queryset.filter(organization_id__in=list(actor.admin_org_ids))


def manageable_users(actor: Any) -> QuerySet[User]:
    """Active users `actor` may name as a key's owner: everyone for a proxy admin; else themself and the
    members of the organizations and teams they administer who hold no platform role above internal_user,
    are not system users and belong to no organization outside the actor's (the policy's `manages_user`
    decides each one exactly; this query only narrows the choice)."""
    users = User.objects.filter(is_active=True)
    if actor.is_proxy_admin:
        return users
    admin_orgs, admin_teams = list(actor.admin_org_ids), list(actor.admin_team_ids)
    allowed_orgs = set(admin_orgs) | actor.admin_team_org_ids
    base = PLATFORM_ROLES[PlatformRole.INTERNAL_USER].priority
    above = [role for role, info in PLATFORM_ROLES.items() if info.priority > base]
    members = (
        users.filter(
            Q(organization_memberships__organization_id__in=admin_orgs)
            | Q(team_memberships__team_id__in=admin_teams)
            | Q(team_memberships__team__organization_id__in=admin_orgs)
        )
        .exclude(is_system=True)
        .exclude(user_role__in=above)
        .exclude(pk__in=OrganizationMembership.objects.exclude(organization_id__in=allowed_orgs).values("user_id"))
    )
    return users.filter(Q(pk=actor.user_pk) | Q(pk__in=members.values("pk")))
