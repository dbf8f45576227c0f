"""The project's PrometheusAfterMiddleware records exactly what django-prometheus' own does."""

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client import REGISTRY

LIBRARY = "django_prometheus.middleware.PrometheusAfterMiddleware"
OURS = "analytics.api.middleware.PrometheusAfterMiddleware"
# Latency histograms place each request by its duration, which differs between two runs of
# the same request; their counts must still agree.
TIMED = ("latency",)


def _samples() -> dict[tuple, float]:
    found = {}
    for metric in REGISTRY.collect():
        if not metric.name.startswith("django_http_"):
            continue
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            timed = any(word in sample.name for word in TIMED)
            if timed and not sample.name.endswith("_count"):
                continue
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _delta(before: dict, after: dict) -> dict:
    delta = {key: value - before.get(key, 0.0) for key, value in after.items()}
    return {key: value for key, value in delta.items() if value}


def _requests(api_key, call: str) -> None:
    _, raw_key = api_key
    keyed = Client(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    # a keyed API read, a keyed write with a body (a new call each run, so both runs answer
    # alike), a browser-style XHR, a 404, a bad body, an unkeyed probe
    assert keyed.get("/api/v1/budgets/").status_code == 200
    assert keyed.post(
        "/api/v1/budgets/reserve/",
        {"amount_cents": 5, "ttl_seconds": 60, "request_id": f"metrics-{call}"},
        content_type="application/json",
    ).status_code in (200, 201)
    assert keyed.get("/api/v1/budgets/", HTTP_X_REQUESTED_WITH="XMLHttpRequest").status_code == 200
    assert keyed.get("/api/v1/no-such-thing/").status_code == 404
    assert (
        keyed.post(
            "/api/v1/budgets/reserve/", b"{not json", content_type="application/json"
        ).status_code
        == 400
    )
    assert Client().get("/api/health/").status_code == 200


@pytest.mark.django_db
def test_the_same_series_and_values_as_the_library(api_key):
    # given: the same requests through the library's middleware, then through ours
    recorded = {}
    for name, middleware in (("library", LIBRARY), ("ours", OURS)):
        chain = [middleware if entry == OURS else entry for entry in settings.MIDDLEWARE]
        with override_settings(MIDDLEWARE=chain):
            before = _samples()
            _requests(api_key, call=name[0])
            recorded[name] = _delta(before, _samples())
    # then: every series the library moves, ours moves by as much, and nothing else
    assert recorded["library"]
    assert any("ajax" in name for name, _ in recorded["ours"])
    assert any("body_total_bytes_sum" in name for name, _ in recorded["ours"])
    assert recorded["ours"] == recorded["library"]


def test_the_project_uses_its_own():
    assert OURS in settings.MIDDLEWARE and LIBRARY not in settings.MIDDLEWARE
