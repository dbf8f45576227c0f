"""Records at the ingest maxima, many in one bucket, go through every job and read path.

Two records of 999 999 999 999 cents used to overflow the numeric(18,6) aggregate of their
hour, and every snapshot of that period failed from then on. Ingest now bounds each record,
and the aggregate columns hold any sum the record columns can produce.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection

from analytics.api.batches import MAX_RECORD_CENTS, MAX_RECORD_TOKENS
from analytics.models import CostRecord, CostSnapshot, SnapshotAggregate, SnapshotStatus
from tests.analytics.factories import CostSnapshotFactory
from tests.factories import BudgetFactory, FeatureTagFactory, utc

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 2, 10, 30)
TODAY, YESTERDAY = utc(2026, 3, 2), utc(2026, 3, 1)
HOUR = utc(2026, 3, 2, 9)
# More records at the maximum than the old numeric(18,6) aggregate could sum: 1000 through
# the API, the rest written in one statement (the same rows, much faster than 100 batches).
API_RECORDS, BULK_RECORDS = 1000, 100_000
RECORDS = API_RECORDS + BULK_RECORDS


def max_record(**fields) -> dict:
    return {
        "model": "gpt-4o",
        "feature_tag": "chat",
        "user_id": "u-1",
        "cost_cents": MAX_RECORD_CENTS,
        "input_tokens": MAX_RECORD_TOKENS,
        "output_tokens": MAX_RECORD_TOKENS,
        **fields,
    }


def bulk_insert(tenant, *, start, count: int) -> None:
    """`count` records at the maxima spread over the hour from `start`, as ingest stores them."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO analytics_costrecord
                (tenant_id, user_id, feature_tag, model, input_tokens, output_tokens,
                 cost_cents, is_retry, created_at, ingested_at)
            SELECT %(tenant)s, 'u-1', 'chat', 'gpt-4o', %(tokens)s, %(tokens)s, %(cents)s,
                   false, %(start)s + (n %% 3600) * interval '1 second', %(start)s
            FROM generate_series(1, %(count)s) AS n
            """,
            {
                "tenant": tenant.pk,
                "tokens": MAX_RECORD_TOKENS,
                "cents": MAX_RECORD_CENTS,
                "start": start,
                "count": count,
            },
        )


def aggregate(snapshot_id: int, entity_type: str) -> SnapshotAggregate:
    return SnapshotAggregate.objects.get(snapshot_id=snapshot_id, entity_type=entity_type)


@pytest.fixture
def full_hour(api_client, tenant):
    """Yesterday 09:xx: one batch at the maxima; today 09:xx: RECORDS at the maxima."""
    FeatureTagFactory(tenant=tenant, tag="chat")
    with time_machine.travel(NOW, tick=False):
        for day in (YESTERDAY, TODAY):
            created_at = (day + timedelta(hours=9, minutes=10)).isoformat()
            response = api_client.post(
                "/api/v1/cost-records/",
                {"records": [max_record(created_at=created_at)] * API_RECORDS},
                format="json",
            )
            assert response.status_code == 201
            assert response.json()["accepted"] == API_RECORDS
    bulk_insert(tenant, start=HOUR, count=BULK_RECORDS)
    return tenant


@time_machine.travel(NOW, tick=False)
def test_a_bucket_full_of_maximal_records_snapshots_detects_and_reports(api_client, full_hour):
    # given
    tenant = full_hour
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=1000, monthly_limit_cents=5000)
    spend = RECORDS * Decimal(MAX_RECORD_CENTS)
    tokens = RECORDS * MAX_RECORD_TOKENS
    assert spend > Decimal("999999999999.999999")  # the old aggregate's largest value

    # when: yesterday's snapshots, the baselines they feed, then today's snapshots
    computed = [
        api_client.post(
            "/api/v1/snapshots/compute/",
            {"snapshot_type": snapshot_type, "period_start": start.isoformat()},
            format="json",
        )
        for snapshot_type, start in (
            ("hourly", YESTERDAY + timedelta(hours=9)),
            ("daily", YESTERDAY),
        )
    ]
    baselines = [
        api_client.post(
            "/api/v1/baselines/compute/",
            {"window_days": window, "as_of": "2026-03-02"},
            format="json",
        )
        for window in (7, 30)
    ]
    computed += [
        api_client.post(
            "/api/v1/snapshots/compute/",
            {"snapshot_type": snapshot_type, "period_start": start.isoformat()},
            format="json",
        )
        for snapshot_type, start in (("hourly", HOUR), ("daily", TODAY))
    ]
    detected = api_client.post("/api/v1/anomalies/detect/", {}, format="json")
    dry_run = api_client.post("/api/v1/anomalies/detect/", {"dry_run": True}, format="json")

    # then: every snapshot completed with exact sums
    assert [response.status_code for response in computed] == [200] * 4
    assert [response.json()["status"] for response in computed] == ["complete"] * 4
    assert [response.status_code for response in baselines] == [200, 200]
    assert (detected.status_code, dry_run.status_code) == (200, 200)
    hourly, daily = computed[2].json(), computed[3].json()
    for body in (hourly, daily):
        assert body["records_processed"] == RECORDS
        for entity_type in ("tenant", "user", "feature", "model"):
            row = aggregate(body["id"], entity_type)
            assert row.total_cost_cents == spend
            assert row.request_count == RECORDS
            assert row.total_input_tokens == row.total_output_tokens == tokens
        tenant_row = next(a for a in body["aggregates"] if a["entity_type"] == "tenant")
        assert tenant_row["total_cost_cents"] == int(spend)
        assert tenant_row["total_input_tokens"] == tokens
    daily_row = aggregate(daily["id"], "tenant")
    assert daily_row.deviation_from_7d_pct == pytest.approx(
        (float(spend) - API_RECORDS * MAX_RECORD_CENTS) / (API_RECORDS * MAX_RECORD_CENTS) * 100
    )

    # and the statistics read the same sums from snapshots and from raw records
    window = {"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"}
    cost = api_client.get("/api/v1/analytics/cost/", window)
    assert cost.status_code == 200
    assert cost.json()["totals"]["spend_cents"] == int(spend) + API_RECORDS * MAX_RECORD_CENTS
    assert cost.json()["totals"]["input_tokens"] == tokens + API_RECORDS * MAX_RECORD_TOKENS
    assert cost.json()["by_model"][0]["output_tokens"] == tokens + API_RECORDS * MAX_RECORD_TOKENS
    hour = {"from": "2026-03-02T09:00:00Z", "to": "2026-03-02T10:00:00Z", "resolution": "hour"}
    snapped = api_client.get("/api/v1/analytics/cost/", hour).json()
    CostSnapshot.objects.filter(pk=hourly["id"]).update(is_stale=True)  # read raw records now
    raw = api_client.get("/api/v1/analytics/cost/", hour).json()
    assert raw["series"] == snapped["series"]
    assert raw["series"][0]["spend_cents"] == int(spend)
    assert raw["series"][0]["input_tokens"] == tokens
    usage = api_client.get("/api/v1/analytics/usage/", {**window, "resolution": "hour"})
    assert usage.status_code == 200
    assert usage.json()["totals"]["tokens"] == 2 * (tokens + API_RECORDS * MAX_RECORD_TOKENS)
    for export in ("/api/v1/analytics/usage/export.csv", "/api/v1/analytics/cost/export.csv"):
        response = api_client.get(export, window)
        assert response.status_code == 200
        assert b"".join(response.streaming_content).count(b"\r\n") == 3  # header, two days

    # and the budget reports the day's spend
    status = api_client.get(f"/api/v1/budgets/{budget.pk}/status/")
    assert status.status_code == 200
    assert status.json()["daily"]["spend_cents"] == int(spend)


def test_aggregate_columns_hold_any_sum_the_record_columns_can_produce(tenant):
    # given: the largest bucket, 2**63 - 1 records (their id is a bigint), each at its
    # column's own maximum, far beyond what ingest accepts
    records = 2**63 - 1
    cost_field = CostRecord._meta.get_field("cost_cents")
    max_cost = Decimal(10) ** (cost_field.max_digits - cost_field.decimal_places) - Decimal(
        "0.000001"
    )
    max_tokens = 2**63 - 1
    snapshot = CostSnapshotFactory(tenant=tenant, status=SnapshotStatus.COMPLETE)
    # when
    SnapshotAggregate.objects.create(
        tenant=tenant,
        snapshot=snapshot,
        entity_type="tenant",
        total_cost_cents=records * max_cost,
        request_count=records,
        total_input_tokens=records * max_tokens,
        total_output_tokens=records * max_tokens,
        avg_cost_per_request_cents=float(max_cost),
        avg_tokens_per_request=float(2 * max_tokens),
    )
    # then: PostgreSQL stored every digit
    stored = SnapshotAggregate.objects.get(snapshot=snapshot)
    assert stored.total_cost_cents == records * max_cost
    assert stored.total_input_tokens == records * max_tokens
    assert CostSnapshot.objects.filter(pk=snapshot.pk).exists()
