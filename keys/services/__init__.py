"""Every write to virtual keys. Secrets are returned once, as `(key, raw)`, and stored only as hashes.

One module per concept (validation, authorization, writes, schedule); read as `keys.services.X`.
"""
from .authorization import (  # noqa: F401
    authorize_key_generate,
    authorize_key_update,
)
from .schedule import (  # noqa: F401
    ROTATION_DUE_ACTION,
    end_grace_periods,
    mark_rotation_due,
    usage_report,
)
from .validation import (  # noqa: F401
    ALIAS_TAKEN,
    AUDITED_FIELDS,
    BUDGET_FIELDS,
    EDITABLE_FIELDS,
    MAX_GRACE_PERIOD,
    MAX_GRACE_PERIOD_TEXT,
    SPEND_FIELDS,
    alias_scope,
    grace_until,
    rotation_due,
    validate_allowed_routes,
    validate_budget,
    validate_key_alias,
    validate_key_type,
    validate_models,
)
from .writes import (  # noqa: F401
    KeyAlreadyRotated,
    Rotated,
    key_block,
    key_delete,
    key_generate,
    key_regenerate,
    key_unblock,
    key_update,
)
