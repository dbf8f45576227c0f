"""Reads of anomalies and the context the operator console shows around one."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from analytics.db import read_connection
from analytics.models import Anomaly, Tenant


def anomaly_list(
    *,
    tenant: Tenant,
    status: str | None = None,
    severity: str | None = None,
    anomaly_type: str | None = None,
    entity_type: str | None = None,
    detected_from: datetime | None = None,
    detected_to: datetime | None = None,
) -> QuerySet[Anomaly]:
    """The tenant's anomalies, filtered; detected_at in [detected_from, detected_to).

    The contributors column is deferred: list views do not show it.
    """
    queryset = Anomaly.objects.filter(tenant=tenant).defer("contributors")
    filters = {
        "status": status,
        "severity": severity,
        "anomaly_type": anomaly_type,
        "entity_type": entity_type,
        "detected_at__gte": detected_from,
        "detected_at__lt": detected_to,
    }
    return queryset.filter(**{key: value for key, value in filters.items() if value is not None})


def anomaly_detail_queryset(*, tenant: Tenant) -> QuerySet[Anomaly]:
    return Anomaly.objects.filter(tenant=tenant)


@dataclass(frozen=True)
class DailyCost:
    day: date
    cents: float
    requests: int


# Zero-filled daily spend of one anomaly's scope. Django runs every PostgreSQL session in UTC,
# so the generated days are UTC midnights.
_DAILY_SERIES_SQL = """
SELECT g.day::date, COALESCE(SUM(r.cost_cents), 0)::float8, COUNT(r.id)
FROM generate_series(%(first)s::date, %(last)s::date, interval '1 day') AS g(day)
LEFT JOIN analytics_costrecord r
  ON r.tenant_id = %(tenant_id)s
 AND r.created_at >= g.day
 AND r.created_at < g.day + interval '1 day'
 AND CASE %(entity_type)s
         WHEN 'user' THEN r.user_id = %(entity_id)s
         WHEN 'feature' THEN r.feature_tag = %(entity_id)s
         WHEN 'model' THEN r.model = %(entity_id)s
         ELSE TRUE
     END
GROUP BY g.day
ORDER BY g.day
"""


def anomaly_daily_series(
    *, anomaly: Anomaly, days_before: int = 14, days_after: int = 14, today: date | None = None
) -> list[DailyCost]:
    """Daily spend of the anomaly's entity (or budget scope) around its day, oldest first.

    Days after today are left out; days without records are 0.
    """
    today = today or timezone.now().date()
    first = anomaly.anomaly_date - timedelta(days=days_before)
    last = min(anomaly.anomaly_date + timedelta(days=days_after), today)
    if last < first:
        return []
    with read_connection().cursor() as cursor:
        cursor.execute(
            _DAILY_SERIES_SQL,
            {
                "tenant_id": anomaly.tenant_id,
                "first": first,
                "last": last,
                "entity_type": anomaly.entity_type,
                "entity_id": anomaly.entity_id,
            },
        )
        return [DailyCost(day, cents, requests) for day, cents, requests in cursor.fetchall()]
