"""Usage and cost statistics endpoints and their CSV exports.

Unlike the other endpoints these reject unknown and repeated query parameters, and report
every problem of a query at once.
"""

import re
from datetime import timedelta

from django.http import StreamingHttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.fields import NOT_ISO_DATETIME, parse_aware_datetime
from analytics.api.permissions import request_tenant
from analytics.api.statistics_serializers import (
    CostStatisticsSerializer,
    UsageStatisticsSerializer,
)
from analytics.db import replica_reads, replica_stream
from analytics.selectors.statistics import DAY, RESOLUTIONS, StatisticsWindow
from analytics.services.statistics import (
    cost_csv_lines,
    cost_statistics,
    csv_filename,
    usage_csv_lines,
    usage_statistics,
)

MAX_WINDOW = timedelta(days=90)
IS_REQUIRED = "is required"
PROVIDE_ONCE = "must be provided once"
UNKNOWN_PARAMETER = "unknown query parameter"
BAD_RESOLUTION = "must be one of: hour, day"
FROM_NOT_BEFORE_TO = "must be before 'to'"
WINDOW_TOO_LONG = "time window cannot exceed 90 days"
ALLOWED_PARAMETERS = ("from", "to", "resolution")

# An unencoded "+" in a query string arrives as a space; "...T00:00:00 00:00" is read back
# as the "+00:00" offset the client meant.
_SPACE_FOR_PLUS = re.compile(r" (\d{2}(?::?\d{2})?)$")


def register(router) -> list:
    return [
        path("analytics/usage/", UsageStatisticsView.as_view(), name="statistics-usage"),
        path(
            "analytics/usage/export.csv",
            UsageExportView.as_view(),
            name="statistics-usage-export",
        ),
        path("analytics/cost/", CostStatisticsView.as_view(), name="statistics-cost"),
        path("analytics/cost/export.csv", CostExportView.as_view(), name="statistics-cost-export"),
    ]


def _parse_instant(raw: str):
    try:
        return parse_aware_datetime(raw, allow_date=True)
    except ValueError as exc:
        if str(exc) != NOT_ISO_DATETIME or not _SPACE_FOR_PLUS.search(raw):
            raise
        try:
            return parse_aware_datetime(_SPACE_FOR_PLUS.sub(r"+\1", raw), allow_date=True)
        except ValueError:
            raise exc from None


# complexity: checks every parameter and collects all the problems into one 400, so a client sees
# them at once
def parse_statistics_query(query_params) -> StatisticsWindow:
    """Validate `from`, `to`, `resolution`; raise a 400 listing every problem found."""
    errors: dict[str, list[str]] = {}
    instants = {}
    for name in ("from", "to"):
        values = query_params.getlist(name)
        if len(values) > 1:
            errors[name] = [PROVIDE_ONCE]
        elif not values or not values[0].strip():
            errors[name] = [IS_REQUIRED]
        else:
            try:
                instants[name] = _parse_instant(values[0])
            except ValueError as exc:
                errors[name] = [str(exc)]

    resolutions = query_params.getlist("resolution")
    resolution = DAY
    if len(resolutions) > 1:
        errors["resolution"] = [PROVIDE_ONCE]
    elif resolutions:
        resolution = resolutions[0]
        if resolution not in RESOLUTIONS:
            errors["resolution"] = [BAD_RESOLUTION]

    if len(instants) == 2:
        if instants["from"] >= instants["to"]:
            errors["from"] = [FROM_NOT_BEFORE_TO]
        elif instants["to"] - instants["from"] > MAX_WINDOW:
            errors["to"] = [WINDOW_TOO_LONG]

    for name in query_params:
        if name not in ALLOWED_PARAMETERS:
            errors[name] = [UNKNOWN_PARAMETER]

    if errors:
        raise exceptions.ValidationError(errors)
    return StatisticsWindow(start=instants["from"], end=instants["to"], resolution=resolution)


class JSONErrorsNegotiation(BaseContentNegotiation):
    """CSV views answer errors as JSON whatever the client's Accept header says."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


STATISTICS_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATETIME, required=True),
    OpenApiParameter(
        "to", OpenApiTypes.DATETIME, required=True, description="at most 90 days after from"
    ),
    OpenApiParameter("resolution", str, enum=list(RESOLUTIONS), default=DAY),
]


class UsageStatisticsView(APIView):
    """Requests, compute units and tokens per hour or day."""

    @extend_schema(parameters=STATISTICS_PARAMETERS, responses=UsageStatisticsSerializer)
    def get(self, request):
        window = parse_statistics_query(request.query_params)
        with replica_reads():
            return Response(usage_statistics(tenant=request_tenant(request), window=window))


class CostStatisticsView(APIView):
    """Spend per hour or day, with per-model and per-feature breakdowns."""

    @extend_schema(parameters=STATISTICS_PARAMETERS, responses=CostStatisticsSerializer)
    def get(self, request):
        window = parse_statistics_query(request.query_params)
        with replica_reads():
            return Response(cost_statistics(tenant=request_tenant(request), window=window))


class _ExportView(APIView):
    content_negotiation_class = JSONErrorsNegotiation
    kind = ""

    def lines(self, *, tenant, window):
        raise NotImplementedError

    def get(self, request):
        window = parse_statistics_query(request.query_params)
        response = StreamingHttpResponse(
            replica_stream(self.lines(tenant=request_tenant(request), window=window)),
            content_type="text/csv",
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{csv_filename(self.kind, window)}"'
        )
        return response


class UsageExportView(_ExportView):
    """The usage series as CSV: timestamp,requests,compute_units,tokens."""

    kind = "usage"

    @extend_schema(
        parameters=STATISTICS_PARAMETERS, responses={(200, "text/csv"): OpenApiTypes.STR}
    )
    def get(self, request):
        return super().get(request)

    def lines(self, *, tenant, window):
        return usage_csv_lines(tenant=tenant, window=window)


class CostExportView(_ExportView):
    """The cost series as CSV: timestamp,spend_cents,requests,input_tokens,output_tokens."""

    kind = "cost"

    @extend_schema(
        parameters=STATISTICS_PARAMETERS, responses={(200, "text/csv"): OpenApiTypes.STR}
    )
    def get(self, request):
        return super().get(request)

    def lines(self, *, tenant, window):
        return cost_csv_lines(tenant=tenant, window=window)
