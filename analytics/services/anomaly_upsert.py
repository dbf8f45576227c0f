"""The one write path of anomalies: explain candidates and upsert them by natural key.

Rule-based detection and snapshot evaluation both end here, so an anomaly found twice is one
row. Re-detection updates the measurements and never the status; the creation metric and the
high-severity signal go out on commit.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from analytics import metrics
from analytics.models import Anomaly, AnomalyStatus, AnomalyType, Severity, Tenant
from analytics.selectors.explain import explain_cause_rows, explain_contributor_rows
from analytics.services.explain import ExplainSubject, Explanation, explanations_from_rows
from analytics.signals import high_anomaly_detected

ALERTING_SEVERITIES = frozenset({Severity.HIGH, Severity.CRITICAL})


@dataclass
class AnomalyCandidate:
    """One anomaly as a rule sees it, before it meets the database."""

    anomaly_type: str
    severity: str
    entity_type: str
    entity_id: str | None
    anomaly_date: date
    current_value_cents: float
    expected_value_cents: float
    deviation_pct: float | None
    threshold_pct: float
    message: str
    explain: ExplainSubject
    breach_count: int = 1
    metadata: dict = field(default_factory=dict)
    budget_period: str | None = None
    budget_id: int | None = None
    snapshot_id: int | None = None

    def natural_key(self) -> tuple:
        return natural_key(self)


def natural_key(anomaly: "AnomalyCandidate | Anomaly") -> tuple:
    """The key of the partial unique index an anomaly (or a candidate for one) falls under."""
    if anomaly.anomaly_type == AnomalyType.SNAPSHOT_SPIKE:
        return (anomaly.snapshot_id, anomaly.entity_type, anomaly.entity_id)
    return (
        anomaly.anomaly_type,
        anomaly.entity_type,
        anomaly.entity_id,
        anomaly.anomaly_date,
        anomaly.budget_period,
    )


# Exactly the fields re-detection may change; status and lifecycle columns are absent, so a
# closed anomaly stays closed for its day.
_UPDATE_COLUMNS = (
    "current_value_cents",
    "expected_value_cents",
    "deviation_pct",
    "severity",
    "message",
    "breach_count",
    "derived_cause",
    "metadata",
    "contributors",
    "last_detected_at",
)
# The conflict targets repeat the partial unique indexes' predicates so PostgreSQL can infer them.
_CONFLICT_TARGETS = {
    "daily": (
        "(tenant_id, anomaly_type, entity_type, entity_id, anomaly_date, budget_period) "
        "WHERE NOT (anomaly_type = 'SNAPSHOT_SPIKE')"
    ),
    "snapshot": "(snapshot_id, entity_type, entity_id) WHERE anomaly_type = 'SNAPSHOT_SPIKE'",
}


def anomaly_candidates_upsert(
    *, tenant: Tenant, candidates: Sequence[AnomalyCandidate]
) -> list[tuple[Anomaly, bool]]:
    """Explain and upsert candidates by their natural keys; return (anomaly, created) in order.

    Must run inside a transaction: signals and the creation metric are sent on commit.
    All candidates share one natural key family (all SNAPSHOT_SPIKE or none).
    """
    if not candidates:
        return []
    kinds = {c.anomaly_type == AnomalyType.SNAPSHOT_SPIKE for c in candidates}
    if len(kinds) != 1:
        raise ValueError("snapshot and daily anomalies cannot be upserted together")
    target = _CONFLICT_TARGETS["snapshot" if kinds.pop() else "daily"]

    subjects = [c.explain for c in candidates]
    explanations = explanations_from_rows(
        subjects=subjects,
        contributor_rows=explain_contributor_rows(tenant_id=tenant.pk, subjects=subjects),
        cause_rows=explain_cause_rows(tenant_id=tenant.pk, subjects=subjects),
    )
    now = timezone.now()
    sql, params = _upsert_statement(
        [
            _insert_values(tenant=tenant, candidate=candidate, explanation=explanation, now=now)
            for candidate, explanation in zip(candidates, explanations, strict=True)
        ],
        target=target,
    )
    by_key = {natural_key(anomaly): anomaly for anomaly in Anomaly.objects.raw(sql, params)}
    results = []
    for candidate in candidates:
        anomaly = by_key[natural_key(candidate)]
        results.append((anomaly, anomaly.was_created))
    transaction.on_commit(lambda: _announce(results))
    return results


def _upsert_statement(values: list[dict[str, Any]], *, target: str) -> tuple[str, list]:
    """The INSERT … ON CONFLICT of rows given by column, and its parameters."""
    # The column list and every row's parameters come from the same mappings, in the same
    # order, so a value cannot land in another column.
    columns = tuple(values[0])
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    params = [row[column] for row in values for column in columns]
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in _UPDATE_COLUMNS)
    # xmax is 0 only on a freshly inserted row version; an ON CONFLICT update sets it.
    # RETURNING * gives the stored rows (with their kept status) without a second query.
    sql = (
        f"INSERT INTO analytics_anomaly ({', '.join(columns)}) "
        f"VALUES {', '.join([row_sql] * len(values))} "
        f"ON CONFLICT {target} DO UPDATE SET {updates} "
        "RETURNING *, (xmax = 0) AS was_created"
    )
    return sql, params


def _insert_values(
    *, tenant: Tenant, candidate: AnomalyCandidate, explanation: Explanation, now: datetime
) -> dict[str, Any]:
    """One candidate's inserted row, by column: a new anomaly is open and its lifecycle
    texts are empty."""
    return {
        "tenant_id": tenant.pk,
        "anomaly_type": candidate.anomaly_type,
        "severity": candidate.severity,
        "status": AnomalyStatus.OPEN,
        "entity_type": candidate.entity_type,
        "entity_id": candidate.entity_id,
        "anomaly_date": candidate.anomaly_date,
        "budget_period": candidate.budget_period,
        "current_value_cents": candidate.current_value_cents,
        "expected_value_cents": candidate.expected_value_cents,
        "deviation_pct": candidate.deviation_pct,
        "threshold_pct": candidate.threshold_pct,
        "message": candidate.message,
        "derived_cause": explanation.derived_cause,
        "breach_count": candidate.breach_count,
        "metadata": json.dumps(candidate.metadata),
        "contributors": json.dumps(explanation.contributors),
        "snapshot_id": candidate.snapshot_id,
        "budget_id": candidate.budget_id,
        "detected_at": now,
        "last_detected_at": now,
        "acknowledged_by": "",
        "resolved_by": "",
        "resolution_notes": "",
        "feedback_by": "",
    }


def _announce(results: list[tuple[Anomaly, bool]]) -> None:
    for anomaly, created in results:
        if created:
            metrics.anomalies_created_total.labels(
                anomaly_type=anomaly.anomaly_type, severity=anomaly.severity
            ).inc()
        if anomaly.severity in ALERTING_SEVERITIES:
            high_anomaly_detected.send(sender=Anomaly, anomaly=anomaly, created=created)
