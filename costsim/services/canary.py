"""The daily canary: V2 against V1 on recent real inputs.

The scheduled job, the staff endpoint and the `run_canary` command all come here, so they
share lock 7001: a second run started while one is going reports `skipped` and changes
nothing. The evaluation itself is the pure `canary_engine`; this module picks the samples,
persists the report and feeds the breaker.
"""

import json
import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics.hashing import random_hex12
from analytics.services.locks import LockId, leader_lock
from costsim import metrics
from costsim.models import CanaryReport, Provenance, Variant
from costsim.services import canary_engine
from costsim.services.breaker import breaker_report_canary
from costsim.services.canary_engine import CanarySample, samples_evaluate
from costsim.services.estimators import DEFAULT_BUDGET_CENTS

logger = logging.getLogger(__name__)

# Only recent traffic says anything about today's V2.
SAMPLE_WINDOW = timedelta(days=7)

# Newest row per distinct input, newest inputs first. DISTINCT ON keeps the first row of
# each input_hash in the inner ORDER BY, i.e. its newest; the plan test is written so that
# jsonb_array_length never sees a non-array.
_SAMPLES_SQL = f"""
SELECT id, input_hash, input_json
FROM (
    SELECT DISTINCT ON (input_hash) id, input_hash, input_json, created_at
    FROM {Provenance._meta.db_table}
    WHERE variant_slug = %s
      AND v2_status = 'success'
      AND created_at >= %s
      AND jsonb_typeof(input_json -> 'plan') = 'array'
      AND input_json -> 'plan' <> '[]'::jsonb
    ORDER BY input_hash, created_at DESC, id DESC
) AS latest
ORDER BY created_at DESC, id DESC
LIMIT %s
"""


def canary_samples(*, limit: int, now: datetime | None = None) -> list[CanarySample]:
    """Return up to `limit` samples from the last 7 days of successful V2 provenance."""
    since = (now or timezone.now()) - SAMPLE_WINDOW
    with connection.cursor() as cursor:
        cursor.execute(_SAMPLES_SQL, [Variant.V2, since, limit])
        rows = cursor.fetchall()
    samples = []
    for pk, input_hash, raw_input in rows:
        # Django keeps psycopg from decoding jsonb (its fields decode), so a raw cursor
        # returns the text.
        input_json = json.loads(raw_input) if isinstance(raw_input, str) else raw_input
        budget = input_json.get("budget_cents", DEFAULT_BUDGET_CENTS)
        samples.append(
            CanarySample(
                sample_id=f"provenance_{pk}",
                input_hash=input_hash,
                plan=input_json["plan"],
                budget_cents=DEFAULT_BUDGET_CENTS if budget is None else budget,
                allowed_skills=input_json.get("allowed_skills"),
            )
        )
    return samples


def canary_run(*, sample_count: int, drift_threshold: float) -> canary_engine.CanaryReport:
    """Run the canary as the leader (lock 7001); return its report.

    Without the lock the report is `skipped`: not persisted, breaker untouched. Otherwise
    the report is persisted and then fed to the breaker (a pass resets the drift streak, a
    fail or error counts as a drift failure, `insufficient_data` - fewer than
    COSTSIM_MIN_DRIFT_SAMPLES evaluated, or the synthetic set - changes nothing).
    """
    run_id = random_hex12()
    timestamp = timezone.now()
    with leader_lock(LockId.CANARY) as leader:
        if not leader:
            _count_run("skipped", job_outcome="skipped")
            logger.info("Canary %s skipped: another instance is the leader", run_id)
            return canary_engine.skipped_report(
                run_id=run_id, timestamp=timestamp, drift_threshold=float(drift_threshold)
            )
        try:
            report = _canary_execute(
                run_id=run_id,
                timestamp=timestamp,
                sample_count=sample_count,
                drift_threshold=drift_threshold,
            )
        except Exception:
            metrics.job_runs_total.labels(job="canary", outcome="failed").inc()
            raise
    _count_run(report.status, job_outcome="success")
    logger.info(
        "Canary %s: %s (%s of %s samples evaluated, %s needed, KL %s)",
        run_id,
        report.status,
        report.evaluated_samples,
        report.total_samples,
        report.min_samples,
        report.kl_divergence,
    )
    return report


def _canary_execute(
    *, run_id: str, timestamp: datetime, sample_count: int, drift_threshold: float
) -> canary_engine.CanaryReport:
    started = time.monotonic()
    samples = canary_samples(limit=sample_count, now=timestamp)
    source = canary_engine.SAMPLE_SOURCE_PROVENANCE
    if not samples:
        samples = list(canary_engine.SYNTHETIC_SAMPLES)
        source = canary_engine.SAMPLE_SOURCE_SYNTHETIC
    outcomes = samples_evaluate(
        samples,
        model_version=settings.COSTSIM_MODEL_VERSION,
        adapter_version=settings.COSTSIM_ADAPTER_VERSION,
        commit_sha=settings.GIT_COMMIT_SHA,
    )
    report = canary_engine.canary_report(
        outcomes,
        run_id=run_id,
        timestamp=timestamp,
        total_samples=len(samples),
        drift_threshold=drift_threshold,
        sample_source=source,
        duration_ms=round((time.monotonic() - started) * 1000),
        min_samples=settings.COSTSIM_MIN_DRIFT_SAMPLES,
    )
    canary_report_persist(report=report)
    breaker_report_canary(
        status=report.status,
        kl_divergence=report.kl_divergence,
        total_samples=report.total_samples,
        details={
            "source": "canary",
            "run_id": report.run_id,
            "status": report.status,
            "kl_divergence": report.kl_divergence,
            "failure_reasons": list(report.failure_reasons),
        },
    )
    return report


@transaction.atomic
def canary_report_persist(*, report: canary_engine.CanaryReport) -> CanaryReport:
    """Store a finished (pass, fail, error or insufficient_data) report: one per run_id."""
    row = CanaryReport(
        run_id=report.run_id,
        timestamp=report.timestamp,
        status=report.status,
        total_samples=report.total_samples,
        evaluated_samples=report.evaluated_samples,
        min_samples=report.min_samples,
        matching_samples=report.matching_samples,
        minor_drift_samples=report.minor_drift_samples,
        major_drift_samples=report.major_drift_samples,
        median_cost_diff=report.median_cost_diff,
        p90_cost_diff=report.p90_cost_diff,
        kl_divergence=report.kl_divergence,
        js_distance=report.js_distance,
        outlier_count=report.outlier_count,
        passed=report.passed,
        failure_reasons=list(report.failure_reasons),
        sample_source=report.sample_source or "",
        drift_threshold=report.drift_threshold,
        duration_ms=report.duration_ms,
        comparisons=report.comparisons,
        diffs=report.diffs,
    )
    row.full_clean()
    row.save(force_insert=True)
    return row


def _count_run(status: str, *, job_outcome: str) -> None:
    metrics.canary_runs_total.labels(status=status).inc()
    metrics.job_runs_total.labels(job="canary", outcome=job_outcome).inc()
