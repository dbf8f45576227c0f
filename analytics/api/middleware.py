from django.conf import settings

from analytics.api.errors import json_error_response


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
                return json_error_response(
                    "payload_too_large",
                    f"Request body exceeds {settings.API_MAX_BODY_BYTES} bytes.",
                    413,
                )
        return self.get_response(request)
