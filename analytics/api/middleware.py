import logging
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, SuspiciousOperation
from django.http import Http404, JsonResponse

from analytics import metrics
from analytics.api.authentication import KEYWORD
from analytics.api.errors import error_body, is_api_request, json_error_response

logger = logging.getLogger(__name__)

NUL_IN_PARAMETER = "must not contain NUL characters"
# Error codes of the statuses a non-DRF response may carry (DRF views use the same words).
STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
}
# Headers that carry meaning for an error a JSON body replaces.
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")

# The header prefix of a key (analytics.api.authentication).
LANE_KEYWORD = f"{KEYWORD} "
# Batch endpoints whose rejections are counted in analytics_ingest_batches_rejected_total.
BATCH_KINDS = {"/api/v1/cost-records/": "cost_records", "/api/v1/runs/": "runs"}


class ApiBodyLimitMiddleware:
    """Answer 413 for API bodies above API_MAX_BODY_BYTES before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.API_MAX_BODY_BYTES:
                if request.path in BATCH_KINDS:
                    metrics.ingest_batches_rejected_total.labels(
                        kind=BATCH_KINDS[request.path], reason="too_large"
                    ).inc()
                return json_error_response(
                    "payload_too_large",
                    f"Request body exceeds {settings.API_MAX_BODY_BYTES} bytes.",
                    413,
                )
        return self.get_response(request)


# The handler after ApiKeyLaneEndMiddleware, handed to the ApiKeyLaneMiddleware built next
# (Django builds a chain from the last middleware to the first, in one thread).
_lane_exit = threading.local()


class ApiKeyLaneMiddleware:
    """Send API requests made with a key and no cookie past the browser middleware.

    The middleware between this one and ApiKeyLaneEndMiddleware (static files, sessions,
    CSRF, the user, messages) serve people in a browser. A request under /api/ with an
    `Authorization: Api-Key` header and no cookie has nothing for them to do: the key
    authenticates it before a session could (every API view lists ApiKeyAuthentication
    first, and a refused key ends authentication), it has no session or CSRF cookie to read
    or refresh, and API views add no messages. Such a request goes straight to the
    middleware after ApiKeyLaneEndMiddleware; on the simulate endpoint the skipped
    middleware were about a fifth of the application's CPU. Any request with a cookie takes
    the whole chain, so a browser session is served as before.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.lane_response = getattr(_lane_exit, "handler", None)
        if self.lane_response is None:
            raise ImproperlyConfigured(
                "ApiKeyLaneEndMiddleware must follow ApiKeyLaneMiddleware in MIDDLEWARE"
            )
        _lane_exit.handler = None

    def __call__(self, request):
        meta = request.META
        if (
            not meta.get("HTTP_COOKIE")
            and meta.get("HTTP_AUTHORIZATION", "").startswith(LANE_KEYWORD)
            and request.path.startswith("/api/")
        ):
            return self.lane_response(request)
        return self.get_response(request)


class ApiKeyLaneEndMiddleware:
    """Where the requests ApiKeyLaneMiddleware lets through rejoin the chain."""

    def __init__(self, get_response):
        self.get_response = get_response
        _lane_exit.handler = get_response

    def __call__(self, request):
        return self.get_response(request)


class ApiErrorMiddleware:
    """JSON answers under /api/ for what no view or serializer gets to see.

    A NUL byte in the path is a 404 and one in a query parameter a 400 naming it, before
    any lookup or filter sends it to PostgreSQL (text cannot hold NUL; psycopg refuses it).
    An exception a view lets escape (DRF views have their own handler; this is the net for
    the others) is logged with its traceback and answered with the standard 500 body. An
    error response that is not JSON (a plain Django view's 405, the schema view's YAML) is
    replaced by the standard body for its status.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    # complexity: the NUL checks of the path and the query run before the view, the JSON rewrite of
    # a non-JSON error after it
    def __call__(self, request):
        if is_api_request(request):
            if "\x00" in request.path:
                return json_error_response("not_found", "Not found.", 404)
            bad = sorted(
                name.replace("\x00", "\\x00")
                for name, values in request.GET.lists()
                if "\x00" in name or any("\x00" in value for value in values)
            )
            if bad:
                fields = [{"field": name, "reason": NUL_IN_PARAMETER} for name in bad]
                message = "; ".join(f"{name}: {NUL_IN_PARAMETER}" for name in bad)
                return JsonResponse(error_body("validation_error", message, fields), status=400)
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api_request(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return _json_error_for(response)
        return response

    def process_exception(self, request, exception):
        if not is_api_request(request):
            return None
        if isinstance(exception, Http404 | PermissionDenied | SuspiciousOperation):
            # Django answers these through the error handlers, which speak JSON here.
            return None
        logger.error("Unhandled API error: %s %s", request.method, request.path, exc_info=exception)
        return json_error_response("internal_error", "Internal server error", 500)


def _json_error_for(response):
    status = response.status_code
    code = STATUS_CODES.get(status, "internal_error" if status >= 500 else "error")
    replacement = json_error_response(code, response.reason_phrase, status)
    for header in KEPT_HEADERS:
        if header in response:
            replacement[header] = response[header]
    return replacement
