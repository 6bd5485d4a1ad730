"""The gateway's hot-path routes: authz check, /v1/models, usage."""
from django.urls import path

from .gateway import AuthzCheckView, ModelListAliasView, ModelListView, UsageView

urlpatterns = [
    path("api/v1/authz/check", AuthzCheckView.as_view(), name="authz-check"),
    path("api/v1/usage", UsageView.as_view(), name="usage-report"),
    path("v1/models", ModelListView.as_view(), name="model-list"),
    path("models", ModelListAliasView.as_view(), name="model-list-alias"),
]
