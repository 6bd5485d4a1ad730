"""What the rotation routes share (LiteLLM's `/key/regenerate`, REST `keys/{token}/regenerate/`): the
Idempotency-Key header, finding the key a retry names, and the fields that tell a replay from a rotation."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter

from accessctl.errors import InvalidInput, NotFound
from accessctl.tenancy import TenantContext
from keys import selectors
from keys.models import VirtualKey
from keys.services import Rotated

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="A retry with the same value replays the first rotation's outcome (within 24 hours).",
)
REPLAY_MESSAGE = (
    "Replayed: this rotation was already made with this Idempotency-Key. The new secret was shown once, "
    "in the first response, and is never shown again."
)


def idempotency_key(request: Any) -> str | None:
    """The request's Idempotency-Key header (None when absent); 400 when blank or too long."""
    value = request.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 255:
        raise InvalidInput("The Idempotency-Key header must be 1 to 255 characters.", param=IDEMPOTENCY_HEADER)
    return value


def key_to_rotate(tenant: TenantContext, passed: str, idem: str | None, message: str = "Key not found.") -> VirtualKey:
    key = selectors.key_for_rotation(tenant, passed, idem)
    if key is None:
        raise NotFound(message, param="key")
    return key


def rotation_fields(result: Rotated) -> dict[str, Any]:
    """Fields every rotation response carries besides the key's row."""
    until = result.key.previous_token_expires if result.key.previous_token else None
    fields: dict[str, Any] = {
        "grace_period_until": until.isoformat() if until is not None else None,
        "idempotent_replay": result.replayed,
    }
    if result.replayed:
        fields["message"] = REPLAY_MESSAGE
    return fields


def mark_replay(response: Any, result: Rotated) -> Any:
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    return response
