"""REST API routes (/api/v1/) of this app: access groups and the catalog."""
from django.urls import path

from . import views

urlpatterns: list = [
    path("access-groups/", views.AccessGroupListView.as_view(), name="access-group-list"),
    path("access-groups/<str:access_group_id>/", views.AccessGroupDetailView.as_view(), name="access-group-detail"),
    path("access-groups/<str:access_group_id>/keys/", views.AccessGroupKeyListView.as_view(),
         name="access-group-keys"),
    path("catalog/models/", views.CatalogModelListView.as_view(), name="catalog-model-list"),
    path("catalog/models/<path:model_name>/", views.CatalogModelDetailView.as_view(), name="catalog-model-detail"),
    path("catalog/mcp-servers/", views.MCPServerListView.as_view(), name="catalog-mcp-server-list"),
    path("catalog/mcp-servers/<str:server_id>/", views.MCPServerDetailView.as_view(),
         name="catalog-mcp-server-detail"),
    path("catalog/agents/", views.AgentListView.as_view(), name="catalog-agent-list"),
    path("catalog/agents/<str:agent_id>/", views.AgentDetailView.as_view(), name="catalog-agent-detail"),
]

# Bulk assignment jobs (accessgroups/api/bulk.py).
from django.urls import path as _path  # noqa: E402

from accessgroups.api.bulk import AccessGroupBulkAssignView, BulkJobDetailView, BulkJobResumeView  # noqa: E402

urlpatterns += [
    _path("access-groups/<str:access_group_id>/bulk-assign/", AccessGroupBulkAssignView.as_view(),
          name="access-group-bulk-assign"),
    _path("bulk-jobs/<str:job_id>/", BulkJobDetailView.as_view(), name="bulk-job-detail"),
    _path("bulk-jobs/<str:job_id>/resume/", BulkJobResumeView.as_view(), name="bulk-job-resume"),
]
