"""The prediction cycle: compute drafts from run aggregates and write them as advisory rows."""

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics.models import Tenant
from analytics.services.jobs import JobReport, TenantJob, tenant_job_run
from predictions import metrics
from predictions.models import Prediction
from predictions.selectors import worker_cost_trends, worker_failure_stats
from predictions.services.engines import (
    WINDOW_DAYS,
    PredictionDraft,
    cost_overrun,
    failure_likelihood,
)

logger = logging.getLogger(__name__)

TABLE = Prediction._meta.db_table
COLUMNS = [field.column for field in Prediction._meta.concrete_fields]
ATTNAMES = [field.attname for field in Prediction._meta.concrete_fields]

# is_advisory is written as a literal: no input can turn a prediction into a fact, and the
# CHECK constraint backs that up for any other writer.
UPSERT_SQL = f"""
INSERT INTO {TABLE} AS p (
    id, tenant_id, prediction_type, subject_type, subject_id, confidence_score,
    prediction_value, contributing_factors, cycle_hour, expires_at, is_advisory, notes,
    created_at, updated_at
)
VALUES (
    %(id)s, %(tenant)s, %(prediction_type)s, %(subject_type)s, %(subject_id)s,
    %(confidence_score)s, %(prediction_value)s::jsonb, %(contributing_factors)s::jsonb,
    %(cycle_hour)s, %(expires_at)s, true, %(notes)s, %(now)s, %(now)s
)
ON CONFLICT (tenant_id, prediction_type, subject_type, subject_id, cycle_hour) DO UPDATE SET
    confidence_score = EXCLUDED.confidence_score,
    prediction_value = EXCLUDED.prediction_value,
    contributing_factors = EXCLUDED.contributing_factors,
    expires_at = EXCLUDED.expires_at,
    notes = EXCLUDED.notes,
    updated_at = EXCLUDED.updated_at
RETURNING {", ".join(f"p.{column}" for column in COLUMNS)}
"""


def cycle_hour_of(moment: datetime) -> datetime:
    """The UTC hour that contains `moment`."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@transaction.atomic
def prediction_cycle_run(*, tenant: Tenant) -> dict:
    """Compute failure then cost predictions for the tenant and write each one.

    Each emission runs in its own savepoint: its row is upserted on the natural key for the
    current hour and every other still-valid prediction of the same subject and type expires
    now, so at most one valid prediction exists per subject and type. A failing emission is
    reported in `errors` and the cycle goes on. Run records are only read.

    Returns `{failure_predictions: [Prediction], cost_predictions: [Prediction],
    predictions_created, errors}`.
    """
    now = timezone.now()
    since = now - timedelta(days=WINDOW_DAYS)
    failure_drafts = [
        draft
        for stats in worker_failure_stats(tenant=tenant, since=since)
        if (draft := failure_likelihood(stats))
    ]
    cost_drafts = [
        draft
        for trend in worker_cost_trends(tenant=tenant, since=since)
        if (draft := cost_overrun(trend))
    ]
    written: dict[str, list[Prediction]] = {"failure": [], "cost": []}
    errors: list[str] = []
    emitted: Counter = Counter()
    failed: Counter = Counter()
    for bucket, drafts in (("failure", failure_drafts), ("cost", cost_drafts)):
        for draft in drafts:
            try:
                with transaction.atomic():
                    prediction = _prediction_emit(tenant=tenant, draft=draft, now=now)
            except Exception as exc:
                logger.warning(
                    "Prediction %s/%s failed for tenant %s",
                    draft.prediction_type,
                    draft.subject_id,
                    tenant.slug,
                    exc_info=True,
                )
                errors.append(f"{draft.prediction_type}/{draft.subject_id}: {_message(exc)}")
                failed[draft.prediction_type] += 1
                continue
            written[bucket].append(prediction)
            emitted[draft.prediction_type] += 1
    transaction.on_commit(lambda: _count(emitted, failed))
    return {
        "failure_predictions": written["failure"],
        "cost_predictions": written["cost"],
        "predictions_created": sum(emitted.values()),
        "errors": errors,
    }


def _prediction_emit(*, tenant: Tenant, draft: PredictionDraft, now: datetime) -> Prediction:
    """Upsert the draft for this hour and expire the subject's other valid predictions."""
    expires_at = now + timedelta(hours=settings.PREDICTION_VALIDITY_HOURS)
    cycle_hour = cycle_hour_of(now)
    candidate = Prediction(
        tenant=tenant,
        prediction_type=draft.prediction_type,
        subject_type=draft.subject_type,
        subject_id=draft.subject_id,
        confidence_score=draft.confidence_score,
        prediction_value=draft.prediction_value,
        contributing_factors=draft.contributing_factors,
        cycle_hour=cycle_hour,
        expires_at=expires_at,
        notes=draft.notes,
    )
    candidate.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
    params = {
        "id": uuid.uuid4(),
        "tenant": tenant.pk,
        "prediction_type": draft.prediction_type,
        "subject_type": draft.subject_type,
        "subject_id": draft.subject_id,
        "confidence_score": draft.confidence_score,
        "prediction_value": json.dumps(draft.prediction_value),
        "contributing_factors": json.dumps(draft.contributing_factors),
        "cycle_hour": cycle_hour,
        "expires_at": expires_at,
        "notes": draft.notes,
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(UPSERT_SQL, params)
        row = cursor.fetchone()
    values = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(Prediction._meta.concrete_fields, row, strict=True)
    ]
    prediction = Prediction.from_db(connection.alias, ATTNAMES, values)
    (
        Prediction.objects.filter(
            tenant=tenant,
            prediction_type=draft.prediction_type,
            subject_type=draft.subject_type,
            subject_id=draft.subject_id,
            expires_at__gt=now,
        )
        .exclude(pk=prediction.pk)
        .update(expires_at=now, updated_at=now)
    )
    return prediction


def _message(exc: Exception) -> str:
    messages = getattr(exc, "messages", None)
    if messages:
        return "; ".join(str(message) for message in messages)
    return str(exc).strip() or type(exc).__name__


def _count(emitted: Counter, failed: Counter) -> None:
    for prediction_type, count in emitted.items():
        metrics.predictions_emitted_total.labels(prediction_type=prediction_type).inc(count)
    for prediction_type, count in failed.items():
        metrics.predictions_emission_errors_total.labels(prediction_type=prediction_type).inc(count)


def _cycle_counts(result: dict) -> dict[str, int]:
    return {
        "failure_predictions": len(result["failure_predictions"]),
        "cost_predictions": len(result["cost_predictions"]),
        "predictions_created": result["predictions_created"],
        "errors": len(result["errors"]),
    }


PREDICTION_CYCLE = TenantJob(
    name="prediction_cycle",
    work=lambda tenant, params: prediction_cycle_run(tenant=tenant),
    counts=_cycle_counts,
    keys=("failure_predictions", "cost_predictions", "predictions_created", "errors"),
)


def prediction_cycles_run(
    *,
    tenants: Iterable[Tenant] | None = None,
    on_tenant_done: Callable[[Tenant, dict | None, Exception | None], None] | None = None,
) -> JobReport:
    """Run `prediction_cycle_run` for each tenant (default: every active one), one
    transaction each. A failing tenant is logged and reported; the others still run.

    Returns the job report, its `totals` (failure_predictions, cost_predictions,
    predictions_created, errors) summed over tenants.
    """
    report = tenant_job_run(PREDICTION_CYCLE, tenants=tenants, on_tenant_done=on_tenant_done)
    return report.finish()
