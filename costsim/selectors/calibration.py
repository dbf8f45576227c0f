"""Calibration: V2 estimates against what the runs really cost; a read.

The whole report is one SQL statement: the newest V2 estimate per run id, the tenant's cost
records of those runs, and the per-run and per-skill comparison, aggregated in PostgreSQL.
The method is described in docs/calibration.md.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from analytics.models import CostRecord, Tenant
from costsim.models import Provenance, Variant

UNATTRIBUTED = "unattributed"

# Notes on the statement:
# - `records` is a UNION (not UNION ALL) over (run, record id): a record whose run_id and
#   workflow_id both equal the run is counted once; each branch can use its own index.
# - Estimated skill cents are summed as numeric from the JSON text of the 2 dp step costs,
#   so the sums are exact.
# - Only matched runs (at least one record) enter `per_run` and `per_run_skill`.
_REPORT_SQL = f"""
WITH estimates AS (
    SELECT DISTINCT ON (run_id) run_id, output_json
    FROM {Provenance._meta.db_table}
    WHERE tenant_id = %(tenant)s
      AND variant_slug = %(variant)s
      AND run_id IS NOT NULL
      AND created_at >= %(start)s AND created_at < %(end)s
    ORDER BY run_id, created_at DESC, id DESC
),
records AS (
    SELECT e.run_id, c.id, c.skill_id, c.cost_cents
    FROM estimates e
    JOIN {CostRecord._meta.db_table} c ON c.tenant_id = %(tenant)s AND c.run_id = e.run_id
    UNION
    SELECT e.run_id, c.id, c.skill_id, c.cost_cents
    FROM estimates e
    JOIN {CostRecord._meta.db_table} c ON c.tenant_id = %(tenant)s AND c.workflow_id = e.run_id
    UNION
    SELECT e.run_id, c.id, c.skill_id, c.cost_cents
    FROM estimates e
    JOIN {CostRecord._meta.db_table} c ON c.tenant_id = %(tenant)s AND c.request_id = e.run_id
),
actual_skill AS (
    SELECT run_id, coalesce(skill_id, %(unattributed)s) AS skill_id, sum(cost_cents) AS cents
    FROM records
    -- A run with an unpriced record (NULL cost) has no known actual cost: not compared.
    WHERE run_id NOT IN (SELECT run_id FROM records WHERE cost_cents IS NULL)
    GROUP BY 1, 2
),
matched AS (
    SELECT run_id, sum(cents) AS act FROM actual_skill GROUP BY run_id
),
per_run AS (
    SELECT coalesce((e.output_json ->> 'estimated_cost_cents')::numeric, 0) AS est, m.act
    FROM matched m
    JOIN estimates e USING (run_id)
),
estimate_skill AS (
    SELECT e.run_id, step ->> 'skill_id' AS skill_id,
           sum(coalesce((step ->> 'cost_cents')::numeric, 0)) AS cents
    FROM estimates e
    JOIN matched m USING (run_id)
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(e.output_json -> 'step_estimates') = 'array'
             THEN e.output_json -> 'step_estimates' ELSE '[]'::jsonb END
    ) AS step
    GROUP BY 1, 2
),
per_run_skill AS (
    SELECT coalesce(es.skill_id, a.skill_id) AS skill_id,
           coalesce(es.cents, 0) AS est,
           coalesce(a.cents, 0) AS act
    FROM estimate_skill es
    FULL JOIN actual_skill a ON a.run_id = es.run_id AND a.skill_id = es.skill_id
),
comparisons AS (
    SELECT NULL::text AS skill_id, est, act FROM per_run
    UNION ALL
    SELECT skill_id, est, act FROM per_run_skill WHERE est > 0 OR act > 0
)
SELECT
    skill_id IS NULL AS is_overall,
    skill_id,
    count(*) AS runs,
    sum(est) AS estimated,
    sum(act) AS actual,
    avg(abs(est - act)) AS mean_abs_error,
    count(*) FILTER (
        WHERE abs(est - act)::float8 <= greatest(1.0, %(tolerance)s::float8 * est::float8)
    ) AS covered,
    (SELECT count(*) FROM estimates) AS estimated_runs
FROM comparisons
GROUP BY skill_id
ORDER BY skill_id NULLS FIRST
"""


def calibration_report(
    *, tenant: Tenant, start: datetime, end: datetime, tolerance: float
) -> dict[str, Any]:
    """Return the calibration report of `tenant` for estimates created in `[start, end)`.

    Cents are exact Decimals; `bias_pct` is None when the actual cents are 0. With no
    matched run, the overall row has zero runs and zero error and coverage.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _REPORT_SQL,
            {
                "tenant": tenant.pk,
                "variant": Variant.V2,
                "start": start,
                "end": end,
                "unattributed": UNATTRIBUTED,
                "tolerance": tolerance,
            },
        )
        rows = cursor.fetchall()

    overall = _metrics(0, Decimal(0), Decimal(0), None, 0)
    by_skill = []
    estimated_runs = 0
    for is_overall, skill_id, runs, estimated, actual, mean_abs_error, covered, total in rows:
        estimated_runs = total
        row = _metrics(runs, estimated, actual, mean_abs_error, covered)
        if is_overall:
            overall = row
        else:
            by_skill.append({"skill_id": skill_id, **row})
    if not rows:
        estimated_runs = _estimated_runs(tenant=tenant, start=start, end=end)

    return {
        "window": {"from": start, "to": end},
        "tolerance": tolerance,
        "runs_matched": overall["runs"],
        "runs_unmatched": estimated_runs - overall["runs"],
        "overall": overall,
        "by_skill": by_skill,
    }


def _metrics(
    runs: int,
    estimated: Decimal,
    actual: Decimal,
    mean_abs_error: Decimal | None,
    covered: int,
) -> dict[str, Any]:
    return {
        "runs": runs,
        "estimated_cents": _plain(estimated),
        "actual_cents": _plain(actual),
        "bias_pct": round(float((estimated - actual) / actual * 100), 2) if actual else None,
        "mean_abs_error_cents": round(float(mean_abs_error), 2) if runs else 0.0,
        "coverage": round(covered / runs, 4) if runs else 0.0,
    }


def _plain(value: Decimal) -> Decimal:
    # 40.000000 and 40 are the same amount; the renderer prints either as 40, but callers
    # comparing Decimals should not see the numeric scale of the column.
    return Decimal(int(value)) if value == value.to_integral_value() else value.normalize()


def _estimated_runs(*, tenant: Tenant, start: datetime, end: datetime) -> int:
    return (
        Provenance.objects.filter(
            tenant=tenant,
            variant_slug=Variant.V2,
            run_id__isnull=False,
            created_at__gte=start,
            created_at__lt=end,
        )
        .values("run_id")
        .distinct()
        .count()
    )
