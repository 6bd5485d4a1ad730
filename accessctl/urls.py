"""URL routes: the admin, the REST API, the LiteLLM-compatible routes, the gateway's routes, health probes.

Each app owns its route modules; this file only mounts them.
"""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accessctl.health import healthz, metrics, readyz
from accessctl.schema import BearerKeyScheme  # noqa: F401 - registers the OpenAPI security schemes
from orgs.sso import SSOCallbackView, SSOLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("sso/login/", SSOLoginView.as_view(), name="oidc_authentication_init"),
    path("sso/callback/", SSOCallbackView.as_view(), name="oidc_authentication_callback"),
    path("scim/v2/", include("orgs.scim_urls", namespace="scim")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="prometheus-metrics"),
    # The gateway's hot path resolves before the management routes: every pattern tried costs time.
    path("", include("keys.api.gateway_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include("orgs.api.urls")),
    path("api/v1/", include("keys.api.urls")),
    path("api/v1/", include("accessgroups.api.urls")),
    path("", include("orgs.api.litellm_urls")),
    path("", include("keys.api.litellm_urls")),
    path("", include("accessgroups.api.litellm_urls")),
]

handler400 = "accessctl.views.bad_request"
handler403 = "accessctl.views.permission_denied"
handler404 = "accessctl.views.not_found"
handler500 = "accessctl.views.server_error"
