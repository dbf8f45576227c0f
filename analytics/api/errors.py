"""One error body for every non-2xx API response.

DRF views answer through `exception_handler`, which also maps the errors services raise
(`analytics.errors.DomainError`: 409 conflict, 404 not found, 400 invalid). Everything else
under /api/ (a URL that resolves to nothing, a middleware that raises, a non-DRF view)
answers through the Django error handlers below, which config/urls.py installs and which
keep Django's HTML pages for every other path (the admin).
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

from analytics.errors import DomainError

logger = logging.getLogger(__name__)

CODES = {
    exceptions.ParseError: "parse_error",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.Throttled: "throttled",
}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"

    def __init__(self, message: str | None = None, field_errors: list[dict] | None = None):
        super().__init__(message)
        self.field_errors = field_errors or []


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "payload_too_large"


def error_body(code: str, message: str, field_errors: list[dict] | None = None) -> dict:
    return {"error": code, "message": message, "field_errors": field_errors or []}


# complexity: one recursive walk over every shape DRF nests errors in (keys, child indexes, lists of
# reasons, non_field_errors)
def flatten_field_errors(detail, path: str = "") -> list[dict]:
    """Turn DRF's nested error detail into [{"field": "records[3].cost_cents", "reason"}]."""
    if isinstance(detail, dict):
        items = []
        for key, value in detail.items():
            if isinstance(key, int):
                # A ListField or DictField child's index: `monitored_dimensions[0]`, the
                # same shape as a nested serializer's.
                items += flatten_field_errors(value, f"{path}[{key}]")
                continue
            key = str(key)
            if key == "non_field_errors" and path == "":
                child = "non_field_errors"
            elif key == "non_field_errors":
                child = path
            else:
                child = f"{path}.{key}" if path else key
            items += flatten_field_errors(value, child)
        return items
    if isinstance(detail, list):
        if detail and all(not isinstance(item, dict | list) for item in detail):
            return [{"field": path or "non_field_errors", "reason": str(item)} for item in detail]
        items = []
        for index, value in enumerate(detail):
            if value in ({}, [], None, ""):
                continue
            items += flatten_field_errors(value, f"{path}[{index}]")
        return items
    return [{"field": path or "non_field_errors", "reason": str(detail)}]


# complexity: one branch per family of exception, each mapped to its status, code and headers in one
# place
def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        # What a service refused (analytics/errors.py): its status, code, message and field
        # errors, in the standard body.
        return Response(error_body(exc.code, exc.message, exc.field_errors), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, SuspiciousOperation):
        # e.g. more query parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS, read by the view.
        # Logged as Django logs the ones it catches itself.
        logging.getLogger(f"django.security.{type(exc).__name__}").error("%s", exc)
        return Response(
            error_body("bad_request", "Bad request."), status=status.HTTP_400_BAD_REQUEST
        )

    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_field_errors(exc.detail)
        message = "; ".join(f"{item['field']}: {item['reason']}" for item in fields[:5])
        return Response(
            error_body("validation_error", message or "Invalid input.", fields),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.APIException):
        if isinstance(exc, exceptions.PermissionDenied):
            is_tenant = exc.get_codes() == "tenant_required"
            code = "tenant_required" if is_tenant else "permission_denied"
        else:
            code = CODES.get(type(exc)) or next(
                (value for cls, value in CODES.items() if isinstance(exc, cls)),
                exc.default_code,
            )
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        body = error_body(code, _message(exc.detail), getattr(exc, "field_errors", None))
        return Response(body, status=exc.status_code, headers=headers)

    logger.exception("Unhandled API error", exc_info=exc)
    return Response(
        error_body("internal_error", "Internal server error"),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _message(detail) -> str:
    if isinstance(detail, list | tuple):
        return "; ".join(str(item) for item in detail)
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {value}" for key, value in detail.items())
    return str(detail)


def json_error_response(code: str, message: str, http_status: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=http_status)


# --- Django error handlers (config/urls.py) ------------------------------------------------


def is_api_request(request) -> bool:
    return request.path.startswith("/api/")


def bad_request(request, exception):
    if is_api_request(request):
        return json_error_response("bad_request", "Bad request.", 400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if is_api_request(request):
        return json_error_response("permission_denied", "Permission denied.", 403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if is_api_request(request):
        return json_error_response("not_found", "Not found.", 404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """Django has already logged the traceback (logger `django.request`)."""
    if is_api_request(request):
        return json_error_response("internal_error", "Internal server error", 500)
    return defaults.server_error(request)
