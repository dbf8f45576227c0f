"""Usage and cost statistics: shapes selector rows into API answers.

Nothing here writes. The JSON answers and the CSV exports read the same series query, so a
CSV row and the matching JSON series point always agree.
"""

import csv
import math
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from analytics.datetimes import format_datetime
from analytics.models import Tenant
from analytics.money import plain_decimal
from analytics.selectors.statistics import (
    DAY,
    StatisticsWindow,
    cost_breakdown,
    cost_series,
    newest_record_at,
    statistics_coverage,
    usage_series,
)

UNTAGGED = "untagged"
USAGE_CSV_HEADER = ("timestamp", "requests", "compute_units", "tokens")
COST_CSV_HEADER = ("timestamp", "spend_cents", "requests", "input_tokens", "output_tokens")


def bucket_label(bucket: datetime, resolution: str) -> str:
    """`YYYY-MM-DD` for days, `YYYY-MM-DDTHH:00:00Z` for hours (buckets are UTC)."""
    if resolution == DAY:
        return bucket.strftime("%Y-%m-%d")
    return format_datetime(bucket)


def _window_view(window: StatisticsWindow) -> dict:
    return {
        "from": format_datetime(window.start),
        "to": format_datetime(window.end),
        "resolution": window.resolution,
    }


def _freshness_sec(newest_record: datetime | None, now: datetime) -> int:
    """Whole seconds from the newest record of the answer to now; 0 without records."""
    if newest_record is None:
        return 0
    return max(0, math.floor((now - newest_record).total_seconds()))


def _pct_of_total(spend: Decimal, total: Decimal) -> float:
    if not total:
        return 0.0
    return round(float(spend) / float(total) * 100, 2)


def usage_statistics(
    *, tenant: Tenant, window: StatisticsWindow, now: datetime | None = None
) -> dict:
    coverage = statistics_coverage(tenant=tenant, window=window)
    rows = usage_series(tenant=tenant, window=window, coverage=coverage)
    series = [
        {
            "ts": bucket_label(bucket, window.resolution),
            "requests": requests,
            "compute_units": compute_units,
            "tokens": int(tokens),
        }
        for bucket, requests, compute_units, tokens in rows
    ]
    totals = {
        "requests": sum(point["requests"] for point in series),
        "compute_units": sum(point["compute_units"] for point in series),
        "tokens": sum(point["tokens"] for point in series),
    }
    sources = []
    if totals["requests"]:
        sources.append("cost_records")
    if totals["compute_units"]:
        sources.append("run_records")
    return {
        "window": _window_view(window),
        "totals": totals,
        "series": series,
        "signals": {
            "sources": sources or ["none"],
            "freshness_sec": _freshness_sec(
                newest_record_at(tenant=tenant, window=window, include_runs=True) if rows else None,
                now or timezone.now(),
            ),
        },
    }


# complexity: the series, totals and model and feature breakdowns of one response, each row shaped
# where it is read
def cost_statistics(
    *, tenant: Tenant, window: StatisticsWindow, now: datetime | None = None
) -> dict:
    coverage = statistics_coverage(tenant=tenant, window=window)
    rows = cost_series(tenant=tenant, window=window, coverage=coverage)
    series = [
        {
            "ts": bucket_label(bucket, window.resolution),
            "spend_cents": spend,
            "requests": requests,
            "input_tokens": int(input_tokens),
            "output_tokens": int(output_tokens),
            "unpriced_records": unpriced,
        }
        for bucket, spend, requests, input_tokens, output_tokens, unpriced in rows
    ]
    total_spend = sum((point["spend_cents"] for point in series), Decimal(0))
    totals = {
        "spend_cents": total_spend,
        "spend_usd": total_spend / 100,
        "requests": sum(point["requests"] for point in series),
        "input_tokens": sum(point["input_tokens"] for point in series),
        "output_tokens": sum(point["output_tokens"] for point in series),
        "unpriced_records": sum(point["unpriced_records"] for point in series),
    }

    by_model, by_feature = [], []
    for dimension, key, spend, requests, input_tokens, output_tokens, unpriced in cost_breakdown(
        tenant=tenant, window=window, coverage=coverage
    ):
        pct = _pct_of_total(spend, total_spend)
        if dimension == "model":
            by_model.append(
                {
                    "model": key,
                    "spend_cents": spend,
                    "requests": requests,
                    "input_tokens": int(input_tokens),
                    "output_tokens": int(output_tokens),
                    "unpriced_records": unpriced,
                    "pct_of_total": pct,
                }
            )
        else:
            by_feature.append(
                {
                    "feature_tag": UNTAGGED if key is None else key,
                    "spend_cents": spend,
                    "requests": requests,
                    "pct_of_total": pct,
                }
            )
    by_model.sort(key=lambda item: (-item["spend_cents"], item["model"]))
    by_feature.sort(key=lambda item: (-item["spend_cents"], item["feature_tag"]))

    return {
        "window": _window_view(window),
        "totals": totals,
        "series": series,
        "by_model": by_model,
        "by_feature": by_feature,
        "signals": {
            "sources": ["cost_records"] if series else ["none"],
            "freshness_sec": _freshness_sec(
                newest_record_at(tenant=tenant, window=window) if rows else None,
                now or timezone.now(),
            ),
        },
    }


class _Line:
    """A file-like sink for csv.writer that hands back each line instead of storing it."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(header: tuple, rows: Iterator[tuple]) -> Iterator[str]:
    writer = csv.writer(_Line(), lineterminator="\r\n")
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def usage_csv_lines(*, tenant: Tenant, window: StatisticsWindow) -> Iterator[str]:
    """The usage series as CSV lines (CRLF), read through a server-side cursor."""
    coverage = statistics_coverage(tenant=tenant, window=window)
    rows = usage_series(tenant=tenant, window=window, coverage=coverage, stream=True)
    return _csv_lines(
        USAGE_CSV_HEADER,
        (
            (bucket_label(bucket, window.resolution), requests, compute_units, int(tokens))
            for bucket, requests, compute_units, tokens in rows
        ),
    )


def cost_csv_lines(*, tenant: Tenant, window: StatisticsWindow) -> Iterator[str]:
    """The cost series as CSV lines (CRLF), money as plain decimals."""
    coverage = statistics_coverage(tenant=tenant, window=window)
    rows = cost_series(tenant=tenant, window=window, coverage=coverage, stream=True)
    return _csv_lines(
        COST_CSV_HEADER,
        (
            (
                bucket_label(bucket, window.resolution),
                plain_decimal(spend),
                requests,
                int(input_tokens),
                int(output_tokens),
            )
            for bucket, spend, requests, input_tokens, output_tokens, _unpriced in rows
        ),
    )


def csv_filename(kind: str, window: StatisticsWindow) -> str:
    """`usage_20260210_20260211.csv`: the UTC dates of the window's ends."""
    return f"{kind}_{window.start:%Y%m%d}_{window.end:%Y%m%d}.csv"
