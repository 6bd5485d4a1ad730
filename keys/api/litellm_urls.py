"""LiteLLM-compatible routes of this app, mounted at the root."""
from django.urls import path

from . import litellm

urlpatterns = [
    path("key/generate", litellm.KeyGenerateView.as_view(), name="litellm-key-generate"),
    path("key/update", litellm.KeyUpdateView.as_view(), name="litellm-key-update"),
    path("key/delete", litellm.KeyDeleteView.as_view(), name="litellm-key-delete"),
    path("key/regenerate", litellm.KeyRegenerateView.as_view(), name="litellm-key-regenerate"),
    path("key/<str:key>/regenerate", litellm.KeyRegeneratePathView.as_view(), name="litellm-key-regenerate-path"),
    path("key/info", litellm.KeyInfoView.as_view(), name="litellm-key-info"),
    path("key/list", litellm.KeyListView.as_view(), name="litellm-key-list"),
    path("key/block", litellm.KeyBlockView.as_view(), name="litellm-key-block"),
    path("key/unblock", litellm.KeyUnblockView.as_view(), name="litellm-key-unblock"),
    path("key/health", litellm.KeyHealthView.as_view(), name="litellm-key-health"),
]
