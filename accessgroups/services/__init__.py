"""Every write to access groups, their assignments and the catalog, and the sync of the denormalized ids.

One module per concept (sync, groups, catalog); read as `accessgroups.services.X`.
"""
from .catalog import (  # noqa: F401
    CATALOG_MODELS,
    catalog_delete,
    catalog_upsert,
)
from .groups import (  # noqa: F401
    DELETE_NAMED_KEYS_LIMIT,
    GROUP_FIELDS,
    access_group_assign,
    access_group_create,
    access_group_delete,
    access_group_get,
    access_group_unassign,
    access_group_update,
    set_assigned_groups,
    team_keys_detach,
)
from .sync import (  # noqa: F401
    BATCH_SIZE,
    count_assignments,
    delete_orphan_key_assignments,
    sync_after_group_removed,
    sync_all,
    sync_groups,
    sync_keys,
    sync_teams,
)
