"""Snapshot evaluation: compare a snapshot's aggregates with their
7-day baselines, record one evaluation per entity and raise SNAPSHOT_SPIKE anomalies."""

from django.db import connection, transaction
from django.utils import timezone

from analytics.errors import Conflict
from analytics.models import (
    AnomalyType,
    CostSnapshot,
    SnapshotStatus,
    SnapshotType,
)
from analytics.selectors.snapshots import snapshot_aggregates
from analytics.services import detection as engine
from analytics.services.anomaly_upsert import AnomalyCandidate, anomaly_candidates_upsert
from analytics.services.explain import CauseWindows, ExplainSubject

DEFAULT_THRESHOLD_PCT = 200.0


class SnapshotNotComplete(Conflict):
    """Only `complete` snapshots can be evaluated (answered as 409 `conflict`)."""


_EVALUATION_UPSERT_SQL = """
INSERT INTO analytics_anomalyevaluation
    (tenant_id, snapshot_id, entity_type, entity_id, current_value_cents, baseline_value_cents,
     threshold_pct, deviation_pct, triggered, severity, anomaly_id, reason, evaluated_at)
SELECT %(tenant_id)s, %(snapshot_id)s, e.*, %(now)s
FROM unnest(%(entity_type)s::text[], %(entity_id)s::text[], %(current)s::float8[],
            %(baseline)s::float8[], %(threshold)s::float8[], %(deviation)s::float8[],
            %(triggered)s::boolean[], %(severity)s::text[], %(anomaly_id)s::bigint[],
            %(reason)s::text[]) AS e
ON CONFLICT ON CONSTRAINT evaluation_natural_key DO UPDATE
SET current_value_cents = EXCLUDED.current_value_cents,
    baseline_value_cents = EXCLUDED.baseline_value_cents,
    threshold_pct = EXCLUDED.threshold_pct,
    deviation_pct = EXCLUDED.deviation_pct,
    triggered = EXCLUDED.triggered,
    severity = EXCLUDED.severity,
    anomaly_id = EXCLUDED.anomaly_id,
    reason = EXCLUDED.reason,
    evaluated_at = EXCLUDED.evaluated_at
"""


_EVALUATION_PRUNE_SQL = """
DELETE FROM analytics_anomalyevaluation ev
WHERE ev.snapshot_id = %(snapshot_id)s
  AND NOT EXISTS (
      SELECT 1
      FROM unnest(%(entity_type)s::text[], %(entity_id)s::text[]) AS k(entity_type, entity_id)
      WHERE k.entity_type = ev.entity_type AND k.entity_id IS NOT DISTINCT FROM ev.entity_id
  )
"""


def _reason(*, triggered: bool, deviation: float, threshold_pct: float) -> str:
    verdict = "TRIGGERED" if triggered else "OK"
    return f"{verdict}: {deviation:.1f}% deviation (threshold: {threshold_pct:g}%)"


# complexity: one pass judges each aggregate and builds the candidate of a triggered one; both feed
# the same upsert under the snapshot's lock
@transaction.atomic
def snapshot_evaluate(
    *, snapshot: CostSnapshot, threshold_pct: float = DEFAULT_THRESHOLD_PCT
) -> dict:
    """Evaluate a complete snapshot; return {evaluated, triggered, anomalies}.

    Raises SnapshotNotComplete (a 409 Conflict) for a computing or failed snapshot.
    Re-evaluation updates the evaluation rows and the anomalies' measurements in place;
    it never closes or reopens an anomaly.
    """
    # The row lock waits for a recomputation of the same snapshot to finish, so the
    # aggregates read below are never half replaced.
    snapshot = CostSnapshot.objects.select_for_update().get(pk=snapshot.pk)
    if snapshot.status != SnapshotStatus.COMPLETE:
        raise SnapshotNotComplete(
            f"Snapshot {snapshot.pk} is {snapshot.status}; only complete snapshots can be "
            "evaluated.",
            [{"field": "status", "reason": f"snapshot is {snapshot.status}"}],
        )
    aggregates = [
        aggregate
        for aggregate in snapshot_aggregates(snapshot=snapshot)
        if aggregate.baseline_7d_avg_cents is not None and aggregate.baseline_7d_avg_cents > 0
    ]

    hourly = snapshot.snapshot_type == SnapshotType.HOURLY
    baseline_name = "same-hour 7-day baseline" if hourly else "7-day baseline"
    length = snapshot.period_end - snapshot.period_start
    verdicts, candidates = [], []
    for aggregate in aggregates:
        deviation = aggregate.deviation_from_7d_pct or 0.0
        triggered = engine.snapshot_triggered(deviation, threshold_pct)
        severity = engine.snapshot_severity(deviation) if triggered else None
        verdicts.append((aggregate, deviation, triggered, severity))
        if not triggered:
            continue
        candidates.append(
            AnomalyCandidate(
                anomaly_type=AnomalyType.SNAPSHOT_SPIKE,
                severity=severity,
                entity_type=aggregate.entity_type,
                entity_id=aggregate.entity_id,
                anomaly_date=snapshot.period_start.date(),
                snapshot_id=snapshot.pk,
                current_value_cents=float(aggregate.total_cost_cents),
                expected_value_cents=aggregate.baseline_7d_avg_cents,
                deviation_pct=deviation,
                threshold_pct=threshold_pct,
                message=(
                    f"Cost spike detected from {snapshot.snapshot_type} snapshot {snapshot.pk}: "
                    f"{deviation:.1f}% above {baseline_name}"
                ),
                explain=ExplainSubject(
                    aggregate.entity_type,
                    aggregate.entity_id,
                    snapshot.period_start,
                    snapshot.period_end,
                    cause=CauseWindows(
                        snapshot.period_start - length, snapshot.period_start, snapshot.period_end
                    ),
                ),
            )
        )
    upserted = anomaly_candidates_upsert(tenant=snapshot.tenant, candidates=candidates)
    anomaly_ids = {(anomaly.entity_type, anomaly.entity_id): anomaly.pk for anomaly, _ in upserted}
    _evaluations_replace(
        snapshot=snapshot, verdicts=verdicts, anomaly_ids=anomaly_ids, threshold_pct=threshold_pct
    )
    return {
        "evaluated": len(verdicts),
        "triggered": len(candidates),
        "anomalies": [anomaly for anomaly, _ in upserted],
    }


def _evaluations_replace(*, snapshot, verdicts, anomaly_ids, threshold_pct) -> None:
    """Upsert this evaluation's rows and drop rows of entities the snapshot no longer has."""
    with connection.cursor() as cursor:
        cursor.execute(
            _EVALUATION_PRUNE_SQL,
            {
                "snapshot_id": snapshot.pk,
                "entity_type": [aggregate.entity_type for aggregate, *_ in verdicts],
                "entity_id": [aggregate.entity_id for aggregate, *_ in verdicts],
            },
        )
    if not verdicts:
        return
    params = {
        "tenant_id": snapshot.tenant_id,
        "snapshot_id": snapshot.pk,
        "now": timezone.now(),
        "entity_type": [],
        "entity_id": [],
        "current": [],
        "baseline": [],
        "threshold": [],
        "deviation": [],
        "triggered": [],
        "severity": [],
        "anomaly_id": [],
        "reason": [],
    }
    for aggregate, deviation, triggered, severity in verdicts:
        key = (aggregate.entity_type, aggregate.entity_id)
        params["entity_type"].append(aggregate.entity_type)
        params["entity_id"].append(aggregate.entity_id)
        params["current"].append(float(aggregate.total_cost_cents))
        params["baseline"].append(aggregate.baseline_7d_avg_cents)
        params["threshold"].append(threshold_pct)
        params["deviation"].append(deviation)
        params["triggered"].append(triggered)
        params["severity"].append(severity)
        params["anomaly_id"].append(anomaly_ids.get(key) if triggered else None)
        params["reason"].append(
            _reason(triggered=triggered, deviation=deviation, threshold_pct=threshold_pct)
        )
    with connection.cursor() as cursor:
        cursor.execute(_EVALUATION_UPSERT_SQL, params)
