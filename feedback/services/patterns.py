"""Writes of pattern feedback: detection upserts and acknowledgement."""

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from analytics.models import Tenant
from analytics.services.jobs import JobReport, TenantJob, tenant_job_run
from feedback import metrics
from feedback.models import PatternFeedback
from feedback.selectors import failure_groups, worker_cost_windows
from feedback.services.detectors import (
    PatternFinding,
    cost_spike_finding,
    failure_pattern_finding,
)

TABLE = PatternFeedback._meta.db_table

# One statement for the whole batch. Every SET expression reads the row as it was before
# the statement, so the acknowledgement survives only when no new run id turned up.
UPSERT_SQL = f"""
INSERT INTO {TABLE} AS f (
    id, tenant_id, pattern_type, severity, description, signature, provenance,
    occurrence_count, time_window_minutes, threshold_used, metadata,
    detected_at, created_at, updated_at, acknowledged, acknowledged_at, acknowledged_by
)
SELECT x.id, %(tenant)s, x.pattern_type, x.severity, x.description, x.signature, x.provenance,
       x.occurrence_count, x.time_window_minutes, x.threshold_used, x.metadata,
       %(now)s, %(now)s, %(now)s, false, NULL, NULL
FROM jsonb_to_recordset(%(findings)s::jsonb) AS x(
    id uuid, pattern_type text, severity text, description text, signature text,
    provenance jsonb, occurrence_count integer, time_window_minutes integer,
    threshold_used text, metadata jsonb
)
-- a fixed row order makes concurrent runs lock conflicting keys in the same order
ORDER BY x.pattern_type, x.signature
ON CONFLICT (tenant_id, pattern_type, signature) DO UPDATE SET
    severity = EXCLUDED.severity,
    description = EXCLUDED.description,
    provenance = EXCLUDED.provenance,
    occurrence_count = EXCLUDED.occurrence_count,
    time_window_minutes = EXCLUDED.time_window_minutes,
    threshold_used = EXCLUDED.threshold_used,
    metadata = EXCLUDED.metadata,
    detected_at = EXCLUDED.detected_at,
    updated_at = EXCLUDED.updated_at,
    acknowledged = f.acknowledged AND EXCLUDED.provenance <@ f.provenance,
    acknowledged_at = CASE
        WHEN f.acknowledged AND EXCLUDED.provenance <@ f.provenance THEN f.acknowledged_at
    END,
    acknowledged_by = CASE
        WHEN f.acknowledged AND EXCLUDED.provenance <@ f.provenance THEN f.acknowledged_by
    END
RETURNING f.pattern_type, (f.xmax = 0) AS inserted
"""


@transaction.atomic
def patterns_detect(*, tenant: Tenant) -> dict:
    """Detect failure patterns and cost spikes in the tenant's runs and upsert the feedback.

    Returns `{failure_patterns, cost_spikes, feedback_created, feedback_updated}`. Run
    records are only read; running this twice leaves one row per (type, signature).
    """
    now = timezone.now()
    window_hours = settings.FAILURE_PATTERN_WINDOW_HOURS
    threshold = settings.FAILURE_PATTERN_THRESHOLD
    groups = failure_groups(
        tenant=tenant, since=now - timedelta(hours=window_hours), threshold=threshold
    )
    failure_findings = [
        finding
        for group in groups
        if (
            finding := failure_pattern_finding(
                group, window_hours=window_hours, threshold=threshold
            )
        )
    ]
    windows = worker_cost_windows(tenant=tenant, min_runs=settings.COST_SPIKE_MIN_RUNS)
    spike_findings = [
        finding
        for window in windows
        if (
            finding := cost_spike_finding(
                window,
                threshold_pct=settings.COST_SPIKE_THRESHOLD_PERCENT,
                min_runs=settings.COST_SPIKE_MIN_RUNS,
            )
        )
    ]
    outcomes = _findings_upsert(tenant=tenant, findings=failure_findings + spike_findings, now=now)
    return {
        "failure_patterns": len(failure_findings),
        "cost_spikes": len(spike_findings),
        "feedback_created": sum(n for (_, inserted), n in outcomes.items() if inserted),
        "feedback_updated": sum(n for (_, inserted), n in outcomes.items() if not inserted),
    }


def _findings_upsert(*, tenant: Tenant, findings: list[PatternFinding], now) -> Counter:
    """Upsert all findings in one statement; count rows by (pattern_type, inserted)."""
    if not findings:
        return Counter()
    documents = []
    for finding in findings:
        document = {"id": str(uuid.uuid4()), **asdict(finding)}
        PatternFeedback(tenant=tenant, detected_at=now, **document).full_clean(
            exclude=["tenant"], validate_unique=False, validate_constraints=False
        )
        documents.append(document)
    with connection.cursor() as cursor:
        cursor.execute(
            UPSERT_SQL, {"tenant": tenant.pk, "now": now, "findings": json.dumps(documents)}
        )
        outcomes = Counter((pattern_type, inserted) for pattern_type, inserted in cursor.fetchall())
    transaction.on_commit(lambda: _count_outcomes(outcomes))
    return outcomes


def _count_outcomes(outcomes: Counter) -> None:
    for (pattern_type, inserted), count in outcomes.items():
        result = "created" if inserted else "updated"
        metrics.patterns_total.labels(pattern_type=pattern_type, result=result).inc(count)


@transaction.atomic
def feedback_acknowledge(*, feedback: PatternFeedback, actor: str) -> PatternFeedback:
    """Acknowledge one feedback row; an already acknowledged row is returned unchanged."""
    feedbacks_acknowledge(feedbacks=PatternFeedback.objects.filter(pk=feedback.pk), actor=actor)
    feedback.refresh_from_db()
    return feedback


@transaction.atomic
def feedbacks_acknowledge(*, feedbacks: QuerySet[PatternFeedback], actor: str) -> int:
    """Acknowledge the open rows among `feedbacks`; return how many changed.

    The update is conditional, so two operators acknowledging at once record one actor.
    """
    now = timezone.now()
    return feedbacks.filter(acknowledged=False).update(
        acknowledged=True, acknowledged_at=now, acknowledged_by=actor, updated_at=now
    )


PATTERN_KEYS = ("failure_patterns", "cost_spikes", "feedback_created", "feedback_updated")
DETECT_PATTERNS = TenantJob(
    name="detect_patterns",
    work=lambda tenant, params: patterns_detect(tenant=tenant),
    counts=dict,
    keys=PATTERN_KEYS,
)


def patterns_detect_for_tenants(
    *,
    tenants: Iterable[Tenant] | None = None,
    on_tenant_done: Callable[[Tenant, dict | None, Exception | None], None] | None = None,
) -> JobReport:
    """Run `patterns_detect` for each tenant (default: every active one), one transaction each.

    A failing tenant is logged and reported; the others still run. Returns the job report,
    its `totals` the result counts summed.
    """
    report = tenant_job_run(DETECT_PATTERNS, tenants=tenants, on_tenant_done=on_tenant_done)
    return report.finish()
