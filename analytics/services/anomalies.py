"""Anomaly detection runs: every rule for one tenant and day, and the job over all tenants.

One run reads the tenant's spend set-based, lets each rule turn it into candidates and upserts
them all at once by natural key, so running twice for the same day leaves the same rows.
Re-detection never touches the status: a resolved or dismissed anomaly stays closed for its day.
"""

from collections.abc import Sequence
from datetime import date

from django.db import transaction
from django.utils import timezone

from analytics.models import Tenant
from analytics.selectors.incidents import DetectionContext
from analytics.services.anomaly_rules import (
    DetectionClock,
    absolute_spike_candidates,
    budget_breach_candidates,
    recent_spend,
    statistical_outlier_candidates,
    sustained_drift_candidates,
)
from analytics.services.anomaly_upsert import anomaly_candidates_upsert
from analytics.services.incidents import DETECTION_LOCK_CLASS, incidents_record
from analytics.services.jobs import JobReport, TenantJob, tenant_job_run


def anomalies_detect(*, tenant: Tenant, as_of: date | None = None, dry_run: bool = False) -> dict:
    """Run every rule for one tenant as of day `as_of` (default today, UTC), then the incidents.

    Returns {detected, created, updated, anomalies, incidents, opened, suppressed, dry_run};
    anomalies are in rule order, incidents are those the run opened or updated. With
    `dry_run` everything is computed the same way and rolled back: nothing is written, no
    signal is sent, and the returned objects carry their members in `members`.
    """
    # A savepoint only where a dry run inside a caller's transaction must undo just itself.
    with transaction.atomic(savepoint=dry_run):
        result = _detect(tenant=tenant, as_of=as_of)
        if dry_run:
            for incident in result["incidents"]:
                incident.members = list(incident.anomalies.all())
            transaction.set_rollback(True)
    result["dry_run"] = dry_run
    return result


def _detect(*, tenant: Tenant, as_of: date | None) -> dict:
    clock = DetectionClock.at(as_of, timezone.now())
    context = DetectionContext(tenant=tenant, as_of=clock.as_of, until=clock.until)
    # Runs for the same tenant queue up here, so two of them never open one incident twice.
    context.lock(DETECTION_LOCK_CLASS)
    spend = recent_spend(context=context, clock=clock)
    monitors = context.monitors
    candidates = [
        *absolute_spike_candidates(tenant=tenant, clock=clock, spend=spend),
        *sustained_drift_candidates(
            tenant=tenant, clock=clock, spend=spend, has_tracking=monitors.has_drift_tracking
        ),
        *(budget_breach_candidates(tenant=tenant, clock=clock) if monitors.has_budgets else []),
        *statistical_outlier_candidates(context=context, clock=clock),
    ]
    results = anomaly_candidates_upsert(tenant=tenant, candidates=candidates)
    anomalies = [anomaly for anomaly, _ in results]
    outcome = incidents_record(tenant=tenant, anomalies=anomalies, context=context)
    created = sum(1 for _, was_created in results if was_created)
    return {
        "detected": len(results),
        "created": created,
        "updated": len(results) - created,
        "anomalies": anomalies,
        "incidents": outcome.incidents,
        "opened": len(outcome.opened),
        "suppressed": len(outcome.suppressed),
    }


def _detect_work(tenant: Tenant, params: dict) -> dict:
    as_of = params.get("as_of")
    return anomalies_detect(tenant=tenant, as_of=date.fromisoformat(as_of) if as_of else None)


def _detect_counts(result: dict) -> dict[str, int]:
    return {key: result[key] for key in DETECTION_KEYS}


DETECTION_KEYS = ("detected", "created", "updated", "opened")
# Fanned out, every chunk of a run detects for the day the run was dispatched on.
DETECT_ANOMALIES = TenantJob(
    name="detect_anomalies",
    work=_detect_work,
    counts=_detect_counts,
    keys=DETECTION_KEYS,
    params=lambda now: {"as_of": now.date().isoformat()},
)


def anomalies_detect_active_tenants(
    *, as_of: date | None = None, tenants: Sequence[Tenant] | None = None, progress=None
) -> JobReport:
    """Detect for each active tenant (or the given ones), each in its own transaction.

    A failing tenant is logged and reported, and the others still run. `progress`, when
    given, is called with (tenant, result or None, error or None) after each tenant.
    Returns the job report; `totals` holds detected, created, updated and opened.
    """
    report = tenant_job_run(
        DETECT_ANOMALIES,
        params={"as_of": as_of.isoformat() if as_of else None},
        tenants=tenants,
        on_tenant_done=progress,
    )
    return report.finish()
