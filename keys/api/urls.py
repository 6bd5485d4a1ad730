"""REST API routes (/api/v1/) of this app."""
urlpatterns: list = []
