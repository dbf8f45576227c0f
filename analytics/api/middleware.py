from django.conf import settings

from analytics import metrics
from analytics.api.errors import json_error_response

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
