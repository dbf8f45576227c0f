"""Bad input at the edge: bounded dates, JSON depth, NUL bytes, and JSON for every /api/ error.

The sweep over every endpoint is tests/test_bad_input_sweep.py; these pin the rules it relies on.
"""

import json
import logging
from datetime import UTC, date, datetime

import pytest
from django.core.exceptions import SuspiciousOperation
from django.test import override_settings
from django.urls import path
from rest_framework import exceptions
from rest_framework.test import APIClient
from rest_framework.views import APIView

from analytics.api.fields import (
    NOT_ISO_DATE,
    OUT_OF_RANGE,
    TIMEZONE_REQUIRED,
    parse_aware_datetime,
    parse_supported_date,
)
from analytics.api.parsers import MAX_JSON_DEPTH, TOO_DEEP, nested_deeper_than, parse_json_bytes
from tests.factories import CostRecordFactory, utc

# --- the bounded parsers (no database) -------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "0001-01-01T00:00:00+01:00",  # astimezone(UTC) overflows
        "9999-12-31T23:59:59-01:00",
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T00:30:00+01:00",  # 1999-12-31T23:30Z
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ],
)
def test_datetime_outside_the_supported_range_is_refused(raw):
    with pytest.raises(ValueError, match=r"^must be between 2000-01-01 and 2099-12-31 \(UTC\)$"):
        parse_aware_datetime(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2000-01-01T00:00:00Z", utc(2000, 1, 1)),
        ("2099-12-31T23:59:59.999999Z", datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2100-01-01T00:30:00+01:00", utc(2099, 12, 31, 23, 30)),
    ],
)
def test_datetime_at_the_edges_of_the_range_is_accepted(raw, expected):
    assert parse_aware_datetime(raw) == expected


def test_date_alone_is_midnight_utc_only_where_allowed():
    assert parse_aware_datetime("2026-11-01", allow_date=True) == utc(2026, 11, 1)
    with pytest.raises(ValueError, match=TIMEZONE_REQUIRED):
        parse_aware_datetime("2026-11-01")
    with pytest.raises(ValueError, match=r"^must be between"):
        parse_aware_datetime("0001-01-01", allow_date=True)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1999-12-31", OUT_OF_RANGE),
        ("2100-01-01", OUT_OF_RANGE),
        ("0001-01-01", OUT_OF_RANGE),
        ("2026-02-30", NOT_ISO_DATE),
        ("20261101", NOT_ISO_DATE),
        ("2026-11-01T00:00:00Z", NOT_ISO_DATE),
    ],
)
def test_bad_dates_are_refused_with_their_reason(raw, reason):
    with pytest.raises(ValueError) as error:
        parse_supported_date(raw)
    assert str(error.value) == reason


def test_dates_at_the_edges_of_the_range_are_accepted():
    assert parse_supported_date("2000-01-01") == date(2000, 1, 1)
    assert parse_supported_date("2099-12-31") == date(2099, 12, 31)


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def test_json_nested_up_to_the_limit_parses():
    assert not nested_deeper_than(json.loads(_nested(MAX_JSON_DEPTH)), MAX_JSON_DEPTH)
    parse_json_bytes(_nested(MAX_JSON_DEPTH))


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 100_000])
def test_json_nested_past_the_limit_is_a_parse_error(depth):
    with pytest.raises(exceptions.ParseError, match=TOO_DEEP):
        parse_json_bytes(_nested(depth))


def test_depth_counts_objects_and_lists_alike():
    data = {"a": [{"b": [1]}]}
    assert nested_deeper_than(data, 3)
    assert not nested_deeper_than(data, 4)


# --- through the API -------------------------------------------------------------------------


def _field_errors(response) -> dict[str, str]:
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


@pytest.mark.django_db
def test_far_created_at_is_a_400_naming_the_record(api_client):
    # when
    response = api_client.post(
        "/api/v1/cost-records/",
        {"records": [{"model": "m", "cost_cents": 1, "created_at": "0001-01-01T00:00:00+01:00"}]},
        format="json",
    )

    # then
    assert response.status_code == 400
    assert _field_errors(response) == {"records[0].created_at": OUT_OF_RANGE}


@pytest.mark.django_db
def test_date_only_window_is_utc_midnight(api_client, tenant):
    # given
    CostRecordFactory(tenant=tenant, created_at=utc(2026, 10, 31, 23, 59))
    inside = CostRecordFactory(tenant=tenant, created_at=utc(2026, 11, 1))
    CostRecordFactory(tenant=tenant, created_at=utc(2026, 11, 2))

    # when
    response = api_client.get("/api/v1/cost-records/?from=2026-11-01&to=2026-11-02")

    # then
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [inside.pk]


@pytest.mark.django_db
def test_statistics_take_days(api_client):
    response = api_client.get("/api/v1/analytics/cost/?from=2026-11-01&to=2026-11-03")

    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/anomalies/detect/", {"as_of": "0001-01-01"}, "as_of"),
        ("/api/v1/baselines/compute/", {"window_days": 7, "as_of": "1999-12-31"}, "as_of"),
        (
            "/api/v1/snapshots/compute/",
            {"snapshot_type": "daily", "period_start": "0001-01-01"},
            "period_start",
        ),
        (
            "/api/v1/planned-activities/",
            {"starts_on": "9999-12-31", "ends_on": "9999-12-31", "expected_factor": 2},
            "starts_on",
        ),
    ],
)
def test_far_dates_in_bodies_are_a_400_naming_the_field(api_client, url, body, field):
    response = api_client.post(url, body, format="json")

    assert response.status_code == 400
    assert _field_errors(response)[field] == OUT_OF_RANGE


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/anomalies/?from=9999-12-31T23:59:59-01:00",
        "/api/v1/incidents/?to=0001-01-01",
        "/api/v1/costsim/calibration/?from=0001-01-01T00:00:00%2B01:00",
        "/api/v1/costsim/provenance/?to=9999-12-31",
        "/api/v1/analytics/usage/?from=0001-01-01T00:00:00%2B01:00&to=2026-01-01",
    ],
)
def test_far_filters_are_a_400_naming_the_parameter(api_client, url):
    response = api_client.get(url)

    assert response.status_code == 400
    name = url.split("?")[1].split("=")[0]
    assert _field_errors(response)[name] == OUT_OF_RANGE


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/cost-records/", "/api/v1/budgets/"])
def test_deep_json_is_a_parse_error(api_client, url):
    response = api_client.generic("POST", url, "[" * 100_000, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


@pytest.mark.django_db
def test_infinite_simulation_param_is_a_400_naming_it(api_client):
    body = '{"plan": [{"skill": "search", "params": {"timeout": 5, "depth": {"x": 1e400}}}]}'

    response = api_client.generic(
        "POST", "/api/v1/costsim/simulate/", body, content_type="application/json"
    )

    assert response.status_code == 400
    assert _field_errors(response) == {"plan[0].params.depth.x": "must be a finite number"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/runs/a%00b/",
        "/api/v1/costsim/datasets/a%00b/",
        "/api/v1/predictions/subject/worker/a%00b/",
    ],
)
def test_nul_in_the_path_is_a_json_404(api_client, url):
    response = api_client.get(url)

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "Not found.", "field_errors": []}


@pytest.mark.django_db
def test_nul_in_a_query_parameter_is_a_400_naming_it(api_client):
    response = api_client.get("/api/v1/runs/?worker_id=a%00b")

    assert response.status_code == 400
    assert _field_errors(response) == {"worker_id": "must not contain NUL characters"}


@pytest.mark.django_db
def test_too_many_query_parameters_is_a_json_400(api_client):
    query = "&".join(f"p{index}=1" for index in range(1_100))

    response = api_client.get(f"/api/v1/runs/?{query}")

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


# --- the safety net --------------------------------------------------------------------------


def _raising_view(request):
    raise RuntimeError("boom")


def _suspicious_view(request):
    raise SuspiciousOperation("odd")


class _SuspiciousApiView(APIView):
    authentication_classes = []
    permission_classes = []

    def get(self, request):
        raise SuspiciousOperation("odd")


class _RaisingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.endswith("/middleware-boom/"):
            raise RuntimeError("middleware boom")
        return self.get_response(request)


# A URLconf with the project's routes and error handlers, plus views that fail on purpose.
from config import urls as project_urls  # noqa: E402

urlpatterns = [
    path("api/boom/", _raising_view),
    path("api/suspicious/", _suspicious_view),
    path("api/drf-suspicious/", _SuspiciousApiView.as_view()),
    path("boom/", _raising_view),
    *project_urls.urlpatterns,
]
handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500


@pytest.fixture
def raw_client(db):
    return APIClient(raise_request_exception=False)


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_exception_in_a_non_drf_api_view_is_a_logged_json_500(raw_client, caplog):
    # when
    with caplog.at_level(logging.ERROR):
        response = raw_client.get("/api/boom/")

    # then
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "Internal server error",
        "field_errors": [],
    }
    assert any(record.exc_info and "boom" in str(record.exc_info[1]) for record in caplog.records)


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.parametrize("url", ["/api/suspicious/", "/api/drf-suspicious/"])
def test_suspicious_request_under_api_is_a_json_400(raw_client, url):
    response = raw_client.get(url)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


@pytest.mark.django_db
def test_non_json_error_under_api_becomes_the_standard_body(raw_client):
    # /api/health/ is a plain Django view answering only GET and HEAD
    response = raw_client.post("/api/health/")

    assert response.status_code == 405
    assert response.json() == {
        "error": "method_not_allowed",
        "message": "Method Not Allowed",
        "field_errors": [],
    }
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_exception_in_a_middleware_is_a_json_500_under_api(raw_client, settings):
    # given
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}._RaisingMiddleware"]

    # when
    response = raw_client.get("/api/v1/middleware-boom/")

    # then
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "internal_error"


@pytest.mark.django_db
def test_unknown_api_url_is_a_json_404(raw_client):
    response = raw_client.get("/api/v1/no-such-thing/")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_errors_outside_api_keep_django_html_pages(raw_client):
    not_found = raw_client.get("/no-such-page/")
    server_error = raw_client.get("/boom/")

    assert not_found.status_code == 404
    assert not_found["Content-Type"].startswith("text/html")
    assert server_error.status_code == 500
    assert server_error["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_admin_still_answers_html(raw_client, staff_user):
    raw_client.force_login(staff_user)

    response = raw_client.get("/admin/analytics/no-such-model/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
