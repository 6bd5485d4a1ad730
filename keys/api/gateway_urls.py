"""The gateway's hot-path routes: authz check, /v1/models, usage."""
urlpatterns: list = []
