"""Reads behind the usage and cost statistics.

A window is answered in two parts. Buckets that lie wholly inside the window and have a
`complete`, non-stale snapshot of the same resolution are read from that snapshot's
aggregates; the rest of the window (partial edge buckets, buckets without a usable snapshot)
is read from cost records, range by range so that the covered stretches are never scanned.
Both parts produce the same sums, so the answer does not depend on which snapshots exist.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from analytics.db import read_connection
from analytics.models import CostSnapshot, SnapshotStatus, SnapshotType, Tenant

HOUR, DAY = "hour", "day"
RESOLUTIONS = (HOUR, DAY)
SNAPSHOT_TYPE_OF = {HOUR: SnapshotType.HOURLY, DAY: SnapshotType.DAILY}


@dataclass(frozen=True)
class StatisticsWindow:
    start: datetime
    end: datetime
    resolution: str = DAY


@dataclass(frozen=True)
class Coverage:
    """Snapshots that answer whole buckets, and the [lo, hi) ranges left to cost records."""

    snapshot_ids: list[int] = field(default_factory=list)
    raw_lo: list[datetime] = field(default_factory=list)
    raw_hi: list[datetime] = field(default_factory=list)


def statistics_coverage(*, tenant: Tenant, window: StatisticsWindow) -> Coverage:
    snapshots = (
        CostSnapshot.objects.filter(
            tenant=tenant,
            snapshot_type=SNAPSHOT_TYPE_OF[window.resolution],
            status=SnapshotStatus.COMPLETE,
            is_stale=False,
            period_start__gte=window.start,
            period_end__lte=window.end,
        )
        .order_by("period_start")
        .values_list("id", "period_start", "period_end")
    )
    coverage = Coverage()
    cursor_at = window.start
    for snapshot_id, period_start, period_end in snapshots:
        coverage.snapshot_ids.append(snapshot_id)
        if period_start > cursor_at:
            coverage.raw_lo.append(cursor_at)
            coverage.raw_hi.append(period_start)
        cursor_at = period_end
    if cursor_at < window.end:
        coverage.raw_lo.append(cursor_at)
        coverage.raw_hi.append(window.end)
    return coverage


# Cost records of the uncovered ranges. The ranges are spelled out as literal conditions
# (filled in per query, see _raw_ranges) rather than joined from an array, so the planner
# estimates each one from the statistics: a day's worth becomes an index range scan on
# (tenant, created_at), a whole uncovered window a sequential scan.
_RAW_RECORDS = """
    FROM analytics_costrecord r
    WHERE r.tenant_id = %(tenant)s AND ({raw_ranges})
"""

# Token sums stay numeric (a sum of bigints can pass a bigint, as a snapshot's can); the rows
# hold them as Decimal and the statistics service turns them into ints.
_COST_SERIES = f"""
SELECT bucket, spend, requests, input_tokens, output_tokens, unpriced FROM (
    SELECT date_trunc(%(unit)s, r.created_at, 'UTC') AS bucket,
           COALESCE(SUM(r.cost_cents), 0) AS spend,
           COUNT(*)::bigint AS requests,
           SUM(r.input_tokens) AS input_tokens,
           SUM(r.output_tokens) AS output_tokens,
           COUNT(*) FILTER (WHERE r.cost_source = 'unpriced')::bigint AS unpriced
    {_RAW_RECORDS}
    GROUP BY 1
    UNION ALL
    SELECT s.period_start, a.total_cost_cents, a.request_count, a.total_input_tokens,
           a.total_output_tokens, a.unpriced_records
    FROM analytics_costsnapshot s
    JOIN analytics_snapshotaggregate a ON a.snapshot_id = s.id AND a.entity_type = 'tenant'
    WHERE s.id = ANY(%(snapshots)s::bigint[])
) x
ORDER BY bucket
"""

# compute_units always come from run records, whatever answers the cost side of a bucket.
_USAGE_SERIES = f"""
SELECT bucket, SUM(requests)::bigint, SUM(compute_units)::bigint, SUM(tokens) FROM (
    SELECT date_trunc(%(unit)s, r.created_at, 'UTC') AS bucket,
           COUNT(*)::bigint AS requests,
           0::bigint AS compute_units,
           SUM(r.input_tokens + r.output_tokens) AS tokens
    {_RAW_RECORDS}
    GROUP BY 1
    UNION ALL
    SELECT s.period_start, a.request_count, 0, a.total_input_tokens + a.total_output_tokens
    FROM analytics_costsnapshot s
    JOIN analytics_snapshotaggregate a ON a.snapshot_id = s.id AND a.entity_type = 'tenant'
    WHERE s.id = ANY(%(snapshots)s::bigint[])
    UNION ALL
    SELECT date_trunc(%(unit)s, rr.created_at, 'UTC'), 0, COUNT(*)::bigint, 0
    FROM analytics_runrecord rr
    WHERE rr.tenant_id = %(tenant)s AND rr.created_at >= %(start)s AND rr.created_at < %(end)s
    GROUP BY 1
) x
GROUP BY bucket
ORDER BY bucket
"""

# Per model and per feature tag over the whole window; raw records are summed per (model,
# feature) pair first, so each record is hashed once. The untagged share of a snapshot
# bucket is its tenant aggregate minus its feature aggregates; it joins the raw NULL-tag
# group through GROUP BY, which treats NULL keys as equal. Groups without requests (the
# untagged row when nothing was untagged) are dropped.
_COST_BREAKDOWN = f"""
SELECT dimension, key, SUM(spend), SUM(requests)::bigint, SUM(input_tokens), SUM(output_tokens),
       SUM(unpriced)::bigint
FROM (
    SELECT CASE WHEN GROUPING(p.model) = 0 THEN 'model' ELSE 'feature' END AS dimension,
           CASE WHEN GROUPING(p.model) = 0 THEN p.model ELSE p.feature_tag END AS key,
           SUM(p.spend) AS spend,
           SUM(p.requests) AS requests,
           SUM(p.input_tokens) AS input_tokens,
           SUM(p.output_tokens) AS output_tokens,
           SUM(p.unpriced) AS unpriced
    FROM (
        SELECT r.model, r.feature_tag,
               COALESCE(SUM(r.cost_cents), 0) AS spend,
               COUNT(*) AS requests,
               SUM(r.input_tokens) AS input_tokens,
               SUM(r.output_tokens) AS output_tokens,
               COUNT(*) FILTER (WHERE r.cost_source = 'unpriced') AS unpriced
        {_RAW_RECORDS}
        GROUP BY r.model, r.feature_tag
    ) p
    GROUP BY GROUPING SETS ((p.model), (p.feature_tag))
    UNION ALL
    SELECT a.entity_type, a.entity_id, SUM(a.total_cost_cents), SUM(a.request_count),
           SUM(a.total_input_tokens), SUM(a.total_output_tokens), SUM(a.unpriced_records)
    FROM analytics_snapshotaggregate a
    WHERE a.snapshot_id = ANY(%(snapshots)s::bigint[]) AND a.entity_type IN ('model', 'feature')
    GROUP BY a.entity_type, a.entity_id
    UNION ALL
    SELECT 'feature', NULL,
           SUM(CASE WHEN a.entity_type = 'tenant' THEN a.total_cost_cents
                    ELSE -a.total_cost_cents END),
           SUM(CASE WHEN a.entity_type = 'tenant' THEN a.request_count
                    ELSE -a.request_count END),
           SUM(CASE WHEN a.entity_type = 'tenant' THEN a.total_input_tokens
                    ELSE -a.total_input_tokens END),
           SUM(CASE WHEN a.entity_type = 'tenant' THEN a.total_output_tokens
                    ELSE -a.total_output_tokens END),
           SUM(CASE WHEN a.entity_type = 'tenant' THEN a.unpriced_records
                    ELSE -a.unpriced_records END)
    FROM analytics_snapshotaggregate a
    WHERE a.snapshot_id = ANY(%(snapshots)s::bigint[]) AND a.entity_type IN ('tenant', 'feature')
) x
GROUP BY dimension, key
HAVING SUM(requests) > 0
"""


def _query(
    template: str, *, tenant: Tenant, window: StatisticsWindow, coverage: Coverage
) -> tuple[str, dict]:
    params = {
        "tenant": tenant.pk,
        "unit": window.resolution,
        "start": window.start,
        "end": window.end,
        "snapshots": coverage.snapshot_ids,
    }
    ranges = []
    for index, (lo, hi) in enumerate(zip(coverage.raw_lo, coverage.raw_hi, strict=True)):
        params[f"lo{index}"], params[f"hi{index}"] = lo, hi
        ranges.append(f"(r.created_at >= %(lo{index})s AND r.created_at < %(hi{index})s)")
    return template.format(raw_ranges=" OR ".join(ranges) or "false"), params


def _fetch_all(sql: str, params: dict) -> list[tuple]:
    with read_connection().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _stream(sql: str, params: dict, chunk_size: int = 500) -> Iterator[tuple]:
    # A server-side cursor: rows travel in chunks, so memory stays flat however long the
    # series is.
    with read_connection().chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(chunk_size):
            yield from rows


def cost_series(
    *, tenant: Tenant, window: StatisticsWindow, coverage: Coverage, stream: bool = False
) -> list[tuple] | Iterator[tuple]:
    """(bucket, spend_cents, requests, input_tokens, output_tokens) rows, oldest first."""
    sql, params = _query(_COST_SERIES, tenant=tenant, window=window, coverage=coverage)
    return _stream(sql, params) if stream else _fetch_all(sql, params)


def usage_series(
    *, tenant: Tenant, window: StatisticsWindow, coverage: Coverage, stream: bool = False
) -> list[tuple] | Iterator[tuple]:
    """(bucket, requests, compute_units, tokens) rows, oldest first."""
    sql, params = _query(_USAGE_SERIES, tenant=tenant, window=window, coverage=coverage)
    return _stream(sql, params) if stream else _fetch_all(sql, params)


def cost_breakdown(*, tenant: Tenant, window: StatisticsWindow, coverage: Coverage) -> list[tuple]:
    """(dimension, key, spend_cents, requests, input_tokens, output_tokens) rows, unordered.

    dimension is `model` or `feature`; the feature key is None for untagged records.
    """
    return _fetch_all(*_query(_COST_BREAKDOWN, tenant=tenant, window=window, coverage=coverage))


# Both maxima are read backwards from the (tenant, created_at) indexes; GREATEST skips NULL.
_NEWEST_RECORD = """
SELECT GREATEST(
    (SELECT max(created_at) FROM analytics_costrecord
     WHERE tenant_id = %(tenant)s AND created_at >= %(start)s AND created_at < %(end)s),
    CASE WHEN %(runs)s THEN
        (SELECT max(created_at) FROM analytics_runrecord
         WHERE tenant_id = %(tenant)s AND created_at >= %(start)s AND created_at < %(end)s)
    END
)
"""


def newest_record_at(
    *, tenant: Tenant, window: StatisticsWindow, include_runs: bool = False
) -> datetime | None:
    """`created_at` of the window's newest cost record (or run record, with
    `include_runs`); None when the window holds none."""
    params = {"tenant": tenant.pk, "start": window.start, "end": window.end, "runs": include_runs}
    return _fetch_all(_NEWEST_RECORD, params)[0][0]


# The cost series split by model and by feature tag, bucket by bucket: the same two sources
# and the same untagged rule as _COST_BREAKDOWN, grouped per bucket as well. Within a bucket
# the model rows and the feature rows each add up to that bucket's spend in _COST_SERIES.
_COST_BREAKDOWN_SERIES = f"""
SELECT bucket, dimension, key, SUM(spend) FROM (
    SELECT p.bucket,
           CASE WHEN GROUPING(p.model) = 0 THEN 'model' ELSE 'feature' END AS dimension,
           CASE WHEN GROUPING(p.model) = 0 THEN p.model ELSE p.feature_tag END AS key,
           SUM(p.spend) AS spend,
           SUM(p.requests) AS requests
    FROM (
        SELECT date_trunc(%(unit)s, r.created_at, 'UTC') AS bucket, r.model, r.feature_tag,
               COALESCE(SUM(r.cost_cents), 0) AS spend,
               COUNT(*) AS requests
        {_RAW_RECORDS}
        GROUP BY 1, r.model, r.feature_tag
    ) p
    GROUP BY GROUPING SETS ((p.bucket, p.model), (p.bucket, p.feature_tag))
    UNION ALL
    SELECT s.period_start, a.entity_type, a.entity_id, a.total_cost_cents, a.request_count
    FROM analytics_costsnapshot s
    JOIN analytics_snapshotaggregate a ON a.snapshot_id = s.id
    WHERE s.id = ANY(%(snapshots)s::bigint[]) AND a.entity_type IN ('model', 'feature')
    UNION ALL
    SELECT s.period_start, 'feature', NULL,
           SUM(CASE WHEN a.entity_type = 'tenant' THEN a.total_cost_cents
                    ELSE -a.total_cost_cents END),
           SUM(CASE WHEN a.entity_type = 'tenant' THEN a.request_count
                    ELSE -a.request_count END)
    FROM analytics_costsnapshot s
    JOIN analytics_snapshotaggregate a ON a.snapshot_id = s.id
    WHERE s.id = ANY(%(snapshots)s::bigint[]) AND a.entity_type IN ('tenant', 'feature')
    GROUP BY s.period_start
) x
GROUP BY bucket, dimension, key
HAVING SUM(requests) > 0
ORDER BY bucket
"""


def cost_breakdown_series(
    *, tenant: Tenant, window: StatisticsWindow, coverage: Coverage
) -> list[tuple]:
    """(bucket, dimension, key, spend_cents) rows, oldest bucket first.

    Per bucket, the `model` rows and the `feature` rows each sum to the bucket's spend in
    `cost_series`; the feature key is None for untagged records.
    """
    return _fetch_all(
        *_query(_COST_BREAKDOWN_SERIES, tenant=tenant, window=window, coverage=coverage)
    )
