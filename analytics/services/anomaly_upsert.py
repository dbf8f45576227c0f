"""The one write path of anomalies: explain candidates and upsert them by natural key.

Rule-based detection and snapshot evaluation both end here, so an anomaly found twice is one
row. Re-detection updates the measurements and never the status; the creation metric and the
high-severity signal go out on commit.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from django.db import transaction
from django.utils import timezone

from analytics import metrics
from analytics.models import Anomaly, AnomalyStatus, AnomalyType, Severity, Tenant
from analytics.services.explain import ExplainSubject, explain_many
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
        if self.anomaly_type == AnomalyType.SNAPSHOT_SPIKE:
            return (self.snapshot_id, self.entity_type, self.entity_id)
        return (
            self.anomaly_type,
            self.entity_type,
            self.entity_id,
            self.anomaly_date,
            self.budget_period,
        )


_INSERT_COLUMNS = (
    "tenant_id",
    "anomaly_type",
    "severity",
    "status",
    "entity_type",
    "entity_id",
    "anomaly_date",
    "budget_period",
    "current_value_cents",
    "expected_value_cents",
    "deviation_pct",
    "threshold_pct",
    "message",
    "derived_cause",
    "breach_count",
    "metadata",
    "contributors",
    "snapshot_id",
    "budget_id",
    "detected_at",
    "last_detected_at",
    "acknowledged_by",
    "resolved_by",
    "resolution_notes",
    "feedback_by",
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

    explanations = explain_many(tenant_id=tenant.pk, subjects=[c.explain for c in candidates])
    now = timezone.now()
    rows, params = [], []
    for candidate, explanation in zip(candidates, explanations, strict=True):
        rows.append("(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")")
        params += [
            tenant.pk,
            candidate.anomaly_type,
            candidate.severity,
            AnomalyStatus.OPEN,
            candidate.entity_type,
            candidate.entity_id,
            candidate.anomaly_date,
            candidate.budget_period,
            candidate.current_value_cents,
            candidate.expected_value_cents,
            candidate.deviation_pct,
            candidate.threshold_pct,
            candidate.message,
            explanation.derived_cause,
            candidate.breach_count,
            json.dumps(candidate.metadata),
            json.dumps(explanation.contributors),
            candidate.snapshot_id,
            candidate.budget_id,
            now,
            now,
            "",
            "",
            "",
            "",
        ]
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in _UPDATE_COLUMNS)
    # xmax is 0 only on a freshly inserted row version; an ON CONFLICT update sets it.
    # RETURNING * gives the stored rows (with their kept status) without a second query.
    sql = (
        f"INSERT INTO analytics_anomaly ({', '.join(_INSERT_COLUMNS)}) VALUES {', '.join(rows)} "
        f"ON CONFLICT {target} DO UPDATE SET {updates} "
        "RETURNING *, (xmax = 0) AS was_created"
    )
    by_key = {}
    for anomaly in Anomaly.objects.raw(sql, params):
        if anomaly.anomaly_type == AnomalyType.SNAPSHOT_SPIKE:
            key = (anomaly.snapshot_id, anomaly.entity_type, anomaly.entity_id)
        else:
            key = (
                anomaly.anomaly_type,
                anomaly.entity_type,
                anomaly.entity_id,
                anomaly.anomaly_date,
                anomaly.budget_period,
            )
        by_key[key] = anomaly
    results = []
    for candidate in candidates:
        anomaly = by_key[candidate.natural_key()]
        results.append((anomaly, anomaly.was_created))
    transaction.on_commit(lambda: _announce(results))
    return results


def _announce(results: list[tuple[Anomaly, bool]]) -> None:
    for anomaly, created in results:
        if created:
            metrics.anomalies_created_total.labels(
                anomaly_type=anomaly.anomaly_type, severity=anomaly.severity
            ).inc()
        if anomaly.severity in ALERTING_SEVERITIES:
            high_anomaly_detected.send(sender=Anomaly, anomaly=anomaly, created=created)
