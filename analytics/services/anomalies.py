"""Anomaly detection runs: every rule for one tenant and day, and the job over all tenants.

One run reads the tenant's spend set-based, lets each rule turn it into candidates and upserts
them all at once by natural key, so running twice for the same day leaves the same rows.
Re-detection never touches the status: a resolved or dismissed anomaly stays closed for its day.
"""

from collections.abc import Sequence
from datetime import date

from django.db import transaction
from django.utils import timezone

from analytics import metrics
from analytics.models import Tenant
from analytics.services.anomaly_rules import (
    DetectionClock,
    absolute_spike_candidates,
    budget_breach_candidates,
    recent_spend,
    statistical_outlier_candidates,
    sustained_drift_candidates,
)
from analytics.services.anomaly_upsert import anomaly_candidates_upsert
from analytics.services.tenants import tenants_run_each


@transaction.atomic
def anomalies_detect(*, tenant: Tenant, as_of: date | None = None) -> dict:
    """Run rules 1-5 for one tenant as of day `as_of` (default today, UTC).

    Returns {detected, created, updated, anomalies}; anomalies are in rule order.
    """
    clock = DetectionClock.at(as_of, timezone.now())
    spend = recent_spend(tenant=tenant, clock=clock)
    has_budgets = any(row.has_budgets for row in spend)
    candidates = [
        *absolute_spike_candidates(tenant=tenant, clock=clock, spend=spend),
        *sustained_drift_candidates(tenant=tenant, clock=clock, spend=spend),
        *(budget_breach_candidates(tenant=tenant, clock=clock) if has_budgets else []),
        *statistical_outlier_candidates(tenant=tenant, clock=clock),
    ]
    results = anomaly_candidates_upsert(tenant=tenant, candidates=candidates)
    created = sum(1 for _, was_created in results if was_created)
    return {
        "detected": len(results),
        "created": created,
        "updated": len(results) - created,
        "anomalies": [anomaly for anomaly, _ in results],
    }


def anomalies_detect_active_tenants(
    *, as_of: date | None = None, tenants: Sequence[Tenant] | None = None, progress=None
) -> dict:
    """Detect for each active tenant (or the given ones), each in its own transaction.

    A failing tenant is logged and counted, and the others still run. `progress`, when
    given, is called with (tenant, result or None, error or None) after each tenant.
    """
    succeeded, failed = tenants_run_each(
        lambda tenant: anomalies_detect(tenant=tenant, as_of=as_of),
        label="Anomaly detection",
        tenants=tenants,
        on_tenant_done=progress,
    )
    totals = {"succeeded": len(succeeded), "failed": len(failed)}
    for key in ("detected", "created", "updated"):
        totals[key] = sum(result[key] for _, result in succeeded)
    outcome = "failed" if totals["failed"] else "success"
    metrics.job_runs_total.labels(job="detect_anomalies", outcome=outcome).inc()
    return totals
