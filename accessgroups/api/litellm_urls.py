"""LiteLLM-compatible routes of this app, mounted at the root (each also under `/v1/unified_access_group`)."""
from django.urls import path

from . import litellm

urlpatterns = []
for prefix in ("v1/access_group", "v1/unified_access_group"):
    name = prefix.replace("v1/", "litellm-").replace("_", "-")
    urlpatterns += [
        path(prefix, litellm.AccessGroupListView.as_view(), name=f"{name}-list"),
        path(f"{prefix}/<str:access_group_id>", litellm.AccessGroupDetailView.as_view(), name=f"{name}-detail"),
    ]
