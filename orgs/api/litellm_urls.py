"""LiteLLM-compatible routes of this app, mounted at the root."""
urlpatterns: list = []
