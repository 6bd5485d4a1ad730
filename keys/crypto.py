"""Key secrets: generated with `secrets`, stored only as SHA-256 hex, compared in constant time (SPEC §9)."""
from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-"
SECRET_BYTES = 32  # 256 bits of entropy; LiteLLM uses 16
MIN_CUSTOM_KEY_LENGTH = 16


def generate_secret() -> str:
    """A new raw key: `sk-` plus 32 random bytes, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(raw: str) -> str:
    """The stored form of a secret: SHA-256 hex."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def mask(raw_or_token: str | None) -> str:
    """The only form of a secret that may be shown after creation: `sk-...abcd`."""
    if not raw_or_token:
        return "sk-..."
    if len(raw_or_token) < 16:
        return "sk-..."
    return f"sk-...{raw_or_token[-4:]}"


def token_for(value: str) -> str:
    """Turn what a caller passes as a key (raw `sk-…` or the token hash) into the token."""
    value = value.strip()
    if value.startswith(KEY_PREFIX):
        return hash_secret(value)
    return value.lower()


def is_valid_custom_key(raw: str) -> bool:
    return raw.startswith(KEY_PREFIX) and len(raw) >= MIN_CUSTOM_KEY_LENGTH
