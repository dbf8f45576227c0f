from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from analytics.models import CostSnapshot, SnapshotAggregate
from analytics.selectors.statistics import StatisticsWindow, statistics_coverage
from analytics.services.snapshots import snapshot_compute
from tests.factories import CostRecordFactory, RunRecordFactory, utc

pytestmark = pytest.mark.django_db

USAGE = "/api/v1/analytics/usage/"
COST = "/api/v1/analytics/cost/"
DAY = utc(2026, 2, 10)
NOW = utc(2026, 2, 20, 13, 30)


def record(tenant, at, cents, **fields):
    return CostRecordFactory(tenant=tenant, created_at=at, cost_cents=Decimal(str(cents)), **fields)


def field_errors(response) -> list[tuple[str, str]]:
    return [(item["field"], item["reason"]) for item in response.json()["field_errors"]]


def window(start, end, resolution=None) -> dict:
    params = {"from": start.isoformat().replace("+00:00", "Z"), "to": end.isoformat()}
    if resolution:
        params["resolution"] = resolution
    return params


# --- usage ------------------------------------------------------------------------------------


@time_machine.travel(utc(2026, 2, 10, 13, 30), tick=False)
def test_usage_example_from_spec(api_client, tenant):
    # given
    record(tenant, utc(2026, 2, 10, 10, 15), "2.5", input_tokens=100, output_tokens=50)
    record(tenant, utc(2026, 2, 10, 10, 45), "1.5", input_tokens=200, output_tokens=100)
    record(tenant, utc(2026, 2, 10, 11, 5), 4, input_tokens=0, output_tokens=0)
    for hour, minute in ((10, 20), (10, 40), (12, 10)):
        RunRecordFactory(tenant=tenant, created_at=utc(2026, 2, 10, hour, minute))
    # when
    response = api_client.get(
        USAGE, window(utc(2026, 2, 10, 10), utc(2026, 2, 10, 13), resolution="hour")
    )
    # then
    assert response.status_code == 200
    assert response.json() == {
        "window": {
            "from": "2026-02-10T10:00:00Z",
            "to": "2026-02-10T13:00:00Z",
            "resolution": "hour",
        },
        "totals": {"requests": 3, "compute_units": 3, "tokens": 450},
        "series": [
            {"ts": "2026-02-10T10:00:00Z", "requests": 2, "compute_units": 2, "tokens": 450},
            {"ts": "2026-02-10T11:00:00Z", "requests": 1, "compute_units": 0, "tokens": 0},
            {"ts": "2026-02-10T12:00:00Z", "requests": 0, "compute_units": 1, "tokens": 0},
        ],
        # the newest record is the run of 12:10, 80 minutes before now
        "signals": {"sources": ["cost_records", "run_records"], "freshness_sec": 4800},
    }


@time_machine.travel(NOW, tick=False)
def test_usage_counts_only_the_half_open_window_and_the_callers_tenant(
    api_client, tenant, other_tenant
):
    # given
    record(tenant, DAY, 1)
    record(tenant, DAY + timedelta(days=1), 1)  # == to: outside
    record(tenant, DAY - timedelta(microseconds=1), 1)
    record(other_tenant, DAY + timedelta(hours=1), 1)
    RunRecordFactory(tenant=other_tenant, created_at=DAY + timedelta(hours=1))
    # when
    body = api_client.get(USAGE, window(DAY, DAY + timedelta(days=1))).json()
    # then
    assert body["series"] == [
        {"ts": "2026-02-10", "requests": 1, "compute_units": 0, "tokens": 150}
    ]
    assert body["signals"]["sources"] == ["cost_records"]
    assert body["window"]["resolution"] == "day"


@time_machine.travel(NOW, tick=False)
def test_empty_window_has_no_series_source_none_and_zero_freshness(api_client):
    body = api_client.get(USAGE, window(DAY, DAY + timedelta(days=1))).json()
    assert body["series"] == []
    assert body["totals"] == {"requests": 0, "compute_units": 0, "tokens": 0}
    assert body["signals"] == {"sources": ["none"], "freshness_sec": 0}
    cost = api_client.get(COST, window(DAY, DAY + timedelta(days=1))).json()
    assert cost["signals"] == {"sources": ["none"], "freshness_sec": 0}
    assert cost["totals"]["spend_cents"] == 0
    assert cost["by_model"] == cost["by_feature"] == []


@time_machine.travel(NOW, tick=False)
def test_only_run_records_give_run_records_source(api_client, tenant):
    RunRecordFactory(tenant=tenant, created_at=DAY + timedelta(hours=3))
    body = api_client.get(USAGE, window(DAY, DAY + timedelta(days=2))).json()
    assert body["signals"]["sources"] == ["run_records"]
    assert body["signals"]["freshness_sec"] == (NOW - DAY - timedelta(hours=3)).total_seconds()


# --- cost -------------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_cost_example_from_spec_with_breakdowns(api_client, tenant):
    # given model A 6.0 cents, model B 2.0 cents
    record(tenant, DAY + timedelta(hours=1), "2.5", model="A", feature_tag="chat")
    record(tenant, DAY + timedelta(hours=2), "3.5", model="A", feature_tag=None)
    record(tenant, DAY + timedelta(days=1, hours=1), 2, model="B", feature_tag="search")
    # when
    response = api_client.get(COST, window(DAY, DAY + timedelta(days=3)))
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["totals"] == {
        "spend_cents": 8,
        "spend_usd": 0.08,
        "requests": 3,
        "input_tokens": 300,
        "output_tokens": 150,
        "unpriced_records": 0,
    }
    assert body["series"] == [
        {
            "ts": "2026-02-10",
            "spend_cents": 6,
            "requests": 2,
            "input_tokens": 200,
            "output_tokens": 100,
            "unpriced_records": 0,
        },
        {
            "ts": "2026-02-11",
            "spend_cents": 2,
            "requests": 1,
            "input_tokens": 100,
            "output_tokens": 50,
            "unpriced_records": 0,
        },
    ]
    assert body["by_model"] == [
        {
            "model": "A",
            "spend_cents": 6,
            "requests": 2,
            "input_tokens": 200,
            "output_tokens": 100,
            "unpriced_records": 0,
            "pct_of_total": 75.0,
        },
        {
            "model": "B",
            "spend_cents": 2,
            "requests": 1,
            "input_tokens": 100,
            "output_tokens": 50,
            "unpriced_records": 0,
            "pct_of_total": 25.0,
        },
    ]
    assert body["by_feature"] == [
        {"feature_tag": "untagged", "spend_cents": 3.5, "requests": 1, "pct_of_total": 43.75},
        {"feature_tag": "chat", "spend_cents": 2.5, "requests": 1, "pct_of_total": 31.25},
        {"feature_tag": "search", "spend_cents": 2, "requests": 1, "pct_of_total": 25.0},
    ]
    assert body["signals"] == {
        "sources": ["cost_records"],
        # since the newest record (Feb 11 01:00), not the start of its day
        "freshness_sec": 9 * 86400 + 12.5 * 3600,
    }


@time_machine.travel(NOW, tick=False)
def test_breakdown_ties_are_ordered_by_key(api_client, tenant):
    for model in ("zeta", "alpha", "mid"):
        record(tenant, DAY, 1, model=model, feature_tag=model)
    body = api_client.get(COST, window(DAY, DAY + timedelta(days=1))).json()
    assert [item["model"] for item in body["by_model"]] == ["alpha", "mid", "zeta"]
    assert [item["pct_of_total"] for item in body["by_model"]] == [33.33, 33.33, 33.33]


@time_machine.travel(NOW, tick=False)
def test_zero_spend_gives_zero_percentages(api_client, tenant):
    record(tenant, DAY, 0, model="free")
    body = api_client.get(COST, window(DAY, DAY + timedelta(days=1))).json()
    assert body["by_model"][0]["pct_of_total"] == 0.0
    assert body["series"][0]["spend_cents"] == 0


# --- snapshot reads ---------------------------------------------------------------------------


def _varied_traffic(tenant, start, days):
    """Records every 5 hours over `days` days with several models, features, users, retries."""
    models, features, users = ("m-a", "m-b", "m-c"), ("chat", "search", None), ("u1", None, "u2")
    for index in range(days * 24 // 5):
        at = start + timedelta(hours=5 * index, minutes=index % 60)
        record(
            tenant,
            at,
            Decimal(index % 7) + Decimal("0.125") * (index % 3),
            model=models[index % 3],
            feature_tag=features[index % 4 % 3],
            user_id=users[index % 5 % 3],
            input_tokens=10 * index,
            output_tokens=index,
        )
        if index % 2:
            RunRecordFactory(tenant=tenant, created_at=at + timedelta(minutes=3))


@pytest.mark.parametrize(
    ("resolution", "snapshot_type", "periods", "whole"),
    [
        # days 10 and 16 stick out of the window; 11-15 are whole buckets
        ("day", "daily", [DAY + timedelta(days=k) for k in range(0, 7)], 5),
        # 07:00 on day 10 sticks out; the other 30 hours are whole buckets
        ("hour", "hourly", [DAY + timedelta(hours=h) for h in [7, *range(24, 54)]], 30),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_snapshot_reads_give_the_same_answer_as_raw_reads(
    api_client, tenant, resolution, snapshot_type, periods, whole
):
    # given traffic, and complete snapshots for part of the window
    _varied_traffic(tenant, DAY, days=7)
    for period_start in periods:
        snapshot_compute(tenant=tenant, snapshot_type=snapshot_type, period_start=period_start)
    # a window whose first and last buckets are partial
    params = window(
        DAY + timedelta(hours=7, minutes=30), DAY + timedelta(days=6, hours=5), resolution
    )
    stats_window = StatisticsWindow(
        start=DAY + timedelta(hours=7, minutes=30),
        end=DAY + timedelta(days=6, hours=5),
        resolution=resolution,
    )
    coverage = statistics_coverage(tenant=tenant, window=stats_window)
    assert len(coverage.snapshot_ids) == whole
    # when
    hybrid = [api_client.get(url, params).json() for url in (USAGE, COST)]
    csv_hybrid = [
        b"".join(api_client.get(url + "export.csv", params).streaming_content)
        for url in (USAGE, COST)
    ]
    CostSnapshot.objects.all().delete()
    raw = [api_client.get(url, params).json() for url in (USAGE, COST)]
    csv_raw = [
        b"".join(api_client.get(url + "export.csv", params).streaming_content)
        for url in (USAGE, COST)
    ]
    # then
    assert hybrid == raw
    assert csv_hybrid == csv_raw
    assert len(raw[1]["series"]) > 3
    assert any(item["feature_tag"] == "untagged" for item in raw[1]["by_feature"])


@time_machine.travel(NOW, tick=False)
def test_whole_buckets_with_complete_snapshots_are_read_from_the_snapshot(api_client, tenant):
    # given a daily snapshot whose tenant aggregate is then altered, so reads can be told apart
    record(tenant, DAY + timedelta(hours=1), 5, model="m")
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=DAY)
    SnapshotAggregate.objects.filter(snapshot=snapshot, entity_type="tenant").update(
        total_cost_cents=Decimal("7"), request_count=3
    )
    # when
    whole = api_client.get(COST, window(DAY, DAY + timedelta(days=1))).json()
    partial = api_client.get(COST, window(DAY, DAY + timedelta(hours=23))).json()
    # then the whole day comes from the snapshot, a partial day from the records
    assert (whole["totals"]["spend_cents"], whole["totals"]["requests"]) == (7, 3)
    assert (partial["totals"]["spend_cents"], partial["totals"]["requests"]) == (5, 1)
    # untagged = tenant aggregate minus feature aggregates
    assert whole["by_feature"] == [
        {"feature_tag": "untagged", "spend_cents": 7, "requests": 3, "pct_of_total": 100.0}
    ]


@pytest.mark.parametrize("change", ["stale", "failed", "other_resolution"])
@time_machine.travel(NOW, tick=False)
def test_stale_failed_or_other_resolution_snapshots_are_not_read(api_client, tenant, change):
    # given
    record(tenant, DAY + timedelta(hours=1), 5)
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=DAY)
    SnapshotAggregate.objects.filter(snapshot=snapshot).update(total_cost_cents=Decimal("7"))
    if change == "stale":
        CostSnapshot.objects.filter(pk=snapshot.pk).update(is_stale=True)
    elif change == "failed":
        CostSnapshot.objects.filter(pk=snapshot.pk).update(status="failed")
    # when
    params = window(DAY, DAY + timedelta(days=1), "hour" if change == "other_resolution" else "day")
    body = api_client.get(COST, params).json()
    # then
    assert body["totals"]["spend_cents"] == 5


# --- CSV --------------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_cost_csv_streams_crlf_rows_with_plain_decimal_money(api_client, tenant):
    # given
    record(tenant, DAY + timedelta(hours=1), "2.500000", input_tokens=3, output_tokens=4)
    record(tenant, DAY + timedelta(days=1), 3)
    record(tenant, DAY + timedelta(days=2), 0)
    # when
    response = api_client.get(COST + "export.csv", window(DAY, DAY + timedelta(days=3)))
    # then
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="cost_20260210_20260213.csv"'
    assert b"".join(response.streaming_content).decode() == (
        "timestamp,spend_cents,requests,input_tokens,output_tokens\r\n"
        "2026-02-10,2.5,1,3,4\r\n"
        "2026-02-11,3,1,100,50\r\n"
        "2026-02-12,0,1,100,50\r\n"
    )


@time_machine.travel(NOW, tick=False)
def test_usage_csv_matches_the_json_series(api_client, tenant):
    # given
    record(tenant, utc(2026, 2, 10, 10, 15), 1, input_tokens=100, output_tokens=50)
    RunRecordFactory(tenant=tenant, created_at=utc(2026, 2, 10, 12, 10))
    params = window(utc(2026, 2, 10, 10), utc(2026, 2, 11, 9, 15), "hour")
    # when
    response = api_client.get(USAGE + "export.csv", params)
    # then
    assert response["Content-Disposition"] == 'attachment; filename="usage_20260210_20260211.csv"'
    assert b"".join(response.streaming_content).decode() == (
        "timestamp,requests,compute_units,tokens\r\n"
        "2026-02-10T10:00:00Z,1,0,150\r\n"
        "2026-02-10T12:00:00Z,0,1,0\r\n"
    )


def test_csv_errors_are_json_whatever_the_accept_header(api_client):
    response = api_client.get(COST + "export.csv", {"from": "x"}, HTTP_ACCEPT="text/csv")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert field_errors(response) == [
        ("from", "must be an ISO-8601 datetime"),
        ("to", "is required"),
    ]


def test_csv_needs_a_tenant_key(client):
    response = client.get(USAGE + "export.csv", window(DAY, DAY + timedelta(days=1)))
    assert response.status_code == 401


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [USAGE, COST, USAGE + "export.csv", COST + "export.csv"])
def test_unknown_parameter_is_rejected(api_client, url):
    # an unknown query parameter is a 400 naming it, never ignored
    response = api_client.get(url + "?from=2026-02-10T00:00:00Z&to=2026-02-11T00:00:00Z&foo=bar")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    assert field_errors(response) == [("foo", "unknown query parameter")]


@pytest.mark.parametrize(
    ("to", "status"),
    [("2026-05-12T00:00:00Z", 400), ("2026-05-11T00:00:00Z", 200)],
)
def test_ninety_days_is_the_longest_window(api_client, to, status):
    response = api_client.get(USAGE, {"from": "2026-02-10T00:00:00Z", "to": to})
    assert response.status_code == status
    if status == 400:
        assert field_errors(response) == [("to", "time window cannot exceed 90 days")]


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("", [("from", "is required"), ("to", "is required")]),
        (
            "from=yesterday&to=2026-02-11T00:00:00",
            [("from", "must be an ISO-8601 datetime"), ("to", "timezone is required")],
        ),
        (
            "from=2026-02-10T00:00:00&to=2026-02-11T00:00:00Z",
            [("from", "timezone is required")],
        ),
        (
            "from=2026-02-11T00:00:00Z&to=2026-02-11T00:00:00Z",
            [("from", "must be before 'to'")],
        ),
        (
            "from=2026-02-10T00:00:00Z&to=2026-02-11T00:00:00Z&resolution=week",
            [("resolution", "must be one of: hour, day")],
        ),
        (
            "from=2026-02-10T00:00:00Z&from=2026-02-09T00:00:00Z&to=2026-02-11T00:00:00Z",
            [("from", "must be provided once")],
        ),
        (
            "from=2026-02-10T00:00:00Z&to=2026-02-11T00:00:00Z&resolution=day&resolution=hour",
            [("resolution", "must be provided once")],
        ),
        (
            "to=2026-02-11T00:00:00Z&resolution=minute&page_size=3&x=1&x=2",
            [
                ("from", "is required"),
                ("resolution", "must be one of: hour, day"),
                ("page_size", "unknown query parameter"),
                ("x", "unknown query parameter"),
            ],
        ),
        ("from=&to=2026-02-11T00:00:00Z", [("from", "is required")]),
    ],
)
def test_query_problems_are_reported_together(api_client, query, errors):
    response = api_client.get(f"{COST}?{query}")
    assert response.status_code == 400
    assert field_errors(response) == errors


def test_offsets_are_converted_to_utc_and_an_unencoded_plus_is_accepted(api_client):
    # "+" left unencoded in a query string arrives as a space
    response = api_client.get(
        f"{USAGE}?from=2026-02-10T02:00:00 02:00&to=2026-02-10T12:00:00%2B01:00&resolution=hour"
    )
    assert response.status_code == 200
    assert response.json()["window"] == {
        "from": "2026-02-10T00:00:00Z",
        "to": "2026-02-10T11:00:00Z",
        "resolution": "hour",
    }


def test_statistics_need_a_tenant_key(staff_session_client):
    response = staff_session_client.get(USAGE, window(DAY, DAY + timedelta(days=1)))
    assert response.status_code == 403
    assert response.json()["error"] == "tenant_required"


@time_machine.travel(NOW, tick=False)
def test_freshness_counts_from_the_newest_record_of_the_window(api_client, tenant):
    # given: a daily snapshot answers the first day; a record after the window is ignored
    record(tenant, DAY + timedelta(hours=5), 1)
    snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=DAY)
    record(tenant, DAY + timedelta(days=1, hours=10, minutes=59, seconds=30), 1)
    RunRecordFactory(tenant=tenant, created_at=DAY + timedelta(days=1, hours=11))
    record(tenant, DAY + timedelta(days=3), 1)
    params = window(DAY, DAY + timedelta(days=2))
    # when
    cost = api_client.get(COST, params).json()
    usage = api_client.get(USAGE, params).json()
    # then: seconds since that record, not since the start of its day
    newest_cost = DAY + timedelta(days=1, hours=10, minutes=59, seconds=30)
    assert cost["signals"]["freshness_sec"] == (NOW - newest_cost).total_seconds()
    newest_any = DAY + timedelta(days=1, hours=11)
    assert usage["signals"]["freshness_sec"] == (NOW - newest_any).total_seconds()
