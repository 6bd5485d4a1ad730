"""Every write to virtual keys. Secrets are returned once, as `(key, raw)`, and stored only as hashes.

One module per concept (validation, authorization, writes, schedule); read as `keys.services.X`.
"""
from accessctl.budgets import (  # noqa: F401  (shared with orgs; read here as keys.services.X too)
    BUDGET_FIELDS,
    SPEND_FIELDS,
    validate_budget,
    validate_models,
)

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
    EDITABLE_FIELDS,
    MAX_GRACE_PERIOD,
    MAX_GRACE_PERIOD_TEXT,
    alias_scope,
    grace_until,
    rotation_due,
    validate_allowed_routes,
    validate_key_alias,
    validate_key_type,
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
    member_keys_delete,
    team_keys_move,
)
