"""Every write to users, organizations, teams and memberships; each in a transaction, each audited.

One module per resource (common, teams, organizations, users); read as `orgs.services.X`.
"""
from .common import (  # noqa: F401
    ORGANIZATION_FIELDS,
    TEAM_FIELDS,
    USER_FIELDS,
    models_outside,
)
from .organizations import (  # noqa: F401
    authorize_organization_update,
    organization_create,
    organization_delete,
    organization_member_add,
    organization_member_delete,
    organization_member_update,
    organization_update,
)
from .teams import (  # noqa: F401
    authorize_team_update,
    team_create,
    team_delete,
    team_grant_manage,
    team_member_add,
    team_member_delete,
    team_member_update,
    team_permissions_update,
    team_revoke_manage,
    team_update,
)
from .users import (  # noqa: F401
    authorize_user_create,
    authorize_user_update,
    user_create,
    user_delete,
    user_update,
)
