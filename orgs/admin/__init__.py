"""Admin for users, organizations, teams, memberships, budgets and the (read-only) audit log: one module
per page family, registered on import."""
from . import common, organizations, records, teams, users  # noqa: F401 - each registers its pages
