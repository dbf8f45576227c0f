"""Reads of the detection rules beyond the daily series: spike breach days and budget spend.

Every read covers all entities of the tenant at once, so a detection run costs the same number
of queries however many users, features and models the tenant has. The daily series every
rule shares is `analytics.selectors.incidents.entity_daily_series`; which days a rule looks
at is the business of `analytics.services.anomaly_rules`.
"""

from collections.abc import Sequence
from datetime import date, datetime

from django.db import connection

from analytics.models import Budget, Tenant
from analytics.selectors.budgets import BUDGET_SPEND_LATERAL


def _fetch(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# Breach days in the streak window of every breaching entity; the streak itself (gaps end
# it) is counted by the engine.
_BREACH_DAYS_SQL = """
SELECT b.entity_type, b.entity_id, array_agg(b.breach_date)
FROM analytics_breachhistory b
JOIN unnest(%(entity_type)s::text[], %(entity_id)s::text[]) AS e(entity_type, entity_id)
  ON e.entity_type = b.entity_type AND e.entity_id IS NOT DISTINCT FROM b.entity_id
WHERE b.tenant_id = %(tenant_id)s
  AND b.breach_type = 'ABSOLUTE_SPIKE'
  AND b.breach_date BETWEEN %(first_day)s AND %(last_day)s
GROUP BY b.entity_type, b.entity_id
"""


def spike_breach_days(
    *,
    tenant: Tenant,
    entity_types: Sequence[str],
    entity_ids: Sequence[str | None],
    first_day: date,
    last_day: date,
) -> dict[tuple[str, str | None], list[date]]:
    """ABSOLUTE_SPIKE breach days in [first_day, last_day] of each (type, id) pair given.

    Entities without a breach day in the range are absent from the result.
    """
    rows = _fetch(
        _BREACH_DAYS_SQL,
        {
            "tenant_id": tenant.pk,
            "entity_type": list(entity_types),
            "entity_id": list(entity_ids),
            "first_day": first_day,
            "last_day": last_day,
        },
    )
    return {(entity_type, entity_id): days for entity_type, entity_id, days in rows}


# Every active budget of the tenant with its daily and month-to-date spend, in one query.
# Also, per period, when an earlier run already found the budget exhausted in the same period
# at the same limit: the instant the running spend reached the limit does not move once found
# (records are append-only), so the window query that finds it runs once per period.
_KNOWN_EXHAUSTED_SQL = """
       (SELECT a.metadata->>'eta_exhausted_at' FROM analytics_anomaly a
        WHERE a.tenant_id = b.tenant_id AND a.budget_id = b.id
          AND a.anomaly_type = 'BUDGET_EXCEEDED' AND a.budget_period = '{period}'
          AND a.anomaly_date BETWEEN %({first})s AND %(day)s
          AND (a.metadata->>'limit_cents')::bigint = b.{period}_limit_cents
          AND a.metadata->>'eta_exhausted_at' IS NOT NULL
        ORDER BY a.anomaly_date LIMIT 1) AS {period}_exhausted_at"""

# The spend is the budget status's and the reserve check's (BUDGET_SPEND_LATERAL), so the
# three agree on what was spent.
_BUDGET_SPEND_SQL = f"""
SELECT b.*, spend.day_spend, spend.month_spend,
{_KNOWN_EXHAUSTED_SQL.format(period="daily", first="day")},
{_KNOWN_EXHAUSTED_SQL.format(period="monthly", first="month_first_day")}
FROM analytics_budget b
{BUDGET_SPEND_LATERAL}
WHERE b.tenant_id = %(tenant_id)s AND b.is_active
ORDER BY b.id
"""


def active_budgets_with_spend(
    *, tenant: Tenant, day_start: datetime, month_start: datetime, until: datetime
) -> list[Budget]:
    """The tenant's active budgets by id, each annotated with `day_spend` and `month_spend`.

    Both are Decimal cents spent in the budget's scope up to `until`, from `day_start` and
    from `month_start`; 0 without records. `daily_exhausted_at` and `monthly_exhausted_at`
    are the ISO instants an earlier run of the same period found the limit reached, or None.
    """
    return list(
        Budget.objects.raw(
            _BUDGET_SPEND_SQL,
            {
                "tenant_id": tenant.pk,
                "day_start": day_start,
                "month_start": month_start,
                "until": until,
                "day": day_start.date(),
                "month_first_day": month_start.date(),
            },
        )
    )


# The history plus the evaluated day of every eligible entity, zero-filled by generate_series.
# Only tenants whose records reach back to the first history day are judged (the uncorrelated
# EXISTS runs once). Within one entity type the only NULL id left is the tenant's, so COALESCE
# gives a non-null key the final join can hash on.
