"""Domain errors and the exception handler that renders every API error in the SPEC §7 shape."""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError, IntegrityError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A refusal from a service or the policy, carrying the SPEC §7 fields."""

    status = 400
    type = "bad_request_error"

    def __init__(self, message: str, *, param: str | None = None, type: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if type is not None:
            self.type = type
        if status is not None:
            self.status = status

    def as_body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.status)


class InvalidInput(ServiceError):
    status = 400
    type = "bad_request_error"


class NotFound(ServiceError):
    status = 404
    type = "not_found_error"


class Conflict(ServiceError):
    status = 409
    type = "conflict_error"


class Forbidden(ServiceError):
    status = 403
    type = "auth_error"


class Unauthorized(ServiceError):
    status = 401
    type = "auth_error"


BODY_TOO_LARGE = "The request body is too large (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB by default)."


def error_body(message: str, type: str, param: str | None, status: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": str(status)}}


def error_response(message: str, type: str, param: str | None, status: int) -> Response:
    return Response(error_body(message, type, param, status), status=status)


def _first_field_error(detail: Any, prefix: str = "") -> tuple[str | None, str]:
    """The first (field path, message) of a DRF validation detail, so the 400 names the field."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            # str(): a list field's errors are keyed by index, and index 0 must still name the item.
            name = str(key) if key != "non_field_errors" else None
            path = f"{prefix}.{name}" if prefix and name else (name or prefix or None)
            field, message = _first_field_error(value, path or "")
            return field or path, message
    if isinstance(detail, list) and detail:
        for index, item in enumerate(detail):
            if item:
                nested_prefix = prefix if not isinstance(item, dict) else f"{prefix}[{index}]"
                return _first_field_error(item, nested_prefix)
    return (prefix or None), str(detail)


_TYPE_BY_STATUS = {
    400: "bad_request_error",
    401: "auth_error",
    403: "auth_error",
    404: "not_found_error",
    405: "method_not_allowed",
    406: "bad_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "bad_request_error",
    429: "rate_limit_error",
}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Render every exception as `{"error": {...}}`; nothing becomes a 500 HTML page."""
    if isinstance(exc, ServiceError):
        return Response(exc.as_body(), status=exc.status)
    if isinstance(exc, Http404):
        return error_response(str(exc) or "Not found.", "not_found_error", None, 404)
    if isinstance(exc, RequestDataTooBig):
        return error_response(BODY_TOO_LARGE, "request_too_large", "body", 413)
    if isinstance(exc, SuspiciousOperation):
        # Too many form fields, too large a body, a malformed multipart body: the client's fault.
        return error_response(f"Malformed request: {exc}", "bad_request_error", "body", 400)
    if isinstance(exc, DjangoPermissionDenied):
        return error_response(str(exc) or "Permission denied.", "auth_error", None, 403)
    if isinstance(exc, DjangoValidationError):
        param = None
        if hasattr(exc, "error_dict"):
            param = next(iter(exc.error_dict), None)
        return error_response("; ".join(exc.messages), "bad_request_error", param, 400)
    if isinstance(exc, drf.ValidationError):
        param, message = _first_field_error(exc.detail)
        text = f"{param}: {message}" if param else message
        return error_response(text, "bad_request_error", param, 400)
    if isinstance(exc, drf.ParseError):
        return error_response(f"Malformed request body: {exc.detail}", "bad_request_error", "body", 400)
    if isinstance(exc, drf.APIException):
        response = drf_exception_handler(exc, context)
        status = response.status_code if response is not None else exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(str(detail), _TYPE_BY_STATUS.get(status, "bad_request_error"), None, status)
    if isinstance(exc, DataError):
        # A value the database cannot hold (out of range, bad encoding): the request's fault, not an outage.
        logger.warning("data error turned into 400: %s", exc)
        return error_response("A value is out of range or malformed.", "bad_request_error", None, 400)
    if isinstance(exc, IntegrityError):
        logger.warning("integrity error turned into 409: %s", exc)
        return error_response("The change conflicts with an existing row.", "conflict_error", None, 409)
    if isinstance(exc, DatabaseError):
        logger.exception("database unavailable")
        return error_response("The database is unavailable.", "no_db_connection", None, 503)
    logger.exception("unhandled error in API view")
    return error_response("Internal error.", "internal_server_error", None, 500)


def json_error(message: str, type: str, status: int, param: str | None = None) -> JsonResponse:
    """The SPEC §7 error body for plain Django views and middleware."""
    return JsonResponse(error_body(message, type, param, status), status=status)
