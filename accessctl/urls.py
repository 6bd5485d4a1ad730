"""URL routes: the admin, the REST API, the LiteLLM-compatible routes and health probes."""
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
