"""Admin for access groups, their team and key assignments, the catalog of models, MCP servers and agents,
and bulk assignment jobs: one module per page family, registered on import."""
from . import assignment, catalog, groups, jobs  # noqa: F401 - each registers its pages
