"""The gateway's hot-path routes: authz check, /v1/models, usage."""
from django.urls import path, re_path

from .gateway import AuthzCheckView, ModelListAliasView, ModelListView
from .litellm_models import ModelGroupInfoView, ModelInfoView, UnsupportedRouteView
from .usage_reports import UsageView

urlpatterns = [
    path("api/v1/authz/check", AuthzCheckView.as_view(), name="authz-check"),
    path("api/v1/usage", UsageView.as_view(), name="usage-report"),
    path("v1/models", ModelListView.as_view(), name="model-list"),
    path("models", ModelListAliasView.as_view(), name="model-list-alias"),
    # LiteLLM's model routes over the catalog, narrowed to what the key may reach.
    path("model/info", ModelInfoView.as_view(), name="litellm-model-info"),
    path("v1/model/info", ModelInfoView.as_view(), name="litellm-v1-model-info"),
    path("model_group/info", ModelGroupInfoView.as_view(), name="litellm-model-group-info"),
    # LiteLLM's model and credential writes: out of scope, answered with a 501 naming the route.
    path("model/new", UnsupportedRouteView.as_view(), name="litellm-model-new"),
    path("model/update", UnsupportedRouteView.as_view(), name="litellm-model-update"),
    path("model/delete", UnsupportedRouteView.as_view(), name="litellm-model-delete"),
    path("model/<str:model_id>/update", UnsupportedRouteView.as_view(), name="litellm-model-patch"),
    re_path(r"^(?:v1/)?credentials(?:/.*)?$", UnsupportedRouteView.as_view(), name="litellm-credentials"),
]
