"""REST API routes (/api/v1/) of this app: virtual keys, by their token."""
from django.urls import path

from . import views

urlpatterns: list = [
    path("keys/", views.KeyListView.as_view(), name="key-list"),
    path("keys/<str:token>/", views.KeyDetailView.as_view(), name="key-detail"),
    path("keys/<str:token>/block/", views.KeyBlockView.as_view(), name="key-block"),
    path("keys/<str:token>/unblock/", views.KeyUnblockView.as_view(), name="key-unblock"),
    path("keys/<str:token>/regenerate/", views.KeyRegenerateView.as_view(), name="key-regenerate"),
]
