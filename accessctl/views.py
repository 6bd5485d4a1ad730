"""JSON error pages: the API never answers with an HTML page."""
from django.http import JsonResponse

from accessctl.errors import json_error


def not_found(request, exception=None) -> JsonResponse:
    return json_error("Not found.", "not_found_error", 404)


def server_error(request) -> JsonResponse:
    return json_error("Internal error.", "internal_server_error", 500)
