"""V1/V2 divergence of one tenant's recent provenance: a read, two queries at most.

Counts, the two percentiles and the cost lists are aggregated by PostgreSQL in one query;
the distribution distances come from the same pure function the canary uses, so both
reports measure KL and JS identically. Like the canary, the report gives KL and JS only on
at least COSTSIM_MIN_DRIFT_SAMPLES samples; below that its status is `insufficient_data`
and both are null, while the counts, rates and percentiles of the rows found still show.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from analytics.models import Tenant
from costsim.models import Provenance
from costsim.services.distances import distribution_distances

DEFAULT_DAYS = 7
MAX_DAYS = 90
MAX_SAMPLES = 1000
DETAILED_SAMPLES = 100
OUTLIER_DRIFT_SCORE = 0.5
FAIL_DRIFT_SCORE = 0.2

STATUS_OK = "ok"
STATUS_INSUFFICIENT_DATA = "insufficient_data"

# Our percentile is element floor(f*n) of the ascending list (0-based), which is
# neither percentile_disc (element ceil(f*n) - 1) nor percentile_cont. SQL arrays are
# 1-based, hence the + 1; 0.5 and 0.9 are numeric literals, so floor() is exact.
_AGGREGATE_SQL = f"""
WITH samples AS (
    SELECT v1_cost, v2_cost, abs(v2_cost - v1_cost) AS abs_delta, drift_score, verdict
    FROM {Provenance._meta.db_table}
    WHERE tenant_id = %s
      AND created_at >= %s AND created_at < %s
      AND v1_cost IS NOT NULL AND v2_cost IS NOT NULL
    ORDER BY created_at DESC, id DESC
    LIMIT {MAX_SAMPLES}
)
SELECT
    count(*),
    (array_agg(abs_delta ORDER BY abs_delta))[floor(0.5 * count(*))::int + 1],
    (array_agg(abs_delta ORDER BY abs_delta))[floor(0.9 * count(*))::int + 1],
    count(*) FILTER (WHERE drift_score > {OUTLIER_DRIFT_SCORE}),
    count(*) FILTER (WHERE drift_score > {FAIL_DRIFT_SCORE}),
    count(*) FILTER (WHERE verdict = 'match'),
    array_agg(v1_cost),
    array_agg(v2_cost)
FROM samples
"""


def divergence_report(
    *, tenant: Tenant, days: int = DEFAULT_DAYS, now: datetime | None = None
) -> dict[str, Any]:
    """Return the divergence report of `tenant` over `[now - days, now)`.

    Samples are the newest 1000 rows of the window carrying both a V1 and a V2 cost. With
    no sample every metric is 0 (the distances null) and `detailed_samples` is empty. With
    fewer than COSTSIM_MIN_DRIFT_SAMPLES the status is `insufficient_data` and KL/JS are
    null: a distance between histograms of a few costs is noise, not drift.
    """
    end = now or timezone.now()
    start = end - timedelta(days=days)
    with connection.cursor() as cursor:
        cursor.execute(_AGGREGATE_SQL, [tenant.pk, start, end])
        n, p50, p90, outliers, fails, matches, v1_costs, v2_costs = cursor.fetchone()

    min_samples = settings.COSTSIM_MIN_DRIFT_SAMPLES
    enough = n >= min_samples
    report: dict[str, Any] = {
        "start_date": start,
        "end_date": end,
        "version": settings.COSTSIM_MODEL_VERSION,
        "status": STATUS_OK if enough else STATUS_INSUFFICIENT_DATA,
        "sample_count": n,
        "min_samples": min_samples,
    }
    if n == 0:
        return {
            **report,
            "delta_p50": 0.0,
            "delta_p90": 0.0,
            "kl_divergence": None,
            "js_distance": None,
            "outlier_count": 0,
            "fail_ratio": 0.0,
            "matching_rate": 0.0,
            "detailed_samples": [],
        }

    kl = js = None
    if enough:
        kl, js = (round(d, 4) for d in distribution_distances(v1_costs, v2_costs))
    return {
        **report,
        "delta_p50": round(float(p50), 2),
        "delta_p90": round(float(p90), 2),
        "kl_divergence": kl,
        "js_distance": js,
        "outlier_count": outliers,
        "fail_ratio": round(fails / n, 4),
        "matching_rate": round(matches / n, 4),
        "detailed_samples": _detailed_samples(tenant=tenant, start=start, end=end),
    }


def _detailed_samples(*, tenant: Tenant, start: datetime, end: datetime) -> list[dict[str, Any]]:
    rows = (
        Provenance.objects.filter(
            tenant=tenant,
            created_at__gte=start,
            created_at__lt=end,
            v1_cost__isnull=False,
            v2_cost__isnull=False,
        )
        .order_by("-created_at", "-id")
        .values_list(
            "created_at", "input_hash", "v1_cost", "v2_cost", "cost_delta", "drift_score", "verdict"
        )[:DETAILED_SAMPLES]
    )
    return [
        {
            "timestamp": created_at,
            "input_hash": input_hash,
            "v1_cost_cents": v1_cost,
            "v2_cost_cents": v2_cost,
            "cost_delta_cents": cost_delta if cost_delta is not None else v2_cost - v1_cost,
            "drift_score": drift_score,
            "verdict": verdict,
        }
        for created_at, input_hash, v1_cost, v2_cost, cost_delta, drift_score, verdict in rows
    ]
