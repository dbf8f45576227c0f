"""Reads behind the usage and cost statistics.

A window is answered in three parts. Buckets that lie wholly inside the window and have a
`complete`, non-stale snapshot of the same resolution are read from that snapshot's
aggregates. The rest of the window is read hour by hour from the hourly rollups of cost
records (`CostRollup`, kept by the database as records are written), so a busy hour costs
its number of (feature, user, model) keys, not its number of records. Only the part of an
hour the window cuts (its first and last, partial hours) touches cost records: either the
records inside the window, or the whole hour's rollups minus the records outside it,
whichever spans less time that has already passed (a window ending now subtracts the
records of the rest of the current hour, which has none yet). All parts produce the same
exact sums, so the answer does not depend on which snapshots exist or which way an edge is
read.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from analytics.db import read_connection
from analytics.models import CostSnapshot, SnapshotStatus, SnapshotType, Tenant

HOUR, DAY = "hour", "day"
ONE_HOUR = timedelta(hours=1)
RESOLUTIONS = (HOUR, DAY)
SNAPSHOT_TYPE_OF = {HOUR: SnapshotType.HOURLY, DAY: SnapshotType.DAILY}


@dataclass(frozen=True)
class StatisticsWindow:
    start: datetime
    end: datetime
    resolution: str = DAY


@dataclass(frozen=True)
class Coverage:
    """Snapshots that answer whole buckets; the [lo, hi) ranges read from hourly rollups
    (whole hours), from cost records (added) and from cost records subtracted again (the
    parts of a rollup hour that lie outside the window)."""

    snapshot_ids: list[int] = field(default_factory=list)
    rollup_lo: list[datetime] = field(default_factory=list)
    rollup_hi: list[datetime] = field(default_factory=list)
    raw_lo: list[datetime] = field(default_factory=list)
    raw_hi: list[datetime] = field(default_factory=list)
    minus_lo: list[datetime] = field(default_factory=list)
    minus_hi: list[datetime] = field(default_factory=list)

    def add_rollup(self, lo: datetime, hi: datetime) -> None:
        if self.rollup_hi and self.rollup_hi[-1] == lo:
            self.rollup_hi[-1] = hi
        else:
            self.rollup_lo.append(lo)
            self.rollup_hi.append(hi)

    def add_gap(self, lo: datetime, hi: datetime, now: datetime) -> None:
        """Cover [lo, hi), which no snapshot answers: whole hours from rollups, each
        partial hour by `add_partial_hour`."""
        first, last = _ceil_hour(lo), _floor_hour(hi)
        if first > last:
            self.add_partial_hour(lo, hi, now)
            return
        if lo < first:
            self.add_partial_hour(lo, first, now)
        if first < last:
            self.add_rollup(first, last)
        if last < hi:
            self.add_partial_hour(last, hi, now)

    def add_partial_hour(self, lo: datetime, hi: datetime, now: datetime) -> None:
        """Cover [lo, hi) inside one hour by the side that spans less time before `now`:
        its records, or the hour's rollups minus the records of the hour outside it.
        Either way the sums are exact; only the number of records read differs."""
        hour = _floor_hour(lo)
        end = hour + ONE_HOUR
        inside = _elapsed(lo, hi, now)
        outside = _elapsed(hour, lo, now) + _elapsed(hi, end, now)
        if outside >= inside:
            self.raw_lo.append(lo)
            self.raw_hi.append(hi)
            return
        self.add_rollup(hour, end)
        for minus_lo, minus_hi in ((hour, lo), (hi, end)):
            if minus_lo < minus_hi:
                self.minus_lo.append(minus_lo)
                self.minus_hi.append(minus_hi)


def _floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(at: datetime) -> datetime:
    floor = _floor_hour(at)
    return floor if floor == at else floor + ONE_HOUR


def _elapsed(lo: datetime, hi: datetime, now: datetime) -> timedelta:
    """How much of [lo, hi) lies before `now`; records dated later are rare."""
    return max(min(hi, now) - lo, timedelta(0))


def statistics_coverage(
    *, tenant: Tenant, window: StatisticsWindow, now: datetime | None = None
) -> Coverage:
    """What answers `window`: snapshots, rollup hours and record ranges. `now` (default the
    current time) only decides which way partial hours are read, never the answer."""
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
    now = now or timezone.now()
    coverage = Coverage()
    cursor_at = window.start
    for snapshot_id, period_start, period_end in snapshots:
        coverage.snapshot_ids.append(snapshot_id)
        if period_start > cursor_at:
            coverage.add_gap(cursor_at, period_start, now)
        cursor_at = period_end
    if cursor_at < window.end:
        coverage.add_gap(cursor_at, window.end, now)
    return coverage


def _cost_pieces(*keys: str, by_bucket: bool = True) -> str:
    """The uncovered part of the window per (bucket, *keys): rows of sums from the records
    of the raw ranges, from the rollups of the rollup ranges, and the records of the minus
    ranges negated. Summed per group they give exactly the sums of the window's records.

    The ranges are spelled out as literal conditions (filled in per query, see _query)
    rather than joined from an array, so the planner estimates each one from the
    statistics: a partial hour becomes an index range scan on (tenant, created_at), the
    rollup hours a range scan of costrollup_key.
    """
    columns = (["bucket"] if by_bucket else []) + list(keys)
    record_keys = ", ".join(
        (["date_trunc(%(unit)s, r.created_at, 'UTC') AS bucket"] if by_bucket else [])
        + [f"r.{key}" for key in keys]
    )
    rollup_keys = ", ".join(
        (["date_trunc(%(unit)s, u.hour, 'UTC')"] if by_bucket else [])
        + [f"u.{key}" for key in keys]
    )
    group = ", ".join(str(position) for position in range(1, len(columns) + 1))
    return f"""
        SELECT {record_keys},
               COALESCE(SUM(r.cost_cents), 0) AS spend,
               COUNT(*) AS requests,
               SUM(r.input_tokens) AS input_tokens,
               SUM(r.output_tokens) AS output_tokens,
               COUNT(*) FILTER (WHERE r.cost_source = 'unpriced') AS unpriced
        FROM analytics_costrecord r
        WHERE r.tenant_id = %(tenant)s AND ({{raw_ranges}})
        GROUP BY {group}
        UNION ALL
        SELECT {rollup_keys}, u.spend_cents, u.requests, u.input_tokens, u.output_tokens,
               u.unpriced_records
        FROM analytics_costrollup u
        WHERE u.tenant_id = %(tenant)s AND u.requests > 0 AND ({{rollup_ranges}})
        UNION ALL
        SELECT {record_keys},
               -COALESCE(SUM(r.cost_cents), 0),
               -COUNT(*),
               -SUM(r.input_tokens),
               -SUM(r.output_tokens),
               -COUNT(*) FILTER (WHERE r.cost_source = 'unpriced')
        FROM analytics_costrecord r
        WHERE r.tenant_id = %(tenant)s AND ({{minus_ranges}})
        GROUP BY {group}
    """


# The uncovered part per bucket. A bucket whose records all lie outside the window (only
# the rollup hour and its subtracted records reach it) adds up to no requests and is
# dropped, as a bucket without records is when read from records alone.
_UNCOVERED_SERIES = f"""
    SELECT bucket, SUM(spend) AS spend, SUM(requests) AS requests,
           SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,
           SUM(unpriced) AS unpriced
    FROM ({_cost_pieces()}) pieces
    GROUP BY bucket
    HAVING SUM(requests) > 0
"""

# Token sums stay numeric (a sum of bigints can pass a bigint, as a snapshot's can); the rows
# hold them as Decimal and the statistics service turns them into ints.
_COST_SERIES = f"""
SELECT bucket, spend, requests, input_tokens, output_tokens, unpriced FROM (
    SELECT bucket, spend, requests::bigint, input_tokens, output_tokens, unpriced::bigint
    FROM ({_UNCOVERED_SERIES}) uncovered
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
    SELECT bucket, requests::bigint, 0::bigint AS compute_units,
           input_tokens + output_tokens AS tokens
    FROM ({_UNCOVERED_SERIES}) uncovered
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
        SELECT model, feature_tag, SUM(spend) AS spend, SUM(requests) AS requests,
               SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,
               SUM(unpriced) AS unpriced
        FROM ({_cost_pieces("model", "feature_tag", by_bucket=False)}) pieces
        GROUP BY model, feature_tag
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
    conditions = {}
    for name, column, los, his in (
        ("raw_ranges", "r.created_at", coverage.raw_lo, coverage.raw_hi),
        ("rollup_ranges", "u.hour", coverage.rollup_lo, coverage.rollup_hi),
        ("minus_ranges", "r.created_at", coverage.minus_lo, coverage.minus_hi),
    ):
        ranges = []
        for index, (lo, hi) in enumerate(zip(los, his, strict=True)):
            lo_name, hi_name = f"{name}_lo{index}", f"{name}_hi{index}"
            params[lo_name], params[hi_name] = lo, hi
            ranges.append(f"({column} >= %({lo_name})s AND {column} < %({hi_name})s)")
        conditions[name] = " OR ".join(ranges) or "false"
    return template.format(**conditions), params


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
        SELECT bucket, model, feature_tag, SUM(spend) AS spend, SUM(requests) AS requests
        FROM ({_cost_pieces("model", "feature_tag")}) pieces
        GROUP BY bucket, model, feature_tag
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
