"""REST API routes (/api/v1/) of this app."""
urlpatterns: list = []

# Bulk assignment jobs (accessgroups/api/bulk.py).
from django.urls import path as _path  # noqa: E402

from accessgroups.api.bulk import AccessGroupBulkAssignView, BulkJobDetailView  # noqa: E402

urlpatterns += [
    _path("access-groups/<str:access_group_id>/bulk-assign/", AccessGroupBulkAssignView.as_view(),
          name="access-group-bulk-assign"),
    _path("bulk-jobs/<str:job_id>/", BulkJobDetailView.as_view(), name="bulk-job-detail"),
]
