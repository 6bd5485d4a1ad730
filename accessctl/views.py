"""JSON error pages: the API never answers with an HTML page (the admin keeps Django's own)."""
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.views import defaults

from accessctl.errors import BODY_TOO_LARGE, json_error


def _is_admin(request) -> bool:
    return request.path_info.startswith("/admin/")


def bad_request(request, exception=None) -> HttpResponse:
    """Django's answer to a SuspiciousOperation raised outside DRF (a body too large, too many fields)."""
    if isinstance(exception, RequestDataTooBig):
        if _is_admin(request):
            return defaults.bad_request(request, exception)
        return json_error(BODY_TOO_LARGE, "request_too_large", 413, "body")
    if _is_admin(request):
        return defaults.bad_request(request, exception)
    return json_error("Malformed request.", "bad_request_error", 400, "body")


def permission_denied(request, exception=None) -> HttpResponse:
    if _is_admin(request):
        return defaults.permission_denied(request, exception)
    return json_error("Permission denied.", "auth_error", 403)


def not_found(request, exception=None) -> JsonResponse:
    return json_error("Not found.", "not_found_error", 404)


def server_error(request) -> JsonResponse:
    return json_error("Internal error.", "internal_server_error", 500)
