"""Who is calling: `Authorization: Bearer <key>` (the master key or a virtual key), or a browser session.

Failures are 401s in the SPEC §7 shape with LiteLLM's types and messages; no secret ever appears
in a message or `param` — only the masked form.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, SessionAuthentication

from accessctl.errors import Unauthorized
from accessctl.roles import PlatformRole
from keys import crypto
from keys.models import VirtualKey
from orgs.models import User

MASTER_USER_ID = "default_user_id"


@dataclass
class KeyCredentials:
    """What authenticated the request: the master key, or a virtual key (loaded with its path)."""

    key: VirtualKey | None
    is_master: bool = False


class ServiceAccount:
    """`request.user` for a team service-account key (a key with no user)."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_system = False
    pk = None
    user_id = None
    user_role = None

    def __init__(self, key: VirtualKey):
        self.key = key

    def __str__(self) -> str:
        return f"service account of team {self.key.team_id}"


def master_user() -> User:
    """The proxy-admin user the master key acts as (`default_user_id`), created on first use."""
    user, _ = User.objects.get_or_create(
        user_id=MASTER_USER_ID, defaults={"user_role": PlatformRole.PROXY_ADMIN}
    )
    return user


def bearer_value(request: Any) -> str | None:
    """The raw value after `Bearer ` (None when there is no Authorization header).

    Raises 401 for a header without the `Bearer ` prefix.
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        alt = request.META.get("HTTP_X_API_KEY") or request.META.get("HTTP_API_KEY")
        return alt.strip() if alt else None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized(
            "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix.", type="auth_error"
        )
    return value.strip()


def is_master_key(raw: str) -> bool:
    master = settings.ACCESSCTL_MASTER_KEY
    return bool(master) and hmac.compare_digest(raw.encode(), master.encode())


def load_key(raw: str) -> VirtualKey:
    """The usable key for a raw secret, with team, organization and user; 401 otherwise."""
    if not raw.startswith(crypto.KEY_PREFIX):
        raise Unauthorized(
            "Authentication Error, Invalid proxy server token passed. Key is expected to start with 'sk-'.",
            type="auth_error",
        )
    token = crypto.hash_secret(raw)
    # The old secret of a rotation is accepted until its grace period ends.
    key = (
        VirtualKey.objects.select_related("team", "team__organization", "organization", "user")
        .filter(Q(token=token) | Q(previous_token=token, previous_token_expires__gt=timezone.now()))
        .first()
    )
    if key is None:
        raise Unauthorized("Authentication Error, Invalid proxy server token passed.", type="auth_error")
    if key.blocked:
        raise Unauthorized(
            "Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin.", type="auth_error"
        )
    if key.expires is not None and key.expires <= timezone.now():
        raise Unauthorized(
            f"Authentication Error - Expired Key. Key Expiry time {key.expires.isoformat()}",
            type="expired_key",
            param=crypto.mask(raw),
        )
    org = key.organization or (key.team.organization if key.team_id else None)
    if org is not None and org.deleted_at is not None:
        raise Unauthorized("Authentication Error, the key's organization is deleted.", type="auth_error")
    if key.user_id and not key.user.is_active:
        raise Unauthorized("Authentication Error, the key's user is deactivated.", type="auth_error")
    return key


class BearerKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer sk-…`: the master key as `default_user_id` (proxy admin), or a virtual key
    as its user (a service-account key as a `ServiceAccount`)."""

    def authenticate(self, request):
        raw = bearer_value(request)
        if raw is None:
            return None
        if is_master_key(raw):
            return master_user(), KeyCredentials(key=None, is_master=True)
        key = load_key(raw)
        user = key.user if key.user_id else ServiceAccount(key)
        return user, KeyCredentials(key=key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="accessctl"'


class BrowserSessionAuthentication(SessionAuthentication):
    """The admin login also authenticates the browsable API (CSRF enforced on writes)."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        return user, KeyCredentials(key=None)
