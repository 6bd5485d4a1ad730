"""OpenID Connect login for the admin (SPEC §10), on mozilla-django-oidc.

Configured from the environment (`accessctl/settings.py` → `ACCESSCTL_OIDC`): issuer, client id and
secret, the claim that carries groups, and a map from IdP groups to platform, organization and team
roles. The provider's endpoints come from its discovery document unless given.

Every login re-derives the user's roles from the groups claim, through the services (audited, caches
invalidated): the platform role, and the memberships of every organization and team the map names —
a group removed at the IdP removes the role at the next login; memberships elsewhere are left alone.
A user first seen through SSO is created with the mapped roles. Users are matched by the IdP's
subject (`sso_user_id`), never by e-mail, so an IdP cannot take over a local account.

The ID token is checked here, not only by the library: signature (the provider's JWKS), algorithm,
issuer, audience (our client id), expiry and nonce. Any failure is a 400 page saying what failed; nothing
is written before every check has passed.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accessctl.errors import ServiceError
from accessctl.roles import ORG_ROLES, PLATFORM_ROLES, TEAM_ROLES, PlatformRole

from . import services
from .models import Organization, OrganizationMembership, Team, TeamMembership, User

logger = logging.getLogger(__name__)
TIMEOUT_SECONDS = 5
LEEWAY_SECONDS = 30  # clock skew tolerated on exp / iat


class SSOError(SuspiciousOperation):
    """A login the IdP answered but we refuse; the message says why (shown on the error page)."""


@dataclass(frozen=True)
class RoleGrant:
    """What one IdP group grants: a platform role, or a role in one organization or team."""

    platform: str | None = None
    organization: str | None = None
    team: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class SSOConfig:
    issuer: str
    client_id: str
    client_secret: str
    groups_claim: str = "groups"
    role_map: dict[str, tuple[RoleGrant, ...]] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)  # explicit ones; the rest from discovery
    sign_algorithm: str = "RS256"
    default_platform_role: str = PlatformRole.INTERNAL_USER


def parse_role_map(raw: str | dict) -> dict[str, tuple[RoleGrant, ...]]:
    """`{"<idp group>": {"platform": "proxy_admin"} | {"organization": "<id>", "role": "org_admin"} |
    {"team": "<id>", "role": "admin"} | [several of those]}`; a mistake fails at start, naming the group."""
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, dict):
        raise ImproperlyConfigured("ACCESSCTL_OIDC_ROLE_MAP must be a JSON object of IdP group → grant(s).")
    parsed: dict[str, tuple[RoleGrant, ...]] = {}
    for group, grants in data.items():
        grants = grants if isinstance(grants, list) else [grants]
        out = []
        for grant in grants:
            if not isinstance(grant, dict) or set(grant) - {"platform", "organization", "team", "role"}:
                raise ImproperlyConfigured(f"ACCESSCTL_OIDC_ROLE_MAP[{group!r}]: unknown grant {grant!r}.")
            if grant.get("platform"):
                if grant["platform"] not in PLATFORM_ROLES:
                    raise ImproperlyConfigured(f"ACCESSCTL_OIDC_ROLE_MAP[{group!r}]: unknown platform role.")
                out.append(RoleGrant(platform=grant["platform"]))
            elif grant.get("organization"):
                if grant.get("role") not in ORG_ROLES:
                    raise ImproperlyConfigured(f"ACCESSCTL_OIDC_ROLE_MAP[{group!r}]: role must be one of {list(ORG_ROLES)}.")
                out.append(RoleGrant(organization=str(grant["organization"]), role=grant["role"]))
            elif grant.get("team"):
                if grant.get("role") not in TEAM_ROLES:
                    raise ImproperlyConfigured(f"ACCESSCTL_OIDC_ROLE_MAP[{group!r}]: role must be one of {list(TEAM_ROLES)}.")
                out.append(RoleGrant(team=str(grant["team"]), role=grant["role"]))
            else:
                raise ImproperlyConfigured(f"ACCESSCTL_OIDC_ROLE_MAP[{group!r}]: name a platform, organization or team.")
        parsed[str(group)] = tuple(out)
    return parsed


def config() -> SSOConfig | None:
    """The SSO configuration, or None when SSO is off (no issuer or client id)."""
    raw = getattr(settings, "ACCESSCTL_OIDC", None) or {}
    if not raw.get("issuer") or not raw.get("client_id"):
        return None
    return SSOConfig(
        issuer=raw["issuer"].rstrip("/"),
        client_id=raw["client_id"],
        client_secret=raw.get("client_secret") or "",
        groups_claim=raw.get("groups_claim") or "groups",
        role_map=parse_role_map(raw.get("role_map") or {}),
        endpoints={k: v for k, v in (raw.get("endpoints") or {}).items() if v},
        default_platform_role=raw.get("default_platform_role") or PlatformRole.INTERNAL_USER,
    )


def password_login_enabled() -> bool:
    return bool(getattr(settings, "ACCESSCTL_PASSWORD_LOGIN", True))


_discovered: dict[str, dict[str, Any]] = {}
_discovery_lock = threading.Lock()


def endpoints(conf: SSOConfig) -> dict[str, str]:
    """authorization / token / userinfo / jwks endpoints: explicit ones, else the issuer's discovery
    document (read once per process)."""
    wanted = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")
    if all(name in conf.endpoints for name in wanted):
        return conf.endpoints
    with _discovery_lock:
        document = _discovered.get(conf.issuer)
        if document is None:
            try:
                response = requests.get(f"{conf.issuer}/.well-known/openid-configuration", timeout=TIMEOUT_SECONDS)
                response.raise_for_status()
                document = response.json()
            except (requests.RequestException, ValueError) as exc:
                raise SSOError(f"The identity provider's discovery document could not be read: {exc}") from exc
            if document.get("issuer", "").rstrip("/") != conf.issuer:
                raise SSOError("The identity provider's discovery document names another issuer.")
            _discovered[conf.issuer] = document
    return {name: conf.endpoints.get(name) or document[name] for name in wanted}


def _require() -> SSOConfig:
    conf = config()
    if conf is None:
        raise Http404("Single sign-on is not configured.")
    return conf


# --- role derivation ------------------------------------------------------------------------------


@dataclass
class DerivedRoles:
    platform: str
    organizations: dict[str, str]  # organization_id → org role, for every organization the map names
    teams: dict[str, str]  # team_id → team role, for every team the map names
    managed_organizations: set[str]
    managed_teams: set[str]


def derive_roles(conf: SSOConfig, groups: list[str]) -> DerivedRoles:
    """The roles the groups grant: the highest of each family wins."""
    platform = conf.default_platform_role
    organizations: dict[str, str] = {}
    teams: dict[str, str] = {}
    managed_orgs: set[str] = set()
    managed_teams: set[str] = set()
    for grants in conf.role_map.values():
        for grant in grants:
            if grant.organization:
                managed_orgs.add(grant.organization)
            if grant.team:
                managed_teams.add(grant.team)
    for group in groups:
        for grant in conf.role_map.get(group, ()):
            if grant.platform and PLATFORM_ROLES[grant.platform].priority > PLATFORM_ROLES[platform].priority:
                platform = grant.platform
            if grant.organization:
                held = organizations.get(grant.organization)
                if held is None or ORG_ROLES[grant.role].priority > ORG_ROLES[held].priority:
                    organizations[grant.organization] = grant.role
            if grant.team:
                held = teams.get(grant.team)
                if held is None or TEAM_ROLES[grant.role].priority > TEAM_ROLES[held].priority:
                    teams[grant.team] = grant.role
    return DerivedRoles(platform, organizations, teams, managed_orgs, managed_teams)


@transaction.atomic
def sso_sync_roles(*, user: User, derived: DerivedRoles) -> User:
    """Make the user's platform role and the memberships of the mapped organizations and teams what the
    IdP's groups say, through the services (each change audited, the caches invalidated)."""
    if user.user_role != derived.platform:
        user = services.user_update(actor=None, user=user, data={"user_role": derived.platform})
    org_members = {
        str(m.organization_id): m
        for m in OrganizationMembership.objects.filter(user=user, organization_id__in=derived.managed_organizations)
    }
    for org_id in derived.managed_organizations:
        wanted, held = derived.organizations.get(org_id), org_members.get(org_id)
        if wanted and held is None:
            organization = Organization.objects.filter(pk=org_id, deleted_at__isnull=True).first()
            if organization is None:
                logger.warning("SSO role map names organization %s, which does not exist", org_id)
                continue
            services.organization_member_add(actor=None, organization=organization, user=user, user_role=wanted)
        elif wanted and held.user_role != wanted:
            services.organization_member_update(actor=None, membership=held, user_role=wanted)
        elif not wanted and held is not None:
            services.organization_member_delete(actor=None, membership=held)
    team_members = {
        str(m.team_id): m for m in TeamMembership.objects.filter(user=user, team_id__in=derived.managed_teams)
    }
    for team_id in derived.managed_teams:
        wanted, held = derived.teams.get(team_id), team_members.get(team_id)
        if wanted and held is None:
            team = Team.objects.filter(pk=team_id).first()
            if team is None:
                logger.warning("SSO role map names team %s, which does not exist", team_id)
                continue
            services.team_member_add(actor=None, team=team, user=user, role=wanted)
        elif wanted and held.role != wanted:
            services.team_member_update(actor=None, membership=held, role=wanted)
        elif not wanted and held is not None:
            services.team_member_delete(actor=None, membership=held)
    return User.objects.get(pk=user.pk)


# --- mozilla-django-oidc, configured from SSOConfig ---------------------------------------------------


class SSOBackend(OIDCAuthenticationBackend):
    """The library's code flow, with our configuration, full ID-token checks and role derivation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the library's reads settings we do not use
        self.UserModel = get_user_model()
        self.conf = config()
        self.OIDC_RP_SIGN_ALGO = "RS256"
        self.OIDC_RP_IDP_SIGN_KEY = None
        if self.conf is not None:
            self.OIDC_RP_CLIENT_ID = self.conf.client_id
            self.OIDC_RP_CLIENT_SECRET = self.conf.client_secret

    def authenticate(self, request: HttpRequest, **kwargs: Any) -> User | None:
        if self.conf is None or request is None or "code" not in request.GET:
            return None  # not an SSO callback: password logins go to the ModelBackend
        found = endpoints(self.conf)
        self.OIDC_OP_TOKEN_ENDPOINT = found["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = found["userinfo_endpoint"]
        self.OIDC_OP_JWKS_ENDPOINT = found["jwks_uri"]
        try:
            return super().authenticate(request, **kwargs)
        except requests.RequestException as exc:
            raise SSOError(f"The identity provider did not answer as expected: {exc}") from exc

    def _verify_jws(self, payload: str, key: Any) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(payload)
        except jwt.InvalidTokenError as exc:
            raise SSOError("The ID token is malformed.") from exc
        if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
            raise SSOError(f"The ID token is signed with {header.get('alg')!r}, not {self.OIDC_RP_SIGN_ALGO}.")
        try:
            return jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.conf.client_id,
                issuer=self.conf.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise SSOError("The ID token has expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise SSOError("The ID token was issued for another client (wrong audience).") from exc
        except jwt.InvalidIssuerError as exc:
            raise SSOError("The ID token was issued by another provider (wrong issuer).") from exc
        except jwt.InvalidSignatureError as exc:
            raise SSOError("The ID token's signature does not verify with the provider's keys.") from exc
        except jwt.InvalidTokenError as exc:
            raise SSOError(f"The ID token is invalid: {exc}.") from exc

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The userinfo endpoint's claims over the verified ID token's; the subject must agree."""
        claims = dict(payload)
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") not in (None, payload["sub"]):
            raise SSOError("The provider's userinfo names another subject than the ID token.")
        claims.update(userinfo)
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User | None:
        try:
            return super().get_or_create_user(access_token, id_token, payload)
        except SuspiciousOperation as exc:  # the library turns these into a bare failure: keep the reason
            self.request.sso_error = str(exc)
            raise

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims: dict[str, Any]):
        return self.UserModel.objects.filter(sso_user_id=claims["sub"])

    def _groups(self, claims: dict[str, Any]) -> list[str]:
        groups = claims.get(self.conf.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise SSOError(f"The {self.conf.groups_claim!r} claim must be a list of group names.")
        return groups

    def create_user(self, claims: dict[str, Any]) -> User:
        derived = derive_roles(self.conf, self._groups(claims))
        user_id = claims.get("email") or claims.get("preferred_username") or claims["sub"]
        with transaction.atomic():
            if User.objects.filter(user_id=user_id).exists():
                raise SSOError(f"A local user {user_id!r} already exists and is not linked to this SSO account; "
                               "an admin must set its SSO user id first.")
            try:
                user = services.user_create(
                    actor=None, user_id=user_id, user_email=claims.get("email"), sso_user_id=claims["sub"],
                    user_alias=claims.get("name"), user_role=derived.platform,
                )
            except ServiceError as exc:
                raise SSOError(f"The user could not be created: {exc.message}") from exc
            return sso_sync_roles(user=user, derived=derived)

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        if not user.is_active:
            raise SSOError("This account is deactivated.")
        return sso_sync_roles(user=user, derived=derive_roles(self.conf, self._groups(claims)))


class SSOLoginView(OIDCAuthenticationRequestView):
    """Start the code flow: redirect to the provider's authorization endpoint (with state and nonce)."""

    def __init__(self, **kwargs: Any) -> None:
        super(OIDCAuthenticationRequestView, self).__init__(**kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        conf = _require()
        try:
            self.OIDC_OP_AUTH_ENDPOINT = endpoints(conf)["authorization_endpoint"]
        except SSOError as exc:
            return failure_page(request, str(exc), status=502)
        self.OIDC_RP_CLIENT_ID = conf.client_id
        return super().get(request)


class SSOCallbackView(OIDCAuthenticationCallbackView):
    """The provider's redirect back: log in, or show why not (nothing has been written then)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        _require()
        if "error" in request.GET:
            return failure_page(request, f"The identity provider refused the login: {request.GET['error']}.")
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            logger.warning("SSO login refused: %s", exc)
            return failure_page(request, str(exc))

    @property
    def failure_url(self) -> str:
        return "/admin/login/"

    @property
    def success_url(self) -> str:
        return self.request.session.get("oidc_login_next") or "/admin/"

    def login_failure(self) -> HttpResponse:
        reason = getattr(self.request, "sso_error", None)
        return failure_page(
            self.request, reason or "The login could not be completed (expired or replayed request); try again."
        )


def failure_page(request: HttpRequest, message: str, status: int = 400) -> HttpResponse:
    return TemplateResponse(
        request, "admin/sso_error.html", {"title": "Single sign-on failed", "message": message}, status=status
    )


class PasswordLoginOffBackend:
    """Stands in for Django's ModelBackend when ACCESSCTL_PASSWORD_LOGIN is false: no password
    authenticates anyone; sessions opened through SSO keep working."""

    def authenticate(self, request: HttpRequest, username: str | None = None, password: str | None = None, **kw):
        return None

    def get_user(self, user_id: Any) -> User | None:
        user = User.objects.filter(pk=user_id).first()
        return user if user is not None and user.is_active else None
